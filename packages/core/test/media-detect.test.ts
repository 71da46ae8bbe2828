/**
 * `detectMediaType` and `detectBase64MediaType`: a file's type by its first bytes; text files
 * and audio transcripts as parts of a user message.
 */
import { describe, expect, it } from "vitest";
import {
  baseMediaType,
  decodeTextFile,
  detectBase64MediaType,
  detectMediaType,
  isTextMediaType,
  MODEL_IMAGE_TYPES,
  type Transcriber,
  type TranscriptionInput,
  type TranscriptionOptions,
  textAttachmentBlock,
  transcriptLine,
} from "../src/index.js";

const bytes = (...parts: Array<string | number[]>): Uint8Array =>
  Buffer.concat(
    parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))),
  );

describe("detectMediaType", () => {
  it.each([
    ["image/png", bytes([0x89], "PNG\r\n\x1a\n", "IHDR")],
    ["image/jpeg", bytes([0xff, 0xd8, 0xff, 0xdb])],
    ["image/gif", bytes("GIF87a...")],
    ["image/gif", bytes("GIF89a...")],
    ["image/webp", bytes("RIFF", [1, 2, 3, 4], "WEBPVP8 ")],
    ["application/pdf", bytes("%PDF-1.7\n")],
  ])("knows %s by its signature", (type, data) => {
    expect(detectMediaType(data)).toBe(type);
    expect(detectBase64MediaType(Buffer.from(data).toString("base64"))).toBe(type);
  });

  it.each([
    ["an HTML sign-in page", bytes("<!DOCTYPE html><html>")],
    ["a RIFF that is not WebP (WAV)", bytes("RIFF", [1, 2, 3, 4], "WAVEfmt ")],
    ["a truncated PNG signature", bytes([0x89], "PNG")],
    ["a GIF without its version", bytes("GIF8")],
    ["nothing", bytes()],
    ["a PDF signature not at the start", bytes(" %PDF-1.7")],
  ])("knows nothing of %s", (_, data) => {
    expect(detectMediaType(data)).toBeUndefined();
  });

  it("reads base64 only when it is base64", () => {
    expect(detectBase64MediaType("data:application/pdf;base64,JVBERi0x")).toBeUndefined();
    expect(detectBase64MediaType("")).toBeUndefined();
    expect(detectBase64MediaType("JVBERi0xLjc")).toBe("application/pdf"); // unpadded
  });

  it("lists the image types every adapter takes", () => {
    expect([...MODEL_IMAGE_TYPES].sort()).toEqual([
      "image/gif",
      "image/jpeg",
      "image/png",
      "image/webp",
    ]);
  });
});

describe("text files", () => {
  it("knows text types, parameters and case aside", () => {
    expect(baseMediaType(" Text/CSV ; charset=UTF-8")).toBe("text/csv");
    for (const type of [
      "text/plain",
      "text/markdown; charset=utf-8",
      "application/json",
      "application/vnd.api+json",
      "application/atom+xml",
      "application/x-yaml",
      "image/svg+xml",
    ]) {
      expect(isTextMediaType(type), type).toBe(true);
    }
    for (const type of ["application/pdf", "application/zip", "image/png", "audio/ogg", ""]) {
      expect(isTextMediaType(type), type).toBe(false);
    }
  });

  it("decodes UTF-8 without its byte-order mark, and refuses other bytes and NULs", () => {
    expect(decodeTextFile(Buffer.from("\uFEFFZürich"))).toBe("Zürich");
    expect(decodeTextFile(Buffer.from([0xc3, 0x28]))).toBeUndefined();
    expect(decodeTextFile(Buffer.from("a\u0000b"))).toBeUndefined();
    expect(decodeTextFile(Buffer.alloc(0))).toBe("");
  });

  it("quotes a text file as an attachment block a name cannot break out of", () => {
    expect(textAttachmentBlock('a"b<c>\nd.txt', "text/plain", "hello")).toBe(
      '<attachment name="a_b_c__d.txt" type="text/plain">\nhello\n</attachment>',
    );
  });
});

describe("transcriptLine", () => {
  /** A transcriber that answers `text` (or throws `error`) and records what it was given. */
  function transcriberOf(answer: { text?: unknown; error?: Error }) {
    const calls: Array<{ input: TranscriptionInput; options: TranscriptionOptions | undefined }> =
      [];
    const transcriber: Transcriber = {
      id: "test",
      async transcribe(input, options) {
        calls.push({ input, options });
        if (answer.error !== undefined) throw answer.error;
        return { text: answer.text as string };
      },
    };
    return { transcriber, calls };
  }

  const clip = { data: new Uint8Array([1, 2, 3]), mediaType: "audio/ogg; codecs=opus" };

  it("names the clip by its file name, else its media type without parameters", async () => {
    const { transcriber, calls } = transcriberOf({ text: "  water the plants \n" });
    const signal = new AbortController().signal;
    expect(await transcriptLine(transcriber, { ...clip, filename: "memo.ogg" }, { signal })).toBe(
      "[audio: memo.ogg, transcribed]\nwater the plants",
    );
    expect(await transcriptLine(transcriber, clip)).toBe(
      "[audio: audio/ogg, transcribed]\nwater the plants",
    );
    expect(calls[0]?.input.filename).toBe("memo.ogg");
    expect(calls[0]?.options?.signal).toBe(signal);
  });

  it("says no speech was heard for an empty or missing transcript", async () => {
    for (const text of ["", "   ", undefined, 42]) {
      const { transcriber } = transcriberOf({ text });
      expect(await transcriptLine(transcriber, clip), String(text)).toBe(
        "[audio: audio/ogg, no speech heard]",
      );
    }
  });

  it("throws the transcriber's error as it is", async () => {
    const error = new Error("quota exceeded");
    const { transcriber } = transcriberOf({ error });
    await expect(transcriptLine(transcriber, clip)).rejects.toBe(error);
  });
});
