/**
 * A poison message seen from a gateway client: its session crashes on every run, so after
 * `quarantineAfterCrashes` crashes it is quarantined; the client's run ends in an `error`
 * chat event naming the quarantine, and the next message of the session is answered.
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  closeClients,
  type Stack,
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

describe("a poison message over the gateway", () => {
  it("ends the client's run with an error naming the quarantine; the session goes on", async () => {
    let stack: Stack | undefined;
    // Each run of "poison" kills its session, as a bug that crashes it would.
    const crash = () => {
      stack!.runtime.registry.whereis(`session:${KEY}`)?.kill();
      return "never seen";
    };
    stack = await startStack({
      responses: [crash, crash, "answer to the next one"],
      runtime: { quarantineAfterCrashes: 2 },
    });
    const client = await TestClient.connect(stack.url, { token: TOKEN });
    await client.request("chat.send", { sessionKey: KEY, message: "poison", idempotencyKey: "p1" });
    const failed = await client.waitEvent(
      "chat",
      (p) => p.runId === "p1" && (p.state === "error" || p.state === "final"),
    );
    expect(failed.payload.state).toBe("error");
    expect(failed.payload.errorMessage).toMatch(/quarantined/);

    await client.request("chat.send", { sessionKey: KEY, message: "next", idempotencyKey: "n1" });
    const final = await client.waitEvent(
      "chat",
      (p) => p.runId === "n1" && (p.state === "final" || p.state === "error"),
    );
    expect(final.payload.state).toBe("final");
    expect(JSON.stringify(final.payload.message)).toContain("answer to the next one");
    const [record] = await stack.runtime.quarantined();
    expect(record).toMatchObject({ sessionKey: KEY, crashes: 2 });
  });
});
