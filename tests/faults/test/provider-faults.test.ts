/**
 * The model provider misbehaves: it never answers, answers 429 or 5xx, streams a chunk that is
 * not JSON, or cuts the stream before `[DONE]`. A real gateway (store-fs on disk) talks to a
 * real local OpenAI-compatible server over HTTP through `@beamclaw/providers` and the core
 * `ProviderChain`. After each fault: the gateway still serves (the next turn completes), the
 * acknowledged message is in the session's history, the queue holds nothing unfinished, no
 * store file is corrupt, and the client saw a typed error event.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeAllClients, GatewayClient } from "./support/client.js";
import { corruptFiles } from "./support/files.js";
import { type ModelServer, startModelServer } from "./support/model-server.js";
import { type Stack, startStack, stopAllStacks, TOKEN } from "./support/stack.js";

let dir: string;
let model: ModelServer;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "beamclaw-faults-provider-"));
  model = await startModelServer();
});
afterEach(async () => {
  await closeAllClients();
  await stopAllStacks();
  await model.close();
  await rm(dir, { recursive: true, force: true });
});

const KEY = "agent:main:main";

/** Sends one chat message; resolves with the run's end event once it comes. */
async function turn(client: GatewayClient, runId: string, message: string) {
  const ack = await client.request("chat.send", {
    sessionKey: KEY,
    message,
    idempotencyKey: runId,
  });
  expect(ack).toEqual({ runId, status: "started" });
  return (await client.chatEnd(runId, 30_000)).payload;
}

/** The rules every provider fault must leave standing. */
async function expectRecovered(stack: Stack, client: GatewayClient, failedMessage: string) {
  model.push({ kind: "text", chunks: ["back ", "to ", "normal"] });
  const next = await turn(client, "after-fault", "are you there?");
  expect(next.state).toBe("final");
  expect(next.message.content[0].text).toBe("back to normal");
  const history = await client.request("chat.history", { sessionKey: KEY });
  const userTexts = history.messages
    .filter((m: { role: string }) => m.role === "user")
    .map((m: { content: Array<{ text: string }> }) => m.content.map((c) => c.text).join(""));
  expect(userTexts).toContain(failedMessage);
  expect(await stack.store.queue.pending({})).toEqual([]);
  await stack.stop();
  expect(await corruptFiles(dir)).toEqual([]);
}

describe("provider faults", () => {
  it("a provider that never answers is cut off at its timeout: the client gets a typed timeout error naming the provider", async () => {
    const stack = await startStack({ model, store: dir, providerTimeoutMs: 300 });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push({ kind: "hang" }, { kind: "hang" });
    const end = await turn(client, "timeout-1", "hello?");
    expect(end.state).toBe("error");
    expect(end.errorKind).toBe("timeout");
    expect(end.errorMessage).toMatch(/timeoutMs/);
    expect(end.errorDetail).toMatchObject({ provider: "local", model: "fault-model" });
    // Retried once (two attempts), then given up.
    expect(model.requests).toHaveLength(2);
    await expectRecovered(stack, client, "hello?");
  });

  it("a 429 with Retry-After is retried after that wait and the turn completes", async () => {
    const stack = await startStack({ model, store: dir });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push(
      { kind: "status", status: 429, retryAfterS: 1 },
      { kind: "text", chunks: ["served ", "after the wait"] },
    );
    const end = await turn(client, "rate-1", "busy?");
    expect(end.state).toBe("final");
    expect(end.message.content[0].text).toBe("served after the wait");
    expect(model.requests).toHaveLength(2);
    expect(model.requests[1]!.at - model.requests[0]!.at).toBeGreaterThanOrEqual(950);
    await expectRecovered(stack, client, "busy?");
  });

  it("a 429 that persists ends the turn with a typed rate_limit error visible to the client", async () => {
    const stack = await startStack({ model, store: dir });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push({ kind: "status", status: 429 }, { kind: "status", status: 429 });
    const end = await turn(client, "rate-2", "still busy?");
    expect(end.state).toBe("error");
    expect(end.errorKind).toBe("rate_limit");
    expect(end.errorMessage).toMatch(/429/);
    await expectRecovered(stack, client, "still busy?");
  });

  it("a 5xx is retried, and a 5xx that persists ends the turn with a typed error naming the provider", async () => {
    const stack = await startStack({ model, store: dir });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push({ kind: "status", status: 503 }, { kind: "text", chunks: ["recovered"] });
    const retried = await turn(client, "5xx-1", "first");
    expect(retried.state).toBe("final");
    expect(retried.message.content[0].text).toBe("recovered");

    model.push({ kind: "status", status: 500 }, { kind: "status", status: 502 });
    const failed = await turn(client, "5xx-2", "second");
    expect(failed.state).toBe("error");
    expect(failed.errorMessage).toMatch(/HTTP 502/);
    expect(failed.errorDetail).toMatchObject({ provider: "local" });
    await expectRecovered(stack, client, "second");
  });

  it("a malformed SSE chunk ends the turn with a malformed_stream error and is not retried", async () => {
    const stack = await startStack({ model, store: dir });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push({ kind: "malformed" });
    const end = await turn(client, "malformed-1", "speak");
    expect(end.state).toBe("error");
    expect(end.errorMessage).toMatch(/not a JSON object|not valid JSON|malformed/i);
    expect(model.requests).toHaveLength(1);
    await expectRecovered(stack, client, "speak");
  });

  it("a stream cut before [DONE] ends the turn with an error; the partial text is never stored as an answer", async () => {
    const stack = await startStack({ model, store: dir, retry: { maxAttempts: 1 } });
    const client = await GatewayClient.connect(stack.url, TOKEN);
    model.push({ kind: "truncated", chunks: ["half ", "an answ"] });
    const end = await turn(client, "cut-1", "tell me everything");
    expect(end.state).toBe("error");
    expect(end.errorMessage).toMatch(/DONE|ended|cut|closed|terminated/i);
    const history = await client.request("chat.history", { sessionKey: KEY });
    const assistantTexts = history.messages
      .filter((m: { role: string }) => m.role === "assistant")
      .map((m: { content: Array<{ text?: string }> }) => m.content.map((c) => c.text).join(""));
    expect(assistantTexts.join("|")).not.toContain("an answ");
    await expectRecovered(stack, client, "tell me everything");
  });
});
