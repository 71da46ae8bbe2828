/**
 * `sessions.delete` of a session while one of its runs streams: the run ends for its clients
 * (a `chat` `aborted` after its deltas, `agent.wait` answers `aborted`) instead of staying
 * "running" forever, and a session deleted during its first run is deleted too; a session in
 * its first run is listed and described like any other. Over real
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
  waitFor,
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

/**
 * A stack whose run `k1` (message "q1") has streamed "partial" and waits for `hold`. With
 * `first`, a run `k0` ("q0") answered before it, so `k1` is not the session's first run.
 */
async function heldRun(first: boolean) {
  const hold = deferred();
  const waiting = {
    events: [
      { type: "response-start" as const, model: "m1" },
      { type: "text-delta" as const, text: "partial" },
      { type: "wait" as const, until: hold.promise },
    ],
  };
  const stack = await startStack({
    responses: first ? [{ text: "earlier answer" }, waiting, { text: "later" }] : [waiting],
  });
  const client = await TestClient.connect(stack.url, { token: TOKEN });
  if (first) {
    await client.request("chat.send", { sessionKey: KEY, message: "q0", idempotencyKey: "k0" });
    await client.waitEvent("chat", (p) => p.runId === "k0" && p.state === "final");
  }
  await client.request("chat.send", { sessionKey: KEY, message: "q1", idempotencyKey: "k1" });
  await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");
  return { hold, client };
}

describe("sessions.delete during a run", () => {
  it("ends the run as aborted for every client, and agent.wait says so", async () => {
    const { hold, client } = await heldRun(true);

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
    const { hold, client } = await heldRun(false);

    const deleted = await client.request("sessions.delete", { key: KEY });
    expect(deleted).toMatchObject({ ok: true, deleted: true });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "aborted");
    hold.resolve();
    expect((await client.request("sessions.list", {})).sessions).toEqual([]);
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
  });
});

describe("a session in its first run", () => {
  it("is listed by sessions.list and shown, running, by sessions.describe and sessions.get", async () => {
    const { hold, client } = await heldRun(false);

    // The record is saved beside the run, right after its first message: by now, or soon.
    const keys = await waitFor("the session listed", async () => {
      const { sessions } = await client.request("sessions.list", {});
      return sessions.length > 0 && sessions.map((row: { key: string }) => row.key);
    });
    expect(keys).toEqual([KEY]);
    const running = { key: KEY, status: "running", lastRunId: "k1" };
    expect((await client.request("sessions.describe", { key: KEY })).session).toMatchObject(
      running,
    );
    const got = await client.request("sessions.get", { key: KEY });
    expect(got.session).toMatchObject(running);
    expect(got.messages.map((m: { role: string }) => m.role)).toEqual(["user"]);

    hold.resolve();
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "final");
    const after = (await client.request("sessions.describe", { key: KEY })).session;
    expect(after.status).not.toBe("running");
  });

  it("is found by sessions.patch and chat.inject", async () => {
    const { hold, client } = await heldRun(false);
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
