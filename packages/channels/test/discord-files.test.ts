/**
 * Discord's inbound files: they arrive as links to Discord's CDN that are signed and expire,
 * so the channel downloads images and PDFs (up to its `attachments` limits) before it hands a
 * message over, and hands them over inline; anything else is described, its URL marked
 * private. Against the fake Discord (gateway over WebSockets, REST and the CDN through msw).
 */
import {
  AgentRuntime,
  ChannelManager,
  type ChannelStateStore,
  createProviderChain,
  InvalidArgumentError,
  MemoryStore,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createDiscordChannel } from "../src/discord/index.js";
import { FileDownloadError } from "../src/shared/files.js";
import { Op } from "./discord/fake-gateway.js";
import { cleanups, runCleanups, startHarness, waitFor } from "./discord/harness.js";
import {
  BOT,
  cdnRequests,
  clearCdn,
  closeDiscordMsw,
  type DiscordPlatform,
  preloadDiscordLibraries,
  serveCdnFile,
  startDiscordPlatform,
  TOKEN,
} from "./discord/platform.js";

await preloadDiscordLibraries();
afterEach(async () => {
  await runCleanups();
  clearCdn();
});
afterAll(() => closeDiscordMsw());

/** A PNG (its signature, then a header chunk). */
const PNG = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
  Buffer.from("\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0", "latin1"),
]);
const JPEG = Buffer.from("\xff\xd8\xff\xe0\0\x10JFIF\0 a tiny jpeg", "latin1");
const PDF = Buffer.from("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n");
const HTML = "<!DOCTYPE html><html><title>Sign in</title></html>";

interface Warning {
  message: string;
  fields: Record<string, unknown> | undefined;
}

/** A logger keeping the warnings. */
function recording() {
  const warnings: Warning[] = [];
  const logger = {
    debug() {},
    info() {},
    warn: (message: string, fields?: Record<string, unknown>) => {
      warnings.push({ message, fields });
    },
    error() {},
  };
  const downloadWarnings = () =>
    warnings.filter((w) => w.message === "discord file could not be downloaded");
  return { logger, warnings, downloadWarnings };
}

type FileSpec = {
  kind: "image" | "audio" | "video" | "file";
  url: string;
  mediaType: string;
  name: string;
  size?: number;
};

/** A DM to the bot, with files: Alice's, or `from`'s (their own DM channel). */
function dm(
  platform: DiscordPlatform,
  messageId: string,
  text: string,
  attachments: FileSpec[],
  from = "alice",
) {
  return platform.inject({
    chatType: "direct",
    chatId: from,
    peer: { id: from, name: from[0]!.toUpperCase() + from.slice(1) },
    text,
    messageId,
    attachments,
  });
}

const base64 = (bytes: Buffer) => bytes.toString("base64");

/**
 * PNGs on the CDN whose answers wait until `release()` (called at the latest by the test's
 * cleanup): `hold(name)` serves one and gives its URL.
 */
function heldCdnFiles() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  cleanups.push(async () => release());
  const hold = (name: string) =>
    serveCdnFile(name, async () => {
      await released;
      return new Response(PNG, { headers: { "Content-Type": "image/png" } });
    });
  return { hold, release };
}

/** A slow PNG's attachment in a message. */
const pngAt = (url: string, name: string): FileSpec => ({
  kind: "image",
  url,
  mediaType: "image/png",
  name,
  size: PNG.length,
});

describe("images and PDFs are downloaded and handed over inline", () => {
  it("an image and a PDF of one message arrive inline (side by side): the exact bytes, the type from the bytes, the size, the URL kept as private", async () => {
    // Each answer waits until both files were asked for: downloaded one after the other,
    // neither would be (and the message would not arrive in time).
    let asked = 0;
    let bothAsked!: () => void;
    const together = new Promise<void>((resolve) => {
      bothAsked = resolve;
    });
    const afterBoth = (body: Buffer, contentType: string) => async () => {
      if (++asked === 2) bothAsked();
      await together;
      return new Response(body, {
        headers: { "Content-Type": contentType, "Content-Length": String(body.length) },
      });
    };
    const image = serveCdnFile("cat.png", afterBoth(PNG, "image/png"));
    const pdf = serveCdnFile("report.pdf", afterBoth(PDF, "application/pdf"));
    // A JPEG that Discord was told is a PNG: its type is taken from its bytes.
    const misnamed = serveCdnFile("photo.png", { body: JPEG, contentType: "image/png" });
    const h = await startHarness();
    await dm(h.platform, "m1", "look at these", [
      { kind: "image", url: image, mediaType: "image/png", name: "cat.png", size: PNG.length },
      { kind: "file", url: pdf, mediaType: "application/pdf", name: "report.pdf", size: 999 },
      { kind: "image", url: misnamed, mediaType: "image/png", name: "photo.png" },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));

    expect(h.calls[0]?.text).toBe("look at these");
    expect(h.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: image,
        privateUrl: true,
        mediaType: "image/png",
        name: "cat.png",
        size: PNG.length,
        data: base64(PNG),
      },
      {
        kind: "file",
        url: pdf,
        privateUrl: true,
        mediaType: "application/pdf",
        name: "report.pdf",
        // The size of what was downloaded, not what was declared.
        size: PDF.length,
        data: base64(PDF),
      },
      {
        kind: "image",
        url: misnamed,
        privateUrl: true,
        mediaType: "image/jpeg",
        name: "photo.png",
        size: JPEG.length,
        data: base64(JPEG),
      },
    ]);
    // Fetched at their signed URLs, without the bot token (the CDN needs none).
    expect(cdnRequests.map((r) => r.url).sort()).toEqual([image, misnamed, pdf].sort());
    for (const request of cdnRequests) expect(request.headers.get("authorization")).toBeNull();
  });

  it("the image of a forwarded message (message_snapshots) is downloaded as well", async () => {
    const image = serveCdnFile("forwarded.png", { body: PNG, contentType: "image/png" });
    const h = await startHarness();
    await h.platform.injectWith(
      { chatType: "direct", chatId: "alice", peer: { id: "alice" }, text: "", messageId: "fw1" },
      {
        raw: {
          message_reference: { type: 1, message_id: "1300000000000000002", channel_id: "c-9" },
          message_snapshots: [
            {
              message: {
                type: 0,
                content: "",
                embeds: [],
                attachments: [
                  {
                    id: "1400000000000000002",
                    filename: "forwarded.png",
                    size: PNG.length,
                    url: image,
                    proxy_url: image,
                    content_type: "image/png",
                  },
                ],
                timestamp: "2025-01-01T10:00:00.000000+00:00",
                edited_timestamp: null,
                flags: 0,
                mentions: [],
                mention_roles: [],
              },
            },
          ],
        },
      },
    );
    await waitFor("the forward", () => h.taken.includes("fw1"));
    expect(h.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: image,
        privateUrl: true,
        mediaType: "image/png",
        name: "forwarded.png",
        size: PNG.length,
        data: base64(PNG),
      },
    ]);
  });

  it("a file declared over the limit is not requested; one whose content is larger than declared is left unread", async () => {
    const { logger, downloadWarnings } = recording();
    const big = serveCdnFile("big.png", { body: PNG, contentType: "image/png" });
    const long = Buffer.concat([PNG, Buffer.alloc(500)]);
    const lying = serveCdnFile("lying.png", { body: long, contentType: "image/png" });
    // No Content-Length: the body is read until it passes the limit.
    const streamed = serveCdnFile("streamed.pdf", {
      body: Buffer.concat([PDF, Buffer.alloc(5_000)]),
      contentType: "application/pdf",
      chunked: true,
    });
    const h = await startHarness({
      logger,
      plugin: { attachments: { inlineImageMaxBytes: 100, inlineDocumentMaxBytes: 1_000 } },
    });
    await dm(h.platform, "m1", "", [
      { kind: "image", url: big, mediaType: "image/png", name: "big.png", size: 101 },
      { kind: "image", url: lying, mediaType: "image/png", name: "lying.png", size: 50 },
      {
        kind: "file",
        url: streamed,
        mediaType: "application/pdf",
        name: "streamed.pdf",
        size: 100,
      },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));

    expect(h.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: big,
        privateUrl: true,
        mediaType: "image/png",
        name: "big.png",
        size: 101,
      },
      {
        kind: "image",
        url: lying,
        privateUrl: true,
        mediaType: "image/png",
        name: "lying.png",
        size: 50,
      },
      {
        kind: "file",
        url: streamed,
        privateUrl: true,
        mediaType: "application/pdf",
        name: "streamed.pdf",
        size: 100,
      },
    ]);
    // The one declared too large was never asked for.
    expect(cdnRequests.map((r) => r.url).sort()).toEqual([lying, streamed].sort());
    expect(downloadWarnings().map((w) => w.fields?.name)).toEqual(
      expect.arrayContaining(["lying.png", "streamed.pdf"]),
    );
    expect(downloadWarnings()).toHaveLength(2);
  });

  it("a CDN that answers 404 or 403 (an expired link): the message still arrives, without the content, and a warning is logged", async () => {
    const { logger, downloadWarnings } = recording();
    const gone = serveCdnFile("gone.png", { status: 404 });
    const expired = serveCdnFile("expired.pdf", { status: 403 });
    const h = await startHarness({ logger });
    await dm(h.platform, "m1", "old files", [
      { kind: "image", url: gone, mediaType: "image/png", name: "gone.png", size: 10 },
      { kind: "file", url: expired, mediaType: "application/pdf", name: "expired.pdf", size: 10 },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));

    expect(h.calls[0]?.text).toBe("old files");
    expect(h.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: gone,
        privateUrl: true,
        mediaType: "image/png",
        name: "gone.png",
        size: 10,
      },
      {
        kind: "file",
        url: expired,
        privateUrl: true,
        mediaType: "application/pdf",
        name: "expired.pdf",
        size: 10,
      },
    ]);
    const warnings = downloadWarnings().sort((a, b) =>
      String(a.fields?.name).localeCompare(String(b.fields?.name)),
    );
    expect(warnings.map((w) => ({ messageId: w.fields?.messageId, name: w.fields?.name }))).toEqual(
      [
        { messageId: "m1", name: "expired.pdf" },
        { messageId: "m1", name: "gone.png" },
      ],
    );
    const errors = warnings.map((w) => w.fields?.error as FileDownloadError);
    expect(errors.every((e) => e instanceof FileDownloadError)).toBe(true);
    expect(errors.map((e) => e.status)).toEqual([403, 404]);
    // The signed URL is not in the log.
    expect(JSON.stringify(warnings.map((w) => [w.fields, String(w.fields?.error)]))).not.toContain(
      "cdn.discordapp.com",
    );
  });

  it("content that is not what it claims (an HTML page for an image, text for a PDF) is not handed over", async () => {
    const { logger, downloadWarnings } = recording();
    const page = serveCdnFile("cat.png", { body: HTML, contentType: "text/html" });
    const text = serveCdnFile("notes.pdf", {
      body: "just some text",
      contentType: "application/pdf",
    });
    // A PDF where an image should be is no image either.
    const pdfAsImage = serveCdnFile("scan.jpg", { body: PDF, contentType: "image/jpeg" });
    const h = await startHarness({ logger });
    await dm(h.platform, "m1", "", [
      { kind: "image", url: page, mediaType: "image/png", name: "cat.png", size: 50 },
      { kind: "file", url: text, mediaType: "application/pdf", name: "notes.pdf", size: 14 },
      { kind: "image", url: pdfAsImage, mediaType: "image/jpeg", name: "scan.jpg", size: 60 },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));

    const attachments = h.calls[0]?.attachments ?? [];
    expect(attachments).toHaveLength(3);
    for (const attachment of attachments) {
      expect(attachment.data).toBeUndefined();
      expect(attachment.privateUrl).toBe(true);
    }
    // Described as Discord described them.
    expect(attachments.map((a) => [a.name, a.mediaType, a.size])).toEqual([
      ["cat.png", "image/png", 50],
      ["notes.pdf", "application/pdf", 14],
      ["scan.jpg", "image/jpeg", 60],
    ]);
    expect(cdnRequests).toHaveLength(3);
    expect(downloadWarnings()).toHaveLength(3);
    expect(
      downloadWarnings().every((w) =>
        String(w.fields?.error).includes("downloaded content is not"),
      ),
    ).toBe(true);
  });

  it("audio, video, archives and images models do not take (SVG) are described, never downloaded", async () => {
    const { logger, downloadWarnings } = recording();
    const files: FileSpec[] = [
      { kind: "audio", mediaType: "audio/ogg", name: "voice-message.ogg", url: "" },
      { kind: "video", mediaType: "video/mp4", name: "clip.mp4", url: "" },
      { kind: "file", mediaType: "application/zip", name: "archive.zip", url: "" },
      { kind: "image", mediaType: "image/svg+xml", name: "logo.svg", url: "" },
    ];
    for (const file of files) {
      file.url = serveCdnFile(file.name, { body: PNG, contentType: file.mediaType });
      file.size = 100;
    }
    const h = await startHarness({ logger });
    await dm(h.platform, "m1", "misc", files);
    await waitFor("the message", () => h.taken.includes("m1"));

    expect(h.calls[0]?.attachments).toEqual(files.map((f) => ({ ...f, privateUrl: true })));
    expect(cdnRequests).toEqual([]);
    expect(downloadWarnings()).toEqual([]);
  });
});

describe("text files", () => {
  it("reads a long message Discord turned into message.txt; binary under a text type is described", async () => {
    const { logger, downloadWarnings } = recording();
    const long = Buffer.from(`${"A long paste. ".repeat(300)}\nZürich, naïve, 東京\n`);
    const text = serveCdnFile("message.txt", {
      body: long,
      contentType: "text/plain; charset=utf-8",
    });
    const binary = serveCdnFile("data.txt", {
      body: Buffer.from([0x00, 0x01, 0xff]),
      contentType: "text/plain",
    });
    const h = await startHarness({ logger });
    await dm(h.platform, "m1", "", [
      {
        kind: "file",
        url: text,
        mediaType: "text/plain; charset=utf-8",
        name: "message.txt",
        size: long.length,
      },
      { kind: "file", url: binary, mediaType: "text/plain", name: "data.txt", size: 3 },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));
    const [pasted, odd] = h.calls[0]?.attachments ?? [];
    expect(pasted).toEqual({
      kind: "file",
      url: text,
      privateUrl: true,
      mediaType: "text/plain; charset=utf-8",
      name: "message.txt",
      size: long.length,
      data: base64(long),
    });
    expect(odd?.data).toBeUndefined();
    expect(downloadWarnings()).toHaveLength(1);
  });

  it("inlineTextMaxBytes bounds text downloads; 0 turns them off", async () => {
    const notes = Buffer.from("x".repeat(100));
    const url = serveCdnFile("notes.md", { body: notes, contentType: "text/markdown" });
    const h = await startHarness({ plugin: { attachments: { inlineTextMaxBytes: 0 } } });
    await dm(h.platform, "m1", "", [
      { kind: "file", url, mediaType: "text/markdown", name: "notes.md", size: 100 },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));
    expect(h.calls[0]?.attachments?.[0]?.data).toBeUndefined();
    expect(cdnRequests).toEqual([]);
  });
});

describe("the attachments option", () => {
  it("inlineImageMaxBytes: 0 turns image downloads off (PDFs are still downloaded)", async () => {
    const image = serveCdnFile("cat.png", { body: PNG, contentType: "image/png" });
    const pdf = serveCdnFile("report.pdf", { body: PDF, contentType: "application/pdf" });
    const h = await startHarness({ plugin: { attachments: { inlineImageMaxBytes: 0 } } });
    await dm(h.platform, "m1", "", [
      { kind: "image", url: image, mediaType: "image/png", name: "cat.png", size: PNG.length },
      {
        kind: "file",
        url: pdf,
        mediaType: "application/pdf",
        name: "report.pdf",
        size: PDF.length,
      },
    ]);
    await waitFor("the message", () => h.taken.includes("m1"));

    const [png, doc] = h.calls[0]?.attachments ?? [];
    expect(png).toEqual({
      kind: "image",
      url: image,
      privateUrl: true,
      mediaType: "image/png",
      name: "cat.png",
      size: PNG.length,
    });
    expect(doc?.data).toBe(base64(PDF));
    expect(cdnRequests.map((r) => r.url)).toEqual([pdf]);
  });

  it("refuses limits that are not non-negative integers at construction, naming the option", () => {
    for (const attachments of [
      { inlineImageMaxBytes: -1 },
      { inlineImageMaxBytes: 1.5 },
      { inlineDocumentMaxBytes: Number.NaN },
      { inlineDocumentMaxBytes: "10" as unknown as number },
    ]) {
      expect(() => createDiscordChannel({ token: TOKEN, attachments })).toThrow(
        InvalidArgumentError,
      );
    }
    expect(() =>
      createDiscordChannel({ token: TOKEN, attachments: { inlineDocumentMaxBytes: -5 } }),
    ).toThrow(/attachments\.inlineDocumentMaxBytes/);
    // Zero (off) and the defaults are fine.
    expect(
      createDiscordChannel({
        token: TOKEN,
        attachments: { inlineImageMaxBytes: 0, inlineDocumentMaxBytes: 0 },
      }).id,
    ).toBe("discord");
    expect(createDiscordChannel({ token: TOKEN, attachments: {} }).id).toBe("discord");
  });
});

describe("messages the channel skips", () => {
  /** A DM from `from` to the bot with one PNG, its event changed by `raw`. */
  const withFile = (
    platform: DiscordPlatform,
    messageId: string,
    raw: Record<string, unknown>,
    from = "alice",
  ) => {
    const url = serveCdnFile(`${messageId}.png`, { body: PNG, contentType: "image/png" });
    return platform.injectWith(
      {
        chatType: "direct",
        chatId: from,
        peer: { id: from },
        text: messageId,
        messageId,
        attachments: [pngAt(url, `${messageId}.png`)],
      },
      { raw },
    );
  };

  it("downloads no file of a message it does not hand over: a webhook's, another bot's, a system message, a malformed one", async () => {
    const h = await startHarness();
    await withFile(h.platform, "hook", { webhook_id: "300" });
    await withFile(h.platform, "other-bot", {
      author: { id: "200", username: "otherbot", bot: true },
    });
    await withFile(h.platform, "joined", { type: 7 });
    await withFile(h.platform, "no-author", { author: null });
    await withFile(h.platform, "bad-guild", { guild_id: 42 });
    // The same DM channel: handed over after those ahead of it were skipped.
    const url = serveCdnFile("real.png", { body: PNG, contentType: "image/png" });
    await dm(h.platform, "real", "a real one", [pngAt(url, "real.png")]);
    await waitFor("the real message", () => h.taken.includes("real"));

    expect(h.calls.map((c) => c.messageId)).toEqual(["real"]);
    expect(h.calls[0]?.attachments?.[0]?.data).toBe(base64(PNG));
    // Only the file of the message handed over was asked for.
    expect(cdnRequests.map((r) => r.url)).toEqual([url]);
  });

  it("with allowBots, downloads another bot's files, never those of its own messages", async () => {
    const h = await startHarness({ plugin: { allowBots: true } });
    await withFile(h.platform, "own", { author: { ...BOT, bot: true } });
    await withFile(h.platform, "other-bot", {
      author: { id: "200", username: "otherbot", bot: true },
    });
    await waitFor("the other bot's message", () => h.taken.includes("other-bot"));

    expect(h.calls.map((c) => c.messageId)).toEqual(["other-bot"]);
    expect(h.calls[0]?.attachments?.[0]?.data).toBe(base64(PNG));
    expect(cdnRequests.map((r) => new URL(r.url).pathname.split("/").at(-1))).toEqual([
      "other-bot.png",
    ]);
  });
});

describe("delivery with downloads", () => {
  it("messages stay in order: a later message waits for the earlier one's files", async () => {
    const { hold, release } = heldCdnFiles();
    const slow = hold("slow.png");
    const h = await startHarness();
    await dm(h.platform, "m1", "first, with a slow file", [pngAt(slow, "slow.png")]);
    await waitFor("the download", () => cdnRequests.length === 1);
    await dm(h.platform, "m2", "second", []);
    // m2 arrived at the bot, but is not handed over before m1.
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
    expect(h.calls).toEqual([]);
    release();
    await waitFor("both", () => h.taken.length === 2);
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2"]);
    expect(h.calls[0]?.attachments?.[0]?.data).toBe(base64(PNG));
  });

  it("a slow download holds only its own channel: another channel's messages go ahead, each channel in order", async () => {
    const { hold, release } = heldCdnFiles();
    const slow = hold("slow.png");
    const h = await startHarness();
    await dm(h.platform, "a1", "Alice, with a slow file", [pngAt(slow, "slow.png")]);
    await waitFor("the download", () => cdnRequests.length === 1);
    await dm(h.platform, "a2", "Alice again", []);
    await dm(h.platform, "b1", "Bob, meanwhile", [], "bob");
    // Bob's DM is another channel: handed over while Alice's first message still downloads.
    await waitFor("Bob's message", () => h.taken.includes("b1"));
    expect(h.calls.map((c) => c.messageId)).toEqual(["b1"]);
    release();
    await waitFor("Alice's messages", () => h.taken.length === 3);
    // Alice's second message waited for her first.
    expect(h.calls.map((c) => c.messageId)).toEqual(["b1", "a1", "a2"]);
    expect(h.calls[1]?.attachments?.[0]?.data).toBe(base64(PNG));
  });

  it("a flood of files across many channels: at most 8 CDN downloads at once, and messages without files are not held", async () => {
    const { hold, release } = heldCdnFiles();
    const h = await startHarness();
    const senders = Array.from({ length: 20 }, (_, i) => `user${i}`);
    for (const [i, from] of senders.entries()) {
      const url = hold(`f${i}.png`);
      await dm(h.platform, `f${i}`, `file ${i}`, [pngAt(url, `f${i}.png`)], from);
    }
    await waitFor("the first downloads", () => cdnRequests.length === 8);
    await dm(h.platform, "plain", "no files here", [], "zoe");
    await waitFor("the message without files", () => h.taken.includes("plain"));
    expect(cdnRequests).toHaveLength(8);
    release();
    await waitFor("every message", () => h.taken.length === 21);
    expect(cdnRequests).toHaveLength(20);
    for (const call of h.calls.filter((c) => c.messageId !== "plain")) {
      expect(call.attachments?.[0]?.data).toBe(base64(PNG));
    }
  });

  it("a connection lost while one channel waits on a download: the other channel's message is not handed over twice, the waiting one once", async () => {
    let first = true;
    const file = serveCdnFile("cat.png", (request) => {
      if (!first) return new Response(PNG, { headers: { "Content-Type": "image/png" } });
      first = false;
      // Hangs until the channel gives up on it.
      return new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () =>
          resolve(new Response(null, { status: 499 })),
        );
      });
    });
    const h = await startHarness();
    await dm(h.platform, "a1", "Alice, with a file", [
      { kind: "image", url: file, mediaType: "image/png", name: "cat.png", size: PNG.length },
    ]);
    await waitFor("the download", () => cdnRequests.length === 1);
    await dm(h.platform, "b1", "Bob, meanwhile", [], "bob");
    // Taken after a1 arrived, while a1 is not: the resume point stays before a1.
    await waitFor("Bob's message", () => h.taken.includes("b1"));
    h.platform.gateway.drop();
    await waitFor("the resumed session", () => h.starts() === 2);
    await waitFor("Alice's message", () => h.taken.includes("a1"));
    // The resumed session replayed both; b1 was recognised as taken, a1 handed over once.
    await new Promise<void>((resolve) => setTimeout(resolve, 100));
    expect(h.calls.map((c) => c.messageId)).toEqual(["b1", "a1"]);
    expect(h.calls[1]?.attachments?.[0]?.data).toBe(base64(PNG));
    expect(h.platform.gateway.count(Op.Resume)).toBe(1);
  });

  it("starts a message's downloads as it arrives, while the one ahead still waits for its own", async () => {
    const { hold, release } = heldCdnFiles();
    const first = hold("one.png");
    const second = hold("two.png");
    const h = await startHarness();
    await dm(h.platform, "m1", "one", [pngAt(first, "one.png")]);
    await dm(h.platform, "m2", "two", [pngAt(second, "two.png")]);
    // Both files are being fetched before the first message is handed over.
    await waitFor("both downloads", () => cdnRequests.length === 2);
    expect(h.calls).toEqual([]);
    release();
    await waitFor("both", () => h.taken.length === 2);
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2"]);
    expect(h.calls.map((c) => c.attachments?.[0]?.data)).toEqual([base64(PNG), base64(PNG)]);
    // Each file was fetched once.
    expect(cdnRequests).toHaveLength(2);
  });

  it("a download cut by a lost connection: the message is not acknowledged, and the resumed session hands it over once, with its file", async () => {
    let first = true;
    let aborted = false;
    const file = serveCdnFile("cat.png", (request) => {
      if (!first) {
        return new Response(PNG, { headers: { "Content-Type": "image/png" } });
      }
      first = false;
      // Hangs until the channel gives up on it.
      return new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () => {
          aborted = true;
          resolve(new Response(null, { status: 499 }));
        });
      });
    });
    const h = await startHarness();
    await dm(h.platform, "m1", "before", []);
    await waitFor("m1", () => h.taken.includes("m1"));
    await dm(h.platform, "m2", "with a file", [
      { kind: "image", url: file, mediaType: "image/png", name: "cat.png", size: PNG.length },
    ]);
    await waitFor("the download", () => cdnRequests.length === 1);
    const started = Date.now();
    h.platform.gateway.drop();
    await waitFor("the resumed session", () => h.starts() === 2);
    await waitFor("m2", () => h.taken.includes("m2"));

    // The stop did not wait out the download's time limit: it was cut at once.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(aborted).toBe(true);
    expect(cdnRequests).toHaveLength(2);
    // Handed over once, with its file, after a RESUME (the session replayed it).
    expect(h.calls.map((c) => c.messageId)).toEqual(["m1", "m2"]);
    expect(h.calls[1]?.attachments?.[0]?.data).toBe(base64(PNG));
    expect(h.platform.gateway.count(Op.Resume)).toBe(1);
    expect(h.platform.gateway.count(Op.Identify)).toBe(1);
  });

  it("a backfilled message (fetched over REST after a restart) gets its files inline too", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const key = (accountId: string, name: string) => `state:${accountId}:${name}`;
    const state: ChannelStateStore = {
      get: (accountId, name) => store.kv.get(key(accountId, name)),
      set: async (accountId, name, value) => {
        await store.kv.set(key(accountId, name), value);
      },
      delete: (accountId, name) => store.kv.delete(key(accountId, name)),
    };
    const first = await startHarness({ state });
    const { platform } = first;
    const say = (text: string, attachments: FileSpec[] = []) => {
      const messageId = platform.snowflake();
      platform.post({
        chatType: "group",
        chatId: "room-1",
        peer: { id: "alice", name: "Alice" },
        text,
        messageId,
        attachments,
      });
      return messageId;
    };
    const m1 = say("before the restart");
    await waitFor("m1", () => first.taken.includes(m1));
    await first.stop();

    // Posted while the bot is away: only in the channel's history.
    const image = serveCdnFile("chart.png", { body: PNG, contentType: "image/png" });
    const pdf = serveCdnFile("minutes.pdf", { body: PDF, contentType: "application/pdf" });
    const m2 = say("while away", [
      { kind: "image", url: image, mediaType: "image/png", name: "chart.png", size: PNG.length },
      {
        kind: "file",
        url: pdf,
        mediaType: "application/pdf",
        name: "minutes.pdf",
        size: PDF.length,
      },
    ]);
    const second = await startHarness({ on: platform, state });
    await waitFor("the backfilled message", () => second.taken.includes(m2));

    expect(
      platform.requests.some(
        (r) =>
          r.method === "GET" &&
          r.path === "/channels/room-1/messages" &&
          r.query.get("after") === m1,
      ),
    ).toBe(true);
    expect(second.calls.map((c) => c.messageId)).toEqual([m2]);
    expect(second.calls[0]?.attachments).toEqual([
      {
        kind: "image",
        url: image,
        privateUrl: true,
        mediaType: "image/png",
        name: "chart.png",
        size: PNG.length,
        data: base64(PNG),
      },
      {
        kind: "file",
        url: pdf,
        privateUrl: true,
        mediaType: "application/pdf",
        name: "minutes.pdf",
        size: PDF.length,
        data: base64(PDF),
      },
    ]);
  });
});

describe("through a ChannelManager", () => {
  it("the model gets the image and the PDF inline, other files named, and never a CDN URL", async () => {
    const platform = await startDiscordPlatform();
    cleanups.push(() => platform.close());
    const store = new MemoryStore();
    await store.open();
    const provider = createScriptedProvider({
      id: "s",
      responses: [{ text: "a cat and a report" }, { text: "an archive" }],
    });
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider] }),
      agents: [{ id: "main", model: "s/m" }],
    });
    await runtime.start();
    const discord = createDiscordChannel({
      token: TOKEN,
      rest: { api: platform.api },
      identifyIntervalMs: 0,
    });
    const manager = new ChannelManager({
      runtime,
      channels: [{ plugin: discord, dmPolicy: "open" }],
    });
    await manager.start();
    cleanups.push(async () => {
      await manager.stop();
      await runtime.stop();
      await store.close();
    });

    const image = serveCdnFile("cat.png", { body: PNG, contentType: "image/png" });
    const pdf = serveCdnFile("report.pdf", { body: PDF, contentType: "application/pdf" });
    const zip = serveCdnFile("archive.zip", { body: "PK\x03\x04", contentType: "application/zip" });
    await dm(platform, "m1", "what are these?", [
      { kind: "image", url: image, mediaType: "image/png", name: "cat.png", size: PNG.length },
      {
        kind: "file",
        url: pdf,
        mediaType: "application/pdf",
        name: "report.pdf",
        size: PDF.length,
      },
    ]);
    await waitFor("the first answer", () => provider.requests.length === 1, 10_000);
    await dm(platform, "m2", "and this?", [
      { kind: "file", url: zip, mediaType: "application/zip", name: "archive.zip", size: 4 },
    ]);
    await waitFor("the second answer", () => provider.requests.length === 2, 10_000);

    const firstUser = provider.requests[0]!.messages.at(-1)!;
    expect(firstUser.role).toBe("user");
    expect(firstUser.content).toContainEqual({
      type: "image",
      mediaType: "image/png",
      data: base64(PNG),
    });
    expect(firstUser.content).toContainEqual({
      type: "file",
      mediaType: "application/pdf",
      data: base64(PDF),
      filename: "report.pdf",
    });
    expect(JSON.stringify(firstUser.content)).toContain("what are these?");
    const secondUser = provider.requests[1]!.messages.at(-1)!;
    expect(JSON.stringify(secondUser.content)).toContain("[file: archive.zip, application/zip]");
    // The second request carries the first turn again, image and PDF still inline.
    expect(JSON.stringify(provider.requests[1]!.messages)).toContain(base64(PNG));
    // No expiring link anywhere in what the model was sent.
    expect(JSON.stringify(provider.requests)).not.toContain("cdn.discordapp.com");
    expect(JSON.stringify(provider.requests)).not.toContain("?ex=");
    await waitFor(
      "the replies",
      () => platform.outbound().filter((o) => o.kind === "text").length === 2,
    );
  });
});
