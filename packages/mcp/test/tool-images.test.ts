/**
 * Images in an MCP tool's result, from a real stdio server (test/fixtures/server.mjs `shot`):
 * a valid one reaches the model as an image of the tool result, whole; one whose bytes are not
 * the type it names, or of an unsupported type, becomes a note in the text, and nothing fails.
 */

import { fileURLToPath } from "node:url";
import {
  AgentRuntime,
  createProviderChain,
  MemoryStore,
  type ModelMessage,
  type RunEvent,
} from "@beamclaw/core";
import { createScriptedProvider } from "@beamclaw/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { McpToolServer } from "../src/index.js";
import { SHOT_PNG } from "./fixtures/server.mjs";

const SERVER = fileURLToPath(new URL("./fixtures/server.mjs", import.meta.url));

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("an MCP tool returning images", () => {
  it("sends the valid image to the model as an image, and names the others in the text", async () => {
    const provider = createScriptedProvider([
      { toolCalls: [{ toolName: "test__shot", input: {} }] },
      { text: "done" },
    ]);
    const store = new MemoryStore();
    await store.open();
    const runtime = new AgentRuntime({
      store,
      models: createProviderChain({ providers: [provider], models: [] }),
      agents: [{ id: "main", model: "scripted/m", tools: ["*"] }],
    });
    await runtime.start();
    cleanups.push(async () => {
      await runtime.stop();
      await store.close();
    });
    const server = new McpToolServer({
      name: "test",
      command: process.execPath,
      args: [SERVER, "--stdio"],
    });
    cleanups.push(() => server.stop());
    await server.start({ registry: runtime.tools });

    const run = await runtime.session("agent:main:main").send("look");
    const events: RunEvent[] = [];
    for await (const event of run) events.push(event);
    expect((await run.result).status).toBe("completed");

    const expected = {
      type: "tool-result",
      toolName: "test__shot",
      output: [
        "the page",
        "[image image/png not shown: content is not a known image type, not image/png]",
        "[image image/bmp not shown: unsupported type (supported: image/png, image/jpeg, image/gif, image/webp)]",
      ].join("\n"),
      images: [{ type: "image", mediaType: "image/png", data: SHOT_PNG }],
    };
    expect(events.find((e) => e.type === "tool-result")).toMatchObject({
      ...expected,
      isError: false,
    });
    // The model's next request holds the image on the tool result.
    const sent = provider.requests[1]!.messages.find(
      (m): m is Extract<ModelMessage, { role: "tool" }> => m.role === "tool",
    );
    expect(sent?.content[0]).toMatchObject(expected);
  });
});
