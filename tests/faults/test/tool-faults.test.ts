/**
 * A tool misbehaves: it throws, it hangs (ignoring its abort signal), or it floods the turn
 * with output. A real gateway (store-fs on disk) runs the agent's `defineTool` tools under the
 * runtime's supervised tool runner; the model (a local OpenAI-compatible server over HTTP)
 * asks for the tool, then answers. After each: the turn completes, the model was told what
 * went wrong as a tool result, the gateway keeps serving, and no store file is corrupt.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineTool } from "@beamclaw/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { closeAllClients, GatewayClient } from "./support/client.js";
import { corruptFiles } from "./support/files.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";
import { startStack, stopAllStacks, TOKEN } from "./support/stack.js";

let dir: string;
let model: ModelServer;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-tool-"));
  model = await startModelServer();
});
afterEach(async () => {
  await closeAllClients();
  await stopAllStacks();
  await model.close();
  await rm(dir, { recursive: true, force: true });
});

const KEY = "agent:main:main";

/** The tool result the model received in its second request (OpenAI's `role: "tool"` message). */
function toolResultSentToModel(): string {
  const second = model.requests[1];
  if (second === undefined) throw new Error("the model was not called a second time");
  const tool = second.body.messages.find((m) => m.role === "tool");
  if (tool === undefined) throw new Error("the second model request carries no tool result");
  return typeof tool.content === "string" ? tool.content : JSON.stringify(tool.content);
}

async function runTurn(client: GatewayClient, runId: string) {
  await client.request("chat.send", {
    sessionKey: KEY,
    message: "use the tool",
    idempotencyKey: runId,
  });
  return (await client.chatEnd(runId, 30_000)).payload;
}

describe("tool faults", () => {
  it("a tool that throws gives the model an error result and the turn completes", async () => {
    const broken = defineTool({
      name: "broken",
      description: "always fails",
      parameters: z.object({}),
      execute: () => {
        throw new Error("disk on fire");
      },
    });
    const stack = await startStack({
      model,
      store: dir,
      runtime: {
        tools: [broken],
        agents: [{ id: "main", model: "local/fault-model", tools: ["*"] }],
      },
    });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push(
      { kind: "tool-call", name: "broken", args: {} },
      { kind: "text", chunks: ["the tool failed, sorry"] },
    );
    const end = await runTurn(client, "throws-1");
    expect(end.state).toBe("final");
    expect(end.message.content[0].text).toBe("the tool failed, sorry");
    expect(toolResultSentToModel()).toMatch(/tool "broken" failed.*disk on fire/);
    await stack.stop();
    expect(await corruptFiles(dir)).toEqual([]);
  });

  it("a tool that hangs and ignores its signal is cut off at its timeout; the model is told and the turn completes", async () => {
    let started = 0;
    const stuck = defineTool({
      name: "stuck",
      description: "never returns",
      parameters: z.object({}),
      maxRetries: 0,
      execute: () => {
        started++;
        return new Promise<never>(() => undefined);
      },
    });
    const stack = await startStack({
      model,
      store: dir,
      runtime: {
        tools: [stuck],
        toolTimeoutMs: 300,
        agents: [{ id: "main", model: "local/fault-model", tools: ["*"] }],
      },
    });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push(
      { kind: "tool-call", name: "stuck", args: {} },
      { kind: "text", chunks: ["it timed out"] },
    );
    const end = await runTurn(client, "hangs-1");
    expect(end.state).toBe("final");
    expect(started).toBe(1);
    expect(toolResultSentToModel()).toMatch(/tool "stuck" failed.*(timed out|timeout|300 ms)/i);
    // The gateway still serves the next turn.
    model.push({ kind: "text", chunks: ["next"] });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "again",
      idempotencyKey: "hangs-2",
    });
    expect((await client.chatEnd("hangs-2")).payload.state).toBe("final");
    await stack.stop();
    expect(await corruptFiles(dir)).toEqual([]);
  });

  it("a tool that floods output does not disconnect the clients or stop the gateway; its result is capped with a marker; the turn completes", async () => {
    const flood = defineTool({
      name: "flood",
      description: "returns a lot",
      parameters: z.object({}),
      execute: () => "x".repeat(12 * 1024 * 1024),
    });
    const stack = await startStack({
      model,
      store: dir,
      runtime: {
        tools: [flood],
        agents: [{ id: "main", model: "local/fault-model", tools: ["*"] }],
      },
    });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    const bystander = await GatewayClient.connect(stack.url, TOKEN);
    model.push(
      { kind: "tool-call", name: "flood", args: {} },
      { kind: "text", chunks: ["that was a lot"] },
    );
    const end = await runTurn(client, "flood-1");
    expect(end.state).toBe("final");
    expect(end.message.content[0].text).toBe("that was a lot");
    // The result was capped (`tools.maxOutputBytes`, 64 KiB by default) before it went into
    // the transcript: the model got its head and a marker saying how much was dropped, and
    // clients a preview of no more than that.
    const sent = toolResultSentToModel();
    expect(Buffer.byteLength(sent)).toBeLessThanOrEqual(64 * 1024);
    expect(sent).toMatch(/^x+\n\[tool output truncated: \d+ of 12582912 bytes dropped\]$/);
    const shown = await bystander.waitEvent(
      "agent",
      (p) => p.stream === "tool" && p.data.phase === "result",
    );
    expect(shown.payload.data.result.length).toBeLessThanOrEqual(64 * 1024);
    // Both clients are still connected and served.
    expect((await bystander.request("health")).ok).toBe(true);
    expect((await client.request("health")).ok).toBe(true);
    await stack.stop();
    expect(await corruptFiles(dir)).toEqual([]);
  });
});
