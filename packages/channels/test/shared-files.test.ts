/**
 * The channels' shared file download (`src/shared/files.ts`) against a real HTTP server on
 * 127.0.0.1: bounded reads with and without a declared length, errors that never name the
 * URL, time limits, aborts, and the checks of downloaded bytes and of the limits.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { InvalidArgumentError } from "@beamclaw/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_INLINE_DOCUMENT_MAX_BYTES,
  DEFAULT_INLINE_IMAGE_MAX_BYTES,
  DEFAULT_INLINE_TEXT_MAX_BYTES,
  downloadFile,
  FileDownloadError,
  inlineLimitOf,
  inlineLimits,
  withInlineData,
} from "../src/shared/files.js";

const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.alloc(200, 7),
]);

let server: http.Server;
let base: string;
/** Requests whose connection closed before the server finished its answer. */
const cut: string[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/png") {
      res.writeHead(200, { "content-type": "image/png", "content-length": PNG.length });
      res.end(PNG);
    } else if (path === "/declared-big") {
      res.writeHead(200, { "content-length": 1_000_000 });
      res.write(Buffer.alloc(1024));
      // Never finishes by itself: the client must drop it.
      req.socket.on("close", () => cut.push(path));
    } else if (path === "/chunked-big") {
      // No Content-Length: 64 KiB chunks until the client goes away (bounded at 100).
      res.writeHead(200, { "content-type": "application/octet-stream" });
      let sent = 0;
      const push = () => {
        if (res.destroyed || sent++ >= 100) return res.end();
        res.write(Buffer.alloc(64 * 1024), () => setImmediate(push));
      };
      req.socket.on("close", () => cut.push(path));
      push();
    } else if (path === "/slow") {
      res.writeHead(200);
      res.write("x");
      const timer = setTimeout(() => res.end(), 5_000);
      req.socket.on("close", () => clearTimeout(timer));
    } else if (path === "/auth") {
      const ok = req.headers.authorization === "Bearer secret";
      res.writeHead(ok ? 200 : 403);
      res.end(ok ? "%PDF-1.4\n" : "forbidden");
    } else {
      res.writeHead(404);
      res.end("not found");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const until = async (what: string, check: () => boolean) => {
  const end = Date.now() + 3_000;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe("downloadFile", () => {
  it("reads a file within the limit, with its content type, and sends the headers given", async () => {
    const png = await downloadFile(`${base}/png`, { maxBytes: 1024, timeoutMs: 2_000 });
    expect(png?.data.equals(PNG)).toBe(true);
    expect(png?.contentType).toBe("image/png");
    const pdf = await downloadFile(`${base}/auth`, {
      maxBytes: 1024,
      timeoutMs: 2_000,
      headers: { authorization: "Bearer secret" },
    });
    expect(pdf?.data.toString()).toBe("%PDF-1.4\n");
  });

  it("leaves a file over the limit unread, by its Content-Length or once more arrived", async () => {
    expect(await downloadFile(`${base}/png`, { maxBytes: 100, timeoutMs: 2_000 })).toBeUndefined();
    expect(
      await downloadFile(`${base}/declared-big`, { maxBytes: 4096, timeoutMs: 2_000 }),
    ).toBeUndefined();
    expect(
      await downloadFile(`${base}/chunked-big`, { maxBytes: 200 * 1024, timeoutMs: 5_000 }),
    ).toBeUndefined();
    // Both connections were dropped, not read to their end.
    await until("the dropped connections", () =>
      ["/declared-big", "/chunked-big"].every((p) => cut.includes(p)),
    );
  });

  it("fails with FileDownloadError naming the status, never the URL", async () => {
    const error = await downloadFile(`${base}/auth?token=hush`, {
      maxBytes: 1024,
      timeoutMs: 2_000,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileDownloadError);
    expect((error as FileDownloadError).status).toBe(403);
    expect((error as Error).message).not.toContain("hush");
    const missing = await downloadFile(`${base}/gone`, { maxBytes: 1024, timeoutMs: 2_000 }).catch(
      (e: unknown) => e,
    );
    expect((missing as FileDownloadError).status).toBe(404);
  });

  it("fails with FileDownloadError when the time runs out or nothing listens", async () => {
    const slow = await downloadFile(`${base}/slow`, { maxBytes: 1024, timeoutMs: 150 }).catch(
      (e: unknown) => e,
    );
    expect(slow).toBeInstanceOf(FileDownloadError);
    expect((slow as Error).message).toContain("longer than 150 ms");
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refused = await downloadFile(`http://127.0.0.1:${port}/x`, {
      maxBytes: 1024,
      timeoutMs: 2_000,
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FileDownloadError);
    expect((refused as FileDownloadError).status).toBeUndefined();
  });

  it("rejects with the caller's reason when the caller aborts", async () => {
    const controller = new AbortController();
    const reason = new Error("the channel stops");
    const pending = downloadFile(`${base}/slow`, {
      maxBytes: 1024,
      timeoutMs: 5_000,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(reason), 50);
    await expect(pending).rejects.toBe(reason);
  });
});

describe("withInlineData", () => {
  it("inlines bytes that are what the attachment claims, typed by the bytes", () => {
    const jpeg = Buffer.from("\xff\xd8\xff\xe0 jpeg", "latin1");
    expect(withInlineData({ kind: "image", mediaType: "image/png", url: "u" }, jpeg)).toEqual({
      kind: "image",
      mediaType: "image/jpeg",
      url: "u",
      data: jpeg.toString("base64"),
      size: jpeg.length,
    });
    const pdf = Buffer.from("%PDF-1.7\n");
    expect(withInlineData({ kind: "file", mediaType: "application/pdf" }, pdf)).toMatchObject({
      mediaType: "application/pdf",
      data: pdf.toString("base64"),
    });
  });

  it("inlines a text file's UTF-8 bytes as they are, and refuses binary under a text type", () => {
    const csv = Buffer.from("city,temp\nParis,21\nZürich,17\n");
    expect(
      withInlineData({ kind: "file", mediaType: "text/csv; charset=utf-8", name: "t.csv" }, csv),
    ).toEqual({
      kind: "file",
      mediaType: "text/csv; charset=utf-8",
      name: "t.csv",
      data: csv.toString("base64"),
      size: csv.length,
    });
    expect(() =>
      withInlineData({ kind: "file", mediaType: "text/plain" }, Buffer.from([0xff, 0xfe, 0x00])),
    ).toThrow(/not UTF-8 text/);
    expect(() =>
      withInlineData({ kind: "file", mediaType: "application/json" }, Buffer.from("{\u0000}")),
    ).toThrow(/not UTF-8 text/);
  });

  it("inlines audio as it is (a transcriber reads many formats), but not nothing", () => {
    const ogg = Buffer.from("OggS voice");
    expect(withInlineData({ kind: "audio", mediaType: "audio/ogg" }, ogg)).toEqual({
      kind: "audio",
      mediaType: "audio/ogg",
      data: ogg.toString("base64"),
      size: ogg.length,
    });
    expect(() =>
      withInlineData({ kind: "audio", mediaType: "audio/ogg" }, Buffer.alloc(0)),
    ).toThrow(/empty/);
  });

  it("refuses bytes that are not what the attachment claims", () => {
    const html = Buffer.from("<!DOCTYPE html><title>Sign in</title>");
    expect(() => withInlineData({ kind: "image", mediaType: "image/png" }, html)).toThrow(
      /not a PNG, JPEG, GIF or WebP image/,
    );
    expect(() => withInlineData({ kind: "file", mediaType: "application/pdf" }, PNG)).toThrow(
      /not a PDF/,
    );
  });
});

describe("inline limits", () => {
  it("defaults to 5 MiB for images and 10 MiB for PDFs, and checks what it is given", () => {
    expect(inlineLimits(undefined, "attachments")).toEqual({
      image: DEFAULT_INLINE_IMAGE_MAX_BYTES,
      document: DEFAULT_INLINE_DOCUMENT_MAX_BYTES,
      text: DEFAULT_INLINE_TEXT_MAX_BYTES,
      audio: 0,
    });
    expect(DEFAULT_INLINE_TEXT_MAX_BYTES).toBe(256 * 1024);
    expect(inlineLimits({ inlineImageMaxBytes: 0 }, "attachments").image).toBe(0);
    for (const bad of [-1, 1.5, Number.NaN, "1" as never]) {
      expect(() => inlineLimits({ inlineDocumentMaxBytes: bad }, "attachments")).toThrow(
        InvalidArgumentError,
      );
    }
  });

  it("downloads images of types models take and PDFs, within their declared size", () => {
    const limits = { image: 100, document: 1000, text: 50, audio: 0 };
    expect(inlineLimitOf({ kind: "image", mediaType: "image/PNG" }, limits)).toBe(100);
    expect(inlineLimitOf({ kind: "image", mediaType: "image/png", size: 101 }, limits)).toBe(0);
    expect(inlineLimitOf({ kind: "image", mediaType: "image/heic" }, limits)).toBe(0);
    expect(inlineLimitOf({ kind: "image" }, limits)).toBe(0);
    expect(inlineLimitOf({ kind: "file", mediaType: "application/pdf", size: 999 }, limits)).toBe(
      1000,
    );
    expect(inlineLimitOf({ kind: "audio", mediaType: "audio/ogg" }, limits)).toBe(0);
    expect(inlineLimitOf({ kind: "file", mediaType: "application/zip" }, limits)).toBe(0);
    // Text files: parameters and case aside.
    expect(inlineLimitOf({ kind: "file", mediaType: "Text/Plain; charset=utf-8" }, limits)).toBe(
      50,
    );
    expect(inlineLimitOf({ kind: "file", mediaType: "application/json", size: 50 }, limits)).toBe(
      50,
    );
    expect(inlineLimitOf({ kind: "file", mediaType: "text/csv", size: 51 }, limits)).toBe(0);
    // Audio only when asked for (for a transcriber).
    expect(inlineLimitOf({ kind: "audio", mediaType: "audio/ogg" }, limits)).toBe(0);
    expect(inlineLimitOf({ kind: "audio", mediaType: "audio/ogg" }, { ...limits, audio: 70 })).toBe(
      70,
    );
    // An image type sent as a file is not downloaded as text, nor as an image.
    expect(inlineLimitOf({ kind: "file", mediaType: "image/png" }, limits)).toBe(0);
  });
});
