/**
 * `sessions.delete` of a session while one of its runs streams: the run ends for its clients
 * (a `chat` `aborted` after its deltas, `agent.wait` answers `aborted`) instead of staying
 * "running" forever, and a session deleted during its first run is deleted too. Over real
 * sockets, every frame checked against the protocol schema.
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

function states(client: TestClient, runId: string): string[] {
  return client.events
    .filter((e) => e.event === "chat" && e.payload.runId === runId)
    .map((e) => e.payload.state as string);
}

/** Answers: the first at once, the second streams "partial" and waits for `hold`. */
function stackWithHeldAnswer(first: boolean) {
  const hold = deferred();
  const waiting = {
    events: [
      { type: "response-start" as const, model: "m1" },
      { type: "text-delta" as const, text: "partial" },
      { type: "wait" as const, until: hold.promise },
    ],
  };
  return {
    hold,
    responses: first ? [{ text: "earlier answer" }, waiting, { text: "later" }] : [waiting],
  };
}

describe("sessions.delete during a run", () => {
  it("ends the run as aborted for every client, and agent.wait says so", async () => {
    const { hold, responses } = stackWithHeldAnswer(true);
    const stack = await startStack({ responses });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "q0", idempotencyKey: "k0" });
    await client.waitEvent("chat", (p) => p.runId === "k0" && p.state === "final");
    await client.request("chat.send", { sessionKey: KEY, message: "q1", idempotencyKey: "k1" });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");

    const deleted = await client.request("sessions.delete", { key: KEY });
    expect(deleted).toMatchObject({ ok: true, deleted: true });
    const { payload: end } = await client.waitEvent(
      "chat",
      (p) => p.runId === "k1" && p.state !== "delta",
    );
    expect(end).toMatchObject({ state: "aborted", stopReason: "aborted" });
    expect(end.message.content[0].text).toBe("partial");
    expect(await client.request("agent.wait", { runId: "k1", timeoutMs: 0 })).toMatchObject({
      runId: "k1",
      status: "aborted",
    });
    hold.resolve();
    // Nothing of it runs on: a new conversation under the key starts at rest.
    await client.request("chat.send", { sessionKey: KEY, message: "q2", idempotencyKey: "k2" });
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "final");
    expect(states(client, "k1")).toEqual(["delta", "aborted"]);
    const row = (await client.request("sessions.get", { key: KEY })).session;
    expect(row.status).not.toBe("running");
  });

  it("deletes a session during its first run (before its first answer was saved)", async () => {
    const { hold, responses } = stackWithHeldAnswer(false);
    const stack = await startStack({ responses });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "q1", idempotencyKey: "k1" });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");

    const deleted = await client.request("sessions.delete", { key: KEY });
    expect(deleted).toMatchObject({ ok: true, deleted: true });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "aborted");
    hold.resolve();
    expect((await client.request("sessions.list", {})).sessions).toEqual([]);
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
  });
});

describe("a session in its first run (no record saved yet)", () => {
  it("is found by sessions.patch and chat.inject", async () => {
    const { hold, responses } = stackWithHeldAnswer(false);
    const stack = await startStack({ responses });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "q1", idempotencyKey: "k1" });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");
    expect(await client.request("sessions.patch", { key: KEY, label: "first" })).toMatchObject({
      ok: true,
    });
    // A note waits for the run to end (it goes in after the run's answer).
    const injecting = client.request("chat.inject", { sessionKey: KEY, message: "a note" });
    hold.resolve();
    expect(await injecting).toMatchObject({ ok: true });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    const row = (await client.request("sessions.get", { key: KEY })).session;
    expect(row.label).toBe("first");
  });
});
