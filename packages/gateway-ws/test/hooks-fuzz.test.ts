/**
 * Bad bodies for the hooks, over a real socket: every field of `/hooks/wake` and
 * `/hooks/agent`, and the payload of a templated mapping, set in turn to values of every
 * type. Each request is answered with a 4xx in the hooks' error shape or a 200/204, never a
 * 5xx, and the gateway keeps serving. The model always has an answer ready, so a 5xx can only
 * be the gateway's own failure.
 */
import { afterEach, describe, expect, it } from "vitest";
import { httpCall, type Reply, startStack, stopStacks } from "./support.js";

afterEach(() => stopStacks());

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const HOOK_TOKEN = "hook-fuzz-token-0123456789";

const BAD_VALUES: Json[] = [
  null,
  "",
  " ",
  "x".repeat(5_000),
  -1,
  0,
  1.5,
  1e308,
  true,
  [],
  ["a"],
  {},
  { nested: { deeper: [{ x: 1 }] } },
  "agent:main:main",
  "../../etc/passwd",
  "{{constructor.prototype}}",
];

const BASES: Record<string, { path: string; body: Record<string, Json> }> = {
  wake: { path: "/hooks/wake", body: { text: "hello", mode: "next-heartbeat" } },
  agent: {
    path: "/hooks/agent",
    body: {
      message: "hello",
      name: "Fuzz",
      deliver: false,
      sessionKey: "hook:fuzz",
      wakeMode: "next-heartbeat",
    },
  },
  mapped: {
    path: "/hooks/issues",
    body: { issue: { title: "t", number: 1 }, repo: "app", source: "tracker" },
  },
};

const FIELDS: Record<string, string[]> = {
  wake: ["text", "mode", "agentId", "sessionKey"],
  agent: [
    "message",
    "name",
    "agentId",
    "sessionKey",
    "wakeMode",
    "deliver",
    "channel",
    "to",
    "accountId",
    "model",
    "thinking",
    "timeoutSeconds",
    "waitForCompletion",
    "idempotencyKey",
  ],
  mapped: ["issue", "repo", "source"],
};

/** What is wrong with one answer, or `undefined` when it is a proper one. */
function problemWith(reply: Reply): string | undefined {
  if (reply.status >= 500) return `HTTP ${reply.status}: ${reply.text.slice(0, 200)}`;
  if (reply.status === 204) return undefined;
  if (reply.status >= 400) {
    const error = reply.json?.error;
    return reply.json?.ok === false &&
      typeof error?.code === "string" &&
      typeof error?.message === "string"
      ? undefined
      : `HTTP ${reply.status} without the error shape: ${reply.text.slice(0, 200)}`;
  }
  return reply.status === 200 && reply.json?.ok === true
    ? undefined
    : `HTTP ${reply.status}: ${reply.text.slice(0, 200)}`;
}

describe("hooks with bad bodies", () => {
  it("answer each with a 4xx in their error shape or a success; never a 5xx", async () => {
    const stack = await startStack({
      responses: Array.from({ length: 2_000 }, () => "ok"),
      gateway: {
        hooks: {
          settings: {
            enabled: true,
            token: HOOK_TOKEN,
            allowRequestSessionKey: true,
            allowedSessionKeyPrefixes: ["hook:"],
            mappings: [
              {
                match: { path: "issues" },
                sessionKey: "hook:{{repo}}",
                messageTemplate: "#{{issue.number}} {{issue.title}} {{issue}}",
                deliver: false,
              },
            ],
          },
        },
      },
    });
    const problems: string[] = [];
    let sent = 0;
    for (const [name, base] of Object.entries(BASES)) {
      const bodies: Array<[string, Json | string]> = [
        [`${name}: the base`, base.body],
        [`${name}: not JSON`, "{nope"],
        [`${name}: a JSON array`, []],
        [`${name}: a JSON string`, '"hi"'],
      ];
      for (const field of FIELDS[name]!) {
        for (const bad of BAD_VALUES) {
          bodies.push([
            `${name}: ${field} = ${JSON.stringify(bad).slice(0, 30)}`,
            { ...base.body, [field]: bad },
          ]);
        }
      }
      for (const [what, body] of bodies) {
        const reply = await httpCall(stack.port, base.path, {
          method: "POST",
          headers: { authorization: `Bearer ${HOOK_TOKEN}` },
          body,
        });
        sent++;
        if (body === base.body) expect([what, reply.status]).toEqual([`${name}: the base`, 200]);
        const problem = problemWith(reply);
        if (problem !== undefined) problems.push(`${what}: ${problem}`);
      }
    }
    expect(problems).toEqual([]);
    expect(sent).toBeGreaterThan(300);
    // Still serving.
    const after = await httpCall(stack.port, "/hooks/wake", {
      method: "POST",
      headers: { authorization: `Bearer ${HOOK_TOKEN}` },
      body: { text: "still here" },
    });
    expect(after.json).toMatchObject({ ok: true });
  });
});
