/**
 * The `connect` handshake answers `hello-ok` before the connection is sent any event (after
 * `connect.challenge`): a client that is still connecting is not sent another client's run.
 * Over real sockets, every frame checked against the protocol schema.
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

describe("connect", () => {
  it("sends hello-ok before any event, even when runs stream while the snapshot is made", async () => {
    const stack = await startStack({ responses: [{ text: ["Hel", "lo"] }] });
    const first = await TestClient.connect(stack.url, { token: TOKEN });
    // Hold the next handshake while it reads the store for its health snapshot.
    const sessions = stack.store.sessions;
    const count = sessions.count.bind(sessions);
    const entered = deferred();
    const release = deferred();
    sessions.count = async (...args: Parameters<typeof count>) => {
      entered.resolve();
      await release.promise;
      return count(...args);
    };
    const second = await TestClient.open(stack.url);
    const hello = second.sendConnect({ token: TOKEN });
    await entered.promise;
    sessions.count = count;

    await first.request("chat.send", { sessionKey: KEY, message: "hi", idempotencyKey: "r1" });
    await first.waitEvent("chat", (p) => p.runId === "r1" && p.state === "final");
    release.resolve();
    expect((await hello).type).toBe("hello-ok");

    const afterChallenge = second.frames.filter(
      (f) => !(f.type === "event" && f.event === "connect.challenge"),
    );
    expect(afterChallenge[0]).toMatchObject({ type: "res", ok: true });
    expect(second.events.some((e) => e.event === "chat" && e.payload.runId === "r1")).toBe(false);
  });
});
