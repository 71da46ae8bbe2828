/**
 * Documents in a user message (`send({ text, files })`): checked before anything is queued,
 * kept with the message (a replay sends them again), sent to the model as file parts after the
 * images, counted by the context-window and rate-limit estimates by their size, named in a
 * compaction's summary request, and handed back by `rewind`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createProviderChain, InvalidArgumentError } from "../src/index.js";
import { estimateRequestTokens } from "../src/providers/rate-limiter.js";
import type { FilePart, ModelMessage } from "../src/providers/types.js";
import { renderForSummary } from "../src/sessions/compaction.js";
import { estimateFileTokens, estimateMessageTokens } from "../src/sessions/context-window.js";
import { AgentRuntime } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import { createScriptedProvider } from "../src/testing/index.js";

const KEY = "agent:main:main";
const PDF = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(store = new MemoryStore()) {
  const provider = createScriptedProvider([{ text: "Read it." }]);
  await store.open();
  cleanups.push(() => store.close());
  const runtime = new AgentRuntime({
    store,
    models: createProviderChain({ providers: [provider], models: [], retry: { maxAttempts: 1 } }),
    agents: [{ id: "main", model: "scripted/model-1" }],
  });
  cleanups.push(() => runtime.stop());
  await runtime.start();
  return { runtime, provider, store, session: runtime.session(KEY) };
}

describe("files in a user message", () => {
  it("reach the model as file parts after the images, are kept in the queue and transcript, and come back from rewind", async () => {
    const { session, provider, store } = await start();
    const image = { mediaType: "image/png", data: "iVBORw0KGgo=" };
    const invoice = { mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" };
    const terms = { mediaType: "application/pdf", url: "https://example.com/terms.pdf" };
    const run = await session.send({
      text: "What do I owe?",
      images: [image],
      files: [invoice, terms],
    });
    expect((await run.result).status).toBe("completed");
    expect(provider.requests[0]!.messages[0]).toEqual({
      role: "user",
      content: [
        { type: "text", text: "What do I owe?" },
        { type: "image", ...image },
        { type: "file", ...invoice },
        { type: "file", ...terms },
      ],
    });
    const records = await store.transcripts.read(KEY);
    expect((records[0]!.entry.message as unknown as ModelMessage).content).toHaveLength(4);
    expect((await session.rewind()).inputs).toEqual([
      { text: "What do I owe?", images: [image], files: [invoice, terms] },
    ]);
  });

  it.each([
    [{ text: "x", files: "invoice.pdf" }, /message files must be an array/],
    [{ text: "x", files: [null] }, /message files\[0\]/],
    [{ text: "x", files: [{ data: PDF }] }, /message files\[0\] needs a mediaType string/],
    [{ text: "x", files: [{ mediaType: "application/pdf" }] }, /files\[0\] needs data or a url/],
    [{ text: "x", files: [{ mediaType: "application/pdf", data: 42 }] }, /files\[0\]\.data/],
    [
      { text: "x", files: [{ mediaType: "application/pdf", data: PDF, filename: "" }] },
      /files\[0\]\.filename/,
    ],
  ])("a malformed files field (%j) is refused, and nothing is queued", async (message, error) => {
    const { session, store, provider } = await start();
    await expect(session.send(message as never)).rejects.toThrow(InvalidArgumentError);
    await expect(session.send(message as never)).rejects.toThrow(error);
    expect(await store.queue.pending({ sessionKey: KEY })).toEqual([]);
    expect(provider.requests).toHaveLength(0);
  });

  it("are estimated by size: a text document by its characters, a PDF by its bytes, one by URL as an image", () => {
    const text = Buffer.from("a".repeat(4_000)).toString("base64");
    expect(estimateFileTokens({ type: "file", mediaType: "text/plain", data: text })).toBe(1_000);
    const bigPdf = Buffer.alloc(400_000).toString("base64");
    expect(estimateFileTokens({ type: "file", mediaType: "application/pdf", data: bigPdf })).toBe(
      10_000,
    );
    const smallPdf: FilePart = { type: "file", mediaType: "application/pdf", data: PDF };
    expect(estimateFileTokens(smallPdf)).toBe(1_600);
    const byUrl: FilePart = { type: "file", mediaType: "application/pdf", url: "https://x/y.pdf" };
    expect(estimateFileTokens(byUrl)).toBe(1_600);
    const message: ModelMessage = {
      role: "user",
      content: [
        { type: "text", text: "abcd" },
        { type: "file", mediaType: "application/pdf", data: bigPdf },
      ],
    };
    expect(estimateMessageTokens(message)).toBe(4 + 1 + 10_000);
    // The rate limiter's estimate counts the document the same way.
    expect(estimateRequestTokens({ messages: [message] })).toBe(1 + 10_000);
  });

  it("are named in the text a compaction summarizes", () => {
    const rendered = renderForSummary([
      {
        role: "user",
        content: [
          { type: "text", text: "Check these" },
          { type: "image", mediaType: "image/png", data: "x" },
          { type: "file", mediaType: "application/pdf", data: PDF, filename: "invoice.pdf" },
          { type: "file", mediaType: "application/pdf", url: "https://x/y.pdf" },
        ],
      },
    ]);
    expect(rendered).toBe("User: Check these\n[an image]\n[a document: invoice.pdf]\n[a document]");
  });
});
