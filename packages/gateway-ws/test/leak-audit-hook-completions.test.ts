/**
 * Leak audit of `/hooks/agent` idempotency: while a keyed request's run goes on, the gateway
 * holds its completion in memory by idempotency key, and lets it go once the completion is
 * recorded in the store. A completion that could not be made (the main session's line refused
 * by the store) must not stay there for good, failing every retry of its key.
 */
import { StoreError } from "@beamclaw/core";
import { afterEach, describe, expect, it } from "vitest";
import { httpCall, startStack, stopStacks } from "./support.js";

const HOOK_TOKEN = "hook-token-0123456789abcdef";
const AUTH = { authorization: `Bearer ${HOOK_TOKEN}` };

afterEach(async () => {
  await stopStacks();
});

describe("leak audit: hook completions", () => {
  it("records the completion of a failed run whose main-session line the store refused, and replays it", async () => {
    const stack = await startStack({
      responses: [{ error: new Error("model exploded") }],
      gateway: { hooks: { settings: { enabled: true, token: HOOK_TOKEN } } },
    });
    // The store refuses the main session's wake lines, and nothing else.
    const kv = stack.store.kv;
    const set = kv.set.bind(kv);
    kv.set = async (key, value, options) => {
      if (key.startsWith("heartbeat:wake:")) {
        throw new StoreError("STORE_UNAVAILABLE", "the store is down");
      }
      return set(key, value, options);
    };

    const body = { message: "import finished", deliver: false, waitForCompletion: true };
    const headers = { ...AUTH, "idempotency-key": "import-7" };
    const post = () => httpCall(stack.port, "/hooks/agent", { method: "POST", headers, body });
    const first = await post();
    expect(first.status).toBe(200);
    expect(first.json.completion).toMatchObject({ status: "error", mainSessionEvent: false });
    // Nothing of the key is held for good: a retry reads the recorded completion.
    for (let i = 0; i < 3; i++) {
      const again = await post();
      expect(again.status).toBe(200);
      expect(again.json).toEqual({
        ok: true,
        runId: first.json.runId,
        sessionKey: first.json.sessionKey,
        replayed: true,
        completion: first.json.completion,
      });
    }
    expect(stack.provider.requests).toHaveLength(1);
  });
});
