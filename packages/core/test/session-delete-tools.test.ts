/**
 * Tools registered for one session (`runtime.tools.registerForSession`) go with the session
 * when it is deleted: a session made again under the same key is not offered them, and a
 * runtime whose sessions come and go (per-user chats) does not keep them in memory for ever.
 * The registry takes keys as the runtime does: normalized, and only session keys.
 */
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AgentRuntime,
  defineTool,
  InvalidSessionKeyError,
  type ModelSource,
  ToolRegistry,
} from "../src/index.js";
import { MemoryStore } from "../src/store/memory-store.js";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const deploy = defineTool({
  name: "deploy",
  description: "deploys",
  parameters: z.object({}),
  execute: () => "deployed",
});

/** Answers "ok", remembering the names of the tools each request offered. */
function recordingModel(offered: string[][]): ModelSource {
  return {
    async *stream(request) {
      offered.push((request.tools ?? []).map((t) => t.name));
      yield { type: "text-delta", text: "ok" };
      yield { type: "finish", reason: "stop" };
    },
  };
}

async function start(offered: string[][]) {
  const store = new MemoryStore();
  await store.open();
  const runtime = new AgentRuntime({
    store,
    models: recordingModel(offered),
    agents: [{ id: "main", model: "p/m" }],
  });
  await runtime.start();
  cleanups.push(async () => {
    await runtime.stop();
    await store.close();
  });
  return runtime;
}

describe("tools registered for a session", () => {
  it("are offered to that session until it is deleted, and not to one made again under its key", async () => {
    const offered: string[][] = [];
    const runtime = await start(offered);
    const key = "agent:main:direct:ada";
    runtime.tools!.registerForSession(key, deploy);
    const session = runtime.session(key);
    await (await session.send("hi")).result;
    expect(offered.at(-1)).toEqual(["deploy"]);

    await session.delete();
    await (await runtime.session(key).send("hi again")).result;
    expect(offered.at(-1)).toEqual([]);
    // Registering again after the delete is not refused as a duplicate.
    expect(() => runtime.tools!.registerForSession(key, deploy)).not.toThrow();
  });

  it("are dropped by a delete of a session that never ran", async () => {
    const offered: string[][] = [];
    const runtime = await start(offered);
    runtime.tools!.registerForSession("agent:main:direct:bo", deploy);
    expect((await runtime.session("agent:main:direct:bo").delete()).existed).toBe(false);
    await (await runtime.session("agent:main:direct:bo").send("hi")).result;
    expect(offered.at(-1)).toEqual([]);
  });

  it("take the key as the runtime does: case-insensitive", async () => {
    const offered: string[][] = [];
    const runtime = await start(offered);
    runtime.tools!.registerForSession("Agent:Main:Direct:Cy", deploy);
    await (await runtime.session("agent:main:direct:cy").send("hi")).result;
    expect(offered.at(-1)).toEqual(["deploy"]);
    runtime.tools!.clearSession("AGENT:MAIN:DIRECT:CY");
    await (await runtime.session("agent:main:direct:cy").send("hi")).result;
    expect(offered.at(-1)).toEqual([]);
  });

  it("refuse a key that is not a session key, registering nothing", () => {
    const registry = new ToolRegistry();
    for (const bad of ["", "agent:", "agent:BAD AGENT:x", 7 as unknown as string]) {
      expect(() => registry.registerForSession(bad, deploy), String(bad)).toThrow(
        InvalidSessionKeyError,
      );
    }
    expect(() => registry.clearSession("agent:")).toThrow(InvalidSessionKeyError);
  });
});
