/**
 * `createOpenAITranscriber` against OpenAI's Audio API faked with msw: the multipart upload
 * (file with a name that says its format, model, response format, language, prompt), the
 * `{ text }` answer, OpenAI's documented errors (401, 429 with retry-after, 400), a
 * compatible server (Groq), limits checked before any request, aborts and time limits.
 */
import { AbortedError, InvalidArgumentError, ProviderError } from "@beamclaw/core";
import { HttpResponse, http } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createOpenAITranscriber } from "../src/index.js";
import { untilAborted } from "./support.js";

const URL_OPENAI = "https://api.openai.com/v1/audio/transcriptions";
const server = setupServer();
beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => server.resetHandlers());
afterAll(() => server.close());

/** An Ogg/Opus voice note's first bytes (what Telegram sends as `voice`). */
const OGG = Buffer.concat([Buffer.from("OggS"), Buffer.alloc(60, 1)]);

interface Upload {
  authorization: string | null;
  fields: Record<string, string>;
  file: { name: string; type: string; bytes: Buffer } | undefined;
}

function serve(answer: () => Response | Promise<Response>, url = URL_OPENAI): Upload[] {
  const seen: Upload[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      expect(request.headers.get("content-type")).toMatch(/^multipart\/form-data; boundary=/);
      const form = await request.formData();
      const fields: Record<string, string> = {};
      let file: Upload["file"];
      for (const [key, value] of form.entries()) {
        if (typeof value === "string") fields[key] = value;
        else
          file = {
            name: value.name,
            type: value.type,
            bytes: Buffer.from(await value.arrayBuffer()),
          };
      }
      seen.push({ authorization: request.headers.get("authorization"), fields, file });
      return answer();
    }),
  );
  return seen;
}

const openaiError = (
  status: number,
  message: string,
  type: string,
  code: string | null,
  headers = {},
) => HttpResponse.json({ error: { message, type, param: null, code } }, { status, headers });

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

describe("createOpenAITranscriber", () => {
  it("uploads the audio with a file name that says its format, and answers the text", async () => {
    const uploads = serve(() => HttpResponse.json({ text: "Remind me to call Ada at five." }));
    const stt = createOpenAITranscriber({ apiKey: "sk-test" });
    expect(stt.id).toBe("openai");
    const result = await stt.transcribe({ data: OGG, mediaType: "audio/ogg; codecs=opus" });
    expect(result).toEqual({ text: "Remind me to call Ada at five." });
    expect(uploads).toHaveLength(1);
    const [upload] = uploads;
    expect(upload!.authorization).toBe("Bearer sk-test");
    expect(upload!.fields).toEqual({ model: "gpt-4o-mini-transcribe", response_format: "json" });
    expect(upload!.file?.name).toBe("audio.ogg");
    expect(upload!.file?.type).toBe("audio/ogg");
    expect(upload!.file?.bytes.equals(OGG)).toBe(true);
  });

  it("keeps a file name with an extension, adds one from the type, and sends language and prompt", async () => {
    const uploads = serve(() =>
      HttpResponse.json({ text: "Hallo", language: "german", duration: 1.5 }),
    );
    const stt = createOpenAITranscriber({
      apiKey: "sk-test",
      model: "whisper-1",
      language: "en",
      prompt: "BeamClaw, Ada",
    });
    expect(
      await stt.transcribe(
        { data: OGG, mediaType: "audio/mpeg", filename: "memo.mp3" },
        { language: "de" },
      ),
    ).toEqual({ text: "Hallo", language: "german", durationSeconds: 1.5 });
    await stt.transcribe({ data: OGG, mediaType: "audio/mp4", filename: "voice-message" });
    expect(uploads.map((u) => u.file?.name)).toEqual(["memo.mp3", "voice-message.m4a"]);
    expect(uploads[0]!.fields).toEqual({
      model: "whisper-1",
      response_format: "json",
      language: "de",
      prompt: "BeamClaw, Ada",
    });
    expect(uploads[1]!.fields.language).toBe("en");
  });

  it("talks to an OpenAI-compatible server (Groq) at its baseUrl", async () => {
    const uploads = serve(
      () => HttpResponse.json({ text: "ok", x_groq: { id: "req_1" } }),
      "https://api.groq.com/openai/v1/audio/transcriptions",
    );
    const stt = createOpenAITranscriber({
      id: "groq",
      apiKey: "gsk-test",
      baseUrl: "https://api.groq.com/openai/v1",
      model: "whisper-large-v3-turbo",
    });
    expect((await stt.transcribe({ data: OGG, mediaType: "audio/ogg" })).text).toBe("ok");
    expect(uploads[0]!.authorization).toBe("Bearer gsk-test");
    expect(uploads[0]!.fields.model).toBe("whisper-large-v3-turbo");
  });

  it("maps OpenAI's errors to ProviderError kinds, with retry-after", async () => {
    const stt = createOpenAITranscriber({ apiKey: "sk-bad" });
    serve(() =>
      openaiError(
        401,
        "Incorrect API key provided: sk-bad.",
        "invalid_request_error",
        "invalid_api_key",
      ),
    );
    const auth = await failure(stt.transcribe({ data: OGG, mediaType: "audio/ogg" }));
    expect(ProviderError.isInstance(auth) && auth.kind).toBe("auth");
    expect((auth as ProviderError).statusCode).toBe(401);

    server.resetHandlers();
    serve(() =>
      openaiError(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", {
        "retry-after": "7",
      }),
    );
    const limited = await failure(stt.transcribe({ data: OGG, mediaType: "audio/ogg" }));
    expect(ProviderError.isInstance(limited) && limited.kind).toBe("rate_limit");
    expect((limited as ProviderError).retryAfterMs).toBe(7000);

    server.resetHandlers();
    serve(() =>
      openaiError(
        400,
        "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
        "invalid_request_error",
        null,
      ),
    );
    const refused = await failure(stt.transcribe({ data: OGG, mediaType: "audio/ogg" }));
    expect(ProviderError.isInstance(refused) && refused.kind).toBe("invalid_request");
    expect((refused as Error).message).toContain("Invalid file format");
  });

  it("refuses an answer without text as malformed", async () => {
    serve(() => HttpResponse.json({ segments: [] }));
    const error = await failure(
      createOpenAITranscriber({ apiKey: "sk-test" }).transcribe({
        data: OGG,
        mediaType: "audio/ogg",
      }),
    );
    expect(ProviderError.isInstance(error) && error.kind).toBe("malformed_stream");
  });

  it("fails before any request without a key, with empty or oversized audio, and on bad options", async () => {
    const uploads = serve(() => HttpResponse.json({ text: "never" }));
    const saved = process.env.OPENAI_API_KEY;
    delete process.env.OPENAI_API_KEY;
    try {
      const noKey = await failure(
        createOpenAITranscriber().transcribe({ data: OGG, mediaType: "audio/ogg" }),
      );
      expect(ProviderError.isInstance(noKey) && noKey.kind).toBe("auth");
    } finally {
      if (saved !== undefined) process.env.OPENAI_API_KEY = saved;
    }
    const stt = createOpenAITranscriber({ apiKey: "sk-test", maxBytes: 32 });
    const empty = await failure(
      stt.transcribe({ data: new Uint8Array(0), mediaType: "audio/ogg" }),
    );
    expect(ProviderError.isInstance(empty) && empty.kind).toBe("invalid_request");
    const big = await failure(stt.transcribe({ data: OGG, mediaType: "audio/ogg" }));
    expect((big as Error).message).toContain("over the 32-byte limit");
    await expect(
      stt.transcribe({ data: "not bytes" as never, mediaType: "audio/ogg" }),
    ).rejects.toThrow(InvalidArgumentError);
    expect(uploads).toEqual([]);
    expect(() => createOpenAITranscriber({ maxBytes: 0 })).toThrow(InvalidArgumentError);
    expect(() => createOpenAITranscriber({ model: "" })).toThrow(InvalidArgumentError);
  });

  it("is cancelled by the caller's signal, and times out after timeoutMs", async () => {
    server.use(
      http.post(URL_OPENAI, async ({ request }) => {
        await untilAborted(request.signal);
        return HttpResponse.json({ text: "too late" });
      }),
    );
    const controller = new AbortController();
    const pending = createOpenAITranscriber({ apiKey: "sk-test" }).transcribe(
      { data: OGG, mediaType: "audio/ogg" },
      { signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 30);
    expect(AbortedError.isInstance(await failure(pending))).toBe(true);
    const slow = await failure(
      createOpenAITranscriber({ apiKey: "sk-test", timeoutMs: 50 }).transcribe({
        data: OGG,
        mediaType: "audio/ogg",
      }),
    );
    expect(ProviderError.isInstance(slow) && slow.kind).toBe("timeout");
  });
});
