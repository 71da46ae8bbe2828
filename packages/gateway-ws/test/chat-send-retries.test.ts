/**
 * A `chat.send` retried with the same idempotency key (a client that lost the answer sends
 * again) does nothing twice: a chat command is not carried out again. Over real sockets,
 * every frame checked against the protocol schema.
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
  type Wire,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

const KEY = "agent:main:main";
const text = (m: Wire) => m.content.find((c: Wire) => c.type === "text")?.text as string;

describe("chat.send retried", () => {
  it("does not carry out a chat command again: a retried /new keeps what was said since", async () => {
    const stack = await startStack({ responses: [{ text: "Paris." }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    const first = await client.request("chat.send", {
      sessionKey: KEY,
      message: "/new",
      idempotencyKey: "new-1",
    });
    expect(first).toEqual({ runId: "new-1", status: "ok", command: "new" });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "Capital?",
      idempotencyKey: "q1",
    });
    await client.waitEvent("chat", (p) => p.runId === "q1" && p.state === "final");

    const retried = await client.request("chat.send", {
      sessionKey: KEY,
      message: "/new",
      idempotencyKey: "new-1",
    });
    expect(retried).toEqual({ runId: "new-1", status: "ok", command: "new" });
    const history = await client.request("chat.history", { sessionKey: KEY });
    expect(history.messages.map(text)).toEqual(["Capital?", "Paris."]);
    // The command's answer was shown once.
    const finals = client.events.filter(
      (e) => e.event === "chat" && e.payload.runId === "new-1" && e.payload.state === "final",
    );
    expect(finals).toHaveLength(1);
  });

  it("does not stop again: a retried /stop leaves the run started since alone", async () => {
    const hold = deferred();
    const waiting = (text: string) => ({
      events: [
        { type: "response-start" as const, model: "m1" },
        { type: "text-delta" as const, text },
        { type: "wait" as const, until: hold.promise },
      ],
    });
    const stack = await startStack({ responses: [waiting("one"), waiting("two")] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "a", idempotencyKey: "k1" });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "delta");
    const stop = { sessionKey: KEY, message: "/stop", idempotencyKey: "stop-1" };
    const stopped = await client.request("chat.send", stop);
    expect(stopped).toEqual({ ok: true, aborted: true, runIds: ["k1"] });
    await client.waitEvent("chat", (p) => p.runId === "k1" && p.state === "aborted");
    await client.request("chat.send", { sessionKey: KEY, message: "b", idempotencyKey: "k2" });
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "delta");

    expect(await client.request("chat.send", stop)).toEqual(stopped);
    hold.resolve();
    await client.waitEvent("chat", (p) => p.runId === "k2" && p.state === "final");
    expect(
      client.events.some(
        (e) => e.event === "chat" && e.payload.runId === "k2" && e.payload.state === "aborted",
      ),
    ).toBe(false);
  });

  it("still carries out the same command sent again under a new key", async () => {
    const stack = await startStack({ responses: [{ text: "Paris." }] });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", {
      sessionKey: KEY,
      message: "Capital?",
      idempotencyKey: "q1",
    });
    await client.waitEvent("chat", (p) => p.runId === "q1" && p.state === "final");
    await client.request("chat.send", { sessionKey: KEY, message: "/new", idempotencyKey: "n1" });
    expect((await client.request("chat.history", { sessionKey: KEY })).messages).toEqual([]);
  });
});
