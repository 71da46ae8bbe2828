/**
 * Audit of the hooks endpoint's handling of odd payloads over real HTTP: a payload nested
 * deeply enough to overflow `JSON.stringify` (a mapping's default message, a template of an
 * object) is a 400, not a 500; templates over missing, inherited and odd paths render as
 * nothing and never evaluate anything.
 */
import { afterEach, describe, expect, it } from "vitest";
import { HOOK_TOKEN, hookStack } from "./audit-hooks-support.js";
import { httpCall, type Reply, stopStacks } from "./support.js";

const AUTH = { authorization: `Bearer ${HOOK_TOKEN}` };

afterEach(async () => {
  await stopStacks();
});

function post(port: number, path: string, body: unknown): Promise<Reply> {
  return httpCall(port, path, { method: "POST", headers: AUTH, body });
}

/** `{"a":{"a":...{"a":1}}}` nested `depth` objects deep, as text. */
function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

describe("hooks: deeply nested payloads", () => {
  it("answer 400 invalid_payload for a mapping whose message is the payload as JSON, not a 500", async () => {
    const stack = await hookStack({ mappings: [{ match: { path: "raw" } }] });
    const reply = await post(stack.port, "/hooks/raw", `{"data":${nested(20_000)}}`);
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({ ok: false, error: { code: "invalid_payload" } });
    expect(stack.provider.requests).toHaveLength(0);
  });

  it("answer 400 for a template that renders a deeply nested object", async () => {
    const stack = await hookStack({
      mappings: [{ match: { path: "tpl" }, messageTemplate: "got {{data}}" }],
    });
    const reply = await post(stack.port, "/hooks/tpl", `{"data":${nested(20_000)}}`);
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({ error: { code: "invalid_payload" } });
  });

  it("take a payload nested as deep as real webhooks are", async () => {
    const stack = await hookStack(
      { mappings: [{ match: { path: "raw" } }] },
      { responses: ["ok"] },
    );
    const reply = await post(stack.port, "/hooks/raw", `{"data":${nested(40)}}`);
    expect(reply.status).toBe(200);
    expect(reply.json).toMatchObject({ ok: true });
  });
});

describe("hooks: templates over odd payloads", () => {
  it("render missing, inherited and malformed paths as nothing, and a value's own braces as text", async () => {
    const stack = await hookStack(
      {
        mappings: [
          {
            match: { path: "odd" },
            messageTemplate:
              "[{{missing.deep[3].x}}][{{constructor}}][{{__proto__}}][{{a..b}}][{{}}][{{n}}][{{t}}]",
          },
        ],
      },
      { responses: ["ok"] },
    );
    const reply = await post(stack.port, "/hooks/odd", {
      n: null,
      t: "{{n}} $& $1",
      waitForCompletion: true,
    });
    expect(reply.status).toBe(200);
    const sent = JSON.stringify(stack.provider.requests[0]?.messages);
    expect(sent).toContain("[][][][][][][{{n}} $& $1]");
  });
});
