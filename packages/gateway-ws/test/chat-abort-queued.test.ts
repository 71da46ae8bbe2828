/**
 * `chat.abort` (and `sessions.abort`) of a run the session accepted but has not started yet
 * (queued behind its active run): the run is taken out of the queue, ends as `aborted`, and
 * its message never reaches the model. Over real sockets, every frame checked against the
 * protocol schema.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  deferred,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";

/** A stack whose first answer waits for `hold`, with a client that has a run going. */
async function busySession() {
  const hold = deferred();
  const stack = await startStack({
    responses: [
      {
        events: [
          { type: "response-start", model: "m1" },
          { type: "text-delta", text: "working" },
          { type: "wait", until: hold.promise },
        ],
      },
      { text: "second answer" },
      { text: "third answer" },
    ],
  });
  const client = await TestClient.connect(stack.url, { token: TOKEN });
  await client.request("chat.send", { sessionKey: KEY, message: "first", idempotencyKey: "k1" });
  await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");
  const ack = await client.request("chat.send", {
    sessionKey: KEY,
    message: "second",
    idempotencyKey: "k2",
  });
  expect(ack).toEqual({ runId: "k2", status: "started" });
  return { stack, client, hold };
}

function states(client: TestClient, runId: string): string[] {
  return client.events
    .filter((e) => e.event === "chat" && e.payload.runId === runId)
    .map((e) => e.payload.state as string);
}

describe("aborting a queued run", () => {
  it("chat.abort with its runId takes it out of the queue; the active run goes on", async () => {
    const { stack, client, hold } = await busySession();
    const answer = await client.request("chat.abort", { sessionKey: KEY, runId: "k2" });
    expect(answer).toEqual({ ok: true, aborted: true, runIds: ["k2"] });
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "aborted");
    hold.resolve();
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    // A later message runs next: the aborted one never reached the model.
    await client.request("chat.send", { sessionKey: KEY, message: "third", idempotencyKey: "k3" });
    await client.waitEvent("chat", (p) => p.runId === "k3" && p.state === "final");
    expect(states(client, "k2")).toEqual(["aborted"]);
    expect(JSON.stringify(stack.provider.requests)).not.toContain('"second"');
    expect(await client.request("agent.wait", { runId: "k2", timeoutMs: 0 })).toMatchObject({
      status: "aborted",
    });
  });

  it("sessions.abort with key and runId does the same", async () => {
    const { client, hold } = await busySession();
    const answer = await client.request("sessions.abort", { key: KEY, runId: "k2" });
    expect(answer).toEqual({ ok: true, aborted: true, runIds: ["k2"] });
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "aborted");
    hold.resolve();
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    expect(states(client, "k1")).toEqual(["delta", "final"]);
  });

  it("answers aborted: false for a queued run named under another session, which goes on", async () => {
    const { client, hold } = await busySession();
    const answer = await client.request("chat.abort", {
      sessionKey: "agent:main:other",
      runId: "k2",
    });
    expect(answer).toEqual({ ok: true, aborted: false, runIds: [] });
    hold.resolve();
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "final");
    expect(states(client, "k2")).toEqual(["delta", "final"]);
  });
});
