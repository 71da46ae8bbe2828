/**
 * Images in tool results: a tool returns them with `toolResult`, the runner checks each one
 * (type, base64, magic bytes, size, count) and keeps them beside the text, outside its cap; the
 * transcript saves them, and the model's next request carries them as images.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  type AgentDefinition,
  AgentRuntime,
  defineTool,
  estimateRequestTokens,
  type ImagePart,
  MAX_TOOL_RESULT_IMAGE_BYTES,
  MAX_TOOL_RESULT_IMAGES,
  type ModelMessage,
  type ModelRequest,
  type ModelSource,
  type RunEvent,
  SupervisedToolRunner,
  type ToolContext,
  ToolRegistry,
  toolResult,
} from "../src/index.js";
import { estimateMessageTokens } from "../src/sessions/context-window.js";
import { MemoryStore } from "../src/store/memory-store.js";

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG_SIGNATURE = Buffer.from([0xff, 0xd8, 0xff, 0xe0]);
/** Base64 of a file `size` bytes long starting with `signature`. */
const fileOf = (signature: Buffer, size = 64) =>
  Buffer.concat([signature, Buffer.alloc(size - signature.length, 7)]).toString("base64");
const png = (size = 64): ImagePart => ({
  type: "image",
  mediaType: "image/png",
  data: fileOf(PNG_SIGNATURE, size),
});

const agent = (tools: string[]): AgentDefinition => ({ id: "main", model: "test/m", tools });

function context(): ToolContext {
  return {
    signal: new AbortController().signal,
    sessionKey: "agent:main:main",
    agentId: "main",
    runId: "run-1",
    toolCallId: "call-1",
    emit: () => {},
  };
}

async function runTool(execute: () => unknown) {
  const tool = defineTool({
    name: "shot",
    description: "takes a screenshot",
    parameters: z.object({}),
    execute: execute as () => ReturnType<typeof toolResult>,
  });
  const runner = new SupervisedToolRunner({
    registry: new ToolRegistry([tool]),
    resolveAgent: () => agent(["*"]),
  });
  return runner.execute(
    { type: "tool-call", toolCallId: "call-1", toolName: "shot", input: {} },
    context(),
  );
}

describe("toolResult through the tool runner", () => {
  it("keeps a valid image beside the text, whole, even far over the text cap", async () => {
    const big = png(1024 * 1024);
    const result = await runTool(() => toolResult("a screenshot", { images: [png(), big] }));
    expect(result).toEqual({ output: "a screenshot", isError: false, images: [png(), big] });
    expect(result.images?.[1]?.data).toBe(big.data);
  });

  it("leaves out each image that cannot go to the model, and the text says which and why", async () => {
    const images: ImagePart[] = [
      { type: "image", mediaType: "image/png", data: "not base64!" },
      { type: "image", mediaType: "image/png", data: fileOf(JPEG_SIGNATURE) },
      { type: "image", mediaType: "image/svg+xml", data: Buffer.from("<svg/>").toString("base64") },
      { type: "image", mediaType: "image/png", url: "https://example.com/a.png" },
      png(MAX_TOOL_RESULT_IMAGE_BYTES + 1),
      { type: "image", mediaType: "image/jpeg", data: fileOf(JPEG_SIGNATURE) },
    ];
    const result = await runTool(() => toolResult("shots", { images }));
    expect(result.isError).toBe(false);
    expect(result.images).toEqual([images[5]]);
    expect(result.output).toBe(
      [
        "shots",
        "[image image/png not shown: data is not valid base64]",
        "[image image/png not shown: content is image/jpeg, not image/png]",
        "[image image/svg+xml not shown: unsupported type (supported: image/png, image/jpeg, image/gif, image/webp)]",
        "[image image/png not shown: no inline base64 data]",
        `[image image/png not shown: ${MAX_TOOL_RESULT_IMAGE_BYTES + 1} bytes, over the limit of ${MAX_TOOL_RESULT_IMAGE_BYTES}]`,
      ].join("\n"),
    );
  });

  it(`keeps at most ${MAX_TOOL_RESULT_IMAGES} images, and JSON output gets the notes as text`, async () => {
    const images = Array.from({ length: MAX_TOOL_RESULT_IMAGES + 2 }, () => png());
    const result = await runTool(() => toolResult({ pages: 10 }, { images }));
    expect(result.images).toHaveLength(MAX_TOOL_RESULT_IMAGES);
    const note = `[image image/png not shown: more than ${MAX_TOOL_RESULT_IMAGES} images in one result]`;
    expect(result.output).toBe(`{"pages":10}\n${note}\n${note}`);
  });

  it("a result with no images is plain, and a result made without toolResult keeps its shape", async () => {
    expect(await runTool(() => toolResult("text only"))).toEqual({
      output: "text only",
      isError: false,
    });
    expect(await runTool(() => ({ output: "x", images: [png()] }))).toEqual({
      output: { output: "x", images: [png()] },
      isError: false,
    });
  });
});

describe("tool-result images in estimates", () => {
  it("count like a user message's images", () => {
    const part = (images?: ImagePart[]): ModelMessage => ({
      role: "tool",
      content: [
        {
          type: "tool-result",
          toolCallId: "c",
          toolName: "t",
          output: "ok",
          ...(images ? { images } : {}),
        },
      ],
    });
    expect(estimateMessageTokens(part([png(), png()]))).toBeGreaterThan(
      estimateMessageTokens(part()) + 1000,
    );
    expect(estimateRequestTokens({ messages: [part([png()])] })).toBeGreaterThanOrEqual(
      estimateRequestTokens({ messages: [part()] }) + 1000,
    );
  });
});

// ------------------------------------------------------------------ through the runtime

/** Calls `shot` once, then answers "done"; records every request. */
class ShotModel implements ModelSource {
  readonly requests: Array<Omit<ModelRequest, "model">> = [];
  async *stream(request: Omit<ModelRequest, "model">) {
    this.requests.push(structuredClone(request));
    const last = request.messages.at(-1);
    if (
      last?.role === "user" &&
      last.content.some((p) => p.type === "text" && p.text === "shoot")
    ) {
      yield { type: "tool-call" as const, toolCallId: "c1", toolName: "shot", input: {} };
    } else {
      yield { type: "text-delta" as const, text: "done" };
    }
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a tool returning an image, through the runtime", () => {
  it("saves the image in the transcript, sends it to the model, and keeps it after a restart", async () => {
    const store = new MemoryStore();
    await store.open();
    cleanups.push(() => store.close());
    const image = png(200_000);
    const model = new ShotModel();
    const start = async () => {
      const runtime = new AgentRuntime({
        store,
        models: model,
        agents: [{ id: "main", model: "test/m", tools: ["*"] }],
        tools: [
          {
            name: "shot",
            description: "takes a screenshot",
            inputSchema: { type: "object" },
            execute: () => toolResult("the page", { images: [image] }),
          },
        ],
      });
      cleanups.push(() => runtime.stop());
      await runtime.start();
      return runtime;
    };
    const runtime = await start();
    const session = runtime.session("agent:main:main");
    const events: RunEvent[] = [];
    const run = await session.send("shoot");
    for await (const event of run) events.push(event);
    expect((await run.result).status).toBe("completed");
    const expected = {
      type: "tool-result",
      toolCallId: "c1",
      toolName: "shot",
      output: "the page",
      images: [image],
    };
    expect(events.find((e) => e.type === "tool-result")).toMatchObject({
      ...expected,
      isError: false,
    });
    // The model's second request carries the image on the result.
    const toolMessage = model.requests[1]?.messages.find((m) => m.role === "tool");
    expect(toolMessage?.content).toEqual([expected]);
    // Saved: the history holds it, through JSON and back.
    const saved = (await session.history())
      .map((r) => JSON.parse(JSON.stringify(r.entry.message)) as ModelMessage)
      .find((m) => m.role === "tool");
    expect(saved?.content).toEqual([expected]);

    // A restarted runtime reads it back and sends it again.
    await runtime.stop();
    const again = await start();
    const next = await again.session("agent:main:main").send("thanks");
    expect((await next.result).status).toBe("completed");
    const resent = model.requests.at(-1)?.messages.find((m) => m.role === "tool");
    expect(resent?.content).toEqual([expected]);
  });
});
