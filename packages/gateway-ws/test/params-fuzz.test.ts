/**
 * Bad params for every method the gateway advertises, over a real socket: each request must
 * be answered with a typed protocol error (or succeed), never with a raw exception from a
 * handler, never left unanswered, and never with the connection or the gateway lost.
 *
 * The params come from OpenClaw's protocol schema: for each method, a valid example built
 * from its params definition (required fields only), then that example with one field at a
 * time replaced by a value of the wrong kind, and a few params that are not objects at all.
 * The cases are enumerated, not random, so a failure names the exact request.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { GatewayLogSink } from "../src/logs.js";
import { ErrorCodes } from "../src/protocol/constants.js";
import {
  closeClients,
  connectNode,
  RpcError,
  startStack,
  stopStacks,
  TestClient,
  TOKEN,
  useSchemaCheck,
  validatorOf,
} from "./support.js";

useSchemaCheck();
afterEach(async () => {
  await closeClients();
  await stopStacks();
});

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
interface JsonSchema {
  type?: string | string[];
  const?: Json;
  enum?: Json[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  required?: string[];
  properties?: Record<string, JsonSchema>;
  minimum?: number;
  minLength?: number;
  minItems?: number;
  items?: JsonSchema;
}

const schemaPath = fileURLToPath(
  new URL("../node_modules/@openclaw/gateway-protocol/protocol.schema.json", import.meta.url),
);
const protocol = JSON.parse(readFileSync(schemaPath, "utf8")) as {
  definitions: Record<string, JsonSchema>;
};

/** `sessions.list` → `SessionsListParams`; `system-presence` → `SystemPresenceParams`. */
/** Methods whose params definition is not named after the method. */
const DEFINITION_NAMES: Record<string, string> = { "agent.identity.get": "AgentIdentityParams" };

function definitionName(method: string): string {
  const known = DEFINITION_NAMES[method];
  if (known !== undefined) return known;
  const name = method
    .split(/[.-]/)
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("");
  return `${name}Params`;
}

function paramsDefinition(method: string): JsonSchema | undefined {
  return protocol.definitions[definitionName(method)];
}

function resolve(schema: JsonSchema): JsonSchema {
  let s = schema;
  for (let hops = 0; s.$ref !== undefined && hops < 10; hops++) {
    const name = s.$ref.split("/").pop()!;
    s = protocol.definitions[name] ?? {};
  }
  return s;
}

/** Plausible strings for fields whose name says what they hold. */
function stringFor(field: string): string {
  if (/sessionKey|^key$/i.test(field)) return "agent:main:fuzz";
  if (/agentId/i.test(field)) return "main";
  if (/url/i.test(field)) return "https://example.invalid/";
  return `fuzz-${field}`;
}

/** A value that satisfies `schema` (required fields only), good enough to pass the readers. */
function exampleOf(schema: JsonSchema, field: string, depth = 0): Json {
  const s = resolve(schema);
  if (s.const !== undefined) return s.const;
  if (s.enum !== undefined && s.enum.length > 0) return s.enum[0]!;
  const branches = s.anyOf ?? s.oneOf;
  if (branches !== undefined && branches.length > 0) {
    const nonNull = branches.find((b) => resolve(b).type !== "null") ?? branches[0]!;
    return exampleOf(nonNull, field, depth + 1);
  }
  if (s.allOf !== undefined && s.allOf.length > 0) return exampleOf(s.allOf[0]!, field, depth + 1);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  switch (type) {
    case "string":
      return stringFor(field).padEnd(s.minLength ?? 0, "x");
    case "integer":
    case "number":
      return Math.max(s.minimum ?? 1, 1);
    case "boolean":
      return false;
    case "array":
      return s.minItems !== undefined && s.minItems > 0 && s.items !== undefined
        ? [exampleOf(s.items, field, depth + 1)]
        : [];
    case "null":
      return null;
    default: {
      if (depth > 6) return {};
      const out: Record<string, Json> = {};
      for (const name of s.required ?? []) {
        out[name] = exampleOf(s.properties?.[name] ?? {}, name, depth + 1);
      }
      return out;
    }
  }
}

/** Values of the wrong kind, or at the edges of the right kind. */
const BAD_VALUES: Json[] = [
  "",
  " ",
  "x".repeat(20_000),
  "agent:../../../etc:passwd",
  "__proto__",
  "\u0000\ud800",
  -1,
  0,
  1.5,
  2 ** 53,
  -(2 ** 31),
  true,
  [],
  [null, 1, "a"],
  {},
  { __proto__: { polluted: true } } as unknown as Json,
  { constructor: { prototype: { polluted: true } } },
  { nested: { deeper: [{ x: 1 }] } },
];

/** Params that are not an object at all. */
const NOT_OBJECTS: Json[] = ["params", 7, true, [], [{ sessionKey: "agent:main:main" }]];

interface Case {
  method: string;
  params: Json;
  what: string;
  /** The field replaced, for the one-field cases. */
  field?: string;
}

/**
 * Fields kept in every case of a method that would otherwise wait for something that never
 * comes (a run that does not exist, an operator's decision): a short wait, or none.
 */
const PINNED: Record<string, Record<string, Json>> = {
  "agent.wait": { timeoutMs: 20 },
  "exec.approval.request": { twoPhase: true, timeoutMs: 60_000 },
  "exec.approval.waitDecision": {},
};

function casesFor(method: string): Case[] {
  const definition = paramsDefinition(method);
  const pinned = PINNED[method] ?? {};
  const base = {
    ...((definition === undefined ? {} : exampleOf(definition, "params")) as Record<string, Json>),
    ...pinned,
  };
  const fields = new Set([
    ...Object.keys(resolve(definition ?? {}).properties ?? {}),
    ...Object.keys(base),
  ]);
  const cases: Case[] = [{ method, params: base, what: "the example" }];
  for (const params of NOT_OBJECTS) {
    cases.push({ method, params, what: `params ${JSON.stringify(params)}` });
  }
  for (const field of fields) {
    for (const bad of BAD_VALUES) {
      // A pinned wait given a wrong value is refused; given another valid one it may wait.
      if (field in pinned && typeof bad === typeof pinned[field]) continue;
      cases.push({
        method,
        // JSON.parse keeps a "__proto__" key as an own property, as a client's frame would.
        params: JSON.parse(JSON.stringify({ ...base, [field]: bad })) as Json,
        what: `${field}: ${JSON.stringify(bad).slice(0, 40)}`,
        field,
      });
    }
    if (field in pinned) continue;
    const { [field]: _dropped, ...without } = base;
    cases.push({ method, params: without, what: `without ${field}` });
    // Inside a list or an object the schema gives: one bad element, one bad member.
    const schema = resolve(resolve(definition ?? {}).properties?.[field] ?? {});
    const inner: Array<[string, Json]> = [];
    if (schema.type === "array") {
      for (const bad of BAD_VALUES) inner.push([`[${JSON.stringify(bad).slice(0, 30)}]`, [bad]]);
    } else if (schema.type === "object" && schema.properties !== undefined) {
      const example = exampleOf(schema, field) as Record<string, Json>;
      for (const member of Object.keys(schema.properties)) {
        for (const bad of BAD_VALUES) {
          inner.push([
            `{ ${member}: ${JSON.stringify(bad).slice(0, 30)} }`,
            { ...example, [member]: bad },
          ]);
        }
      }
    }
    for (const [what, value] of inner) {
      cases.push({
        method,
        params: JSON.parse(JSON.stringify({ ...base, [field]: value })) as Json,
        what: `${field}: ${what}`,
        field,
      });
    }
  }
  return cases;
}

/** What is wrong with one answer, or `undefined` when it is a proper answer. */
function problemWith(outcome: { ok: true } | { ok: false; error: unknown }): string | undefined {
  if (outcome.ok) return undefined;
  const error = outcome.error;
  if (!(error instanceof RpcError)) return `not a protocol error: ${String(error)}`;
  if (!(Object.values(ErrorCodes) as string[]).includes(error.code)) {
    return `unknown error code ${error.code}`;
  }
  // A handler's own errors are typed (GatewayError or a BeamClawError, both with a
  // `details.code`); a bare UNAVAILABLE without one is an exception nobody meant to throw.
  const details = error.details as { code?: unknown } | undefined;
  if (error.code === ErrorCodes.UNAVAILABLE && typeof details?.code !== "string") {
    return `untyped failure: ${error.message}`;
  }
  return undefined;
}

async function answer(
  client: TestClient,
  c: Case,
  timeoutMs: number,
): Promise<{ ok: true } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.requestUnchecked(c.method, c.params), timeout]);
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/** `connect` is answered only once per connection (the handshake tests cover it). */
const SKIPPED = new Set(["connect"]);

/**
 * Read-only methods whose answer depends only on the store and the params: for these, a
 * field given a value the protocol schema refuses must be refused, or have no effect at all
 * (a field this gateway does not implement); it must never be used.
 */
const READS = [
  "models.list",
  "tools.catalog",
  "agents.list",
  "skills.status",
  "chat.history",
  "chat.message.get",
  "sessions.compaction.list",
  "cron.list",
  "cron.status",
  "cron.runs",
  "node.list",
  "sessions.list",
  "sessions.describe",
  "sessions.resolve",
  "sessions.search",
  "sessions.preview",
  "sessions.usage",
  "agent.identity.get",
  "tools.effective",
  "commands.list",
];

/** An answer without the fields that change from one call to the next (`ts`, the time of a report). */
function stable(payload: unknown): string {
  return JSON.stringify(payload, function (this: unknown, key, value) {
    if (key === "ts" || (key === "updatedAt" && this === payload)) return undefined;
    return value;
  });
}

async function connectBoth(url: string) {
  const operator = await TestClient.connect(url, { token: TOKEN });
  const node = await connectNode(url, { commands: ["system.run"] });
  return { operator, node };
}

describe("bad params for every method", () => {
  it("are answered with typed errors; the connection and the gateway stay up", async () => {
    const warnings: string[] = [];
    const logSink: GatewayLogSink = (line) => {
      if (/^\S+ (warn|error) /.test(line)) warnings.push(line);
    };
    const stack = await startStack({
      cron: true,
      gateway: { logSink, requestsPerSecond: 1_000_000 },
    });
    const { operator, node } = await connectBoth(stack.url);
    const methods = (operator.hello.features.methods as string[]).filter((m) => !SKIPPED.has(m));
    expect(methods.length).toBeGreaterThan(40);

    const problems: string[] = [];
    let answered = 0;
    for (const method of methods) {
      for (const c of casesFor(method)) {
        // Node methods are exercised as the node (an operator is refused before the handler).
        const client =
          method.startsWith("node.") && !method.startsWith("node.pair") ? node : operator;
        const outcome = await answer(client, c, 5_000);
        answered++;
        const problem = problemWith(outcome);
        if (problem !== undefined) problems.push(`${method} (${c.what}): ${problem}`);
      }
    }
    expect(problems, problems.join("\n")).toEqual([]);
    expect(answered).toBeGreaterThan(1_000);

    // Both connections are still open and still served; nothing was polluted.
    expect(operator.ws.readyState).toBe(operator.ws.OPEN);
    expect(node.ws.readyState).toBe(node.ws.OPEN);
    const health = await operator.request("health");
    expect(health.ok).toBe(true);
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    expect(warnings.filter((w) => / failed: /.test(w))).toEqual([]);
  }, 120_000);

  it("a read method refuses a field the schema refuses, or ignores it; it never uses it", async () => {
    const stack = await startStack({
      cron: true,
      responses: [{ text: "one" }, { text: "two" }],
      gateway: { requestsPerSecond: 1_000_000 },
    });
    const { operator } = await connectBoth(stack.url);
    // Something to list: two sessions with a turn each, a label, a cron job and its run.
    for (const [key, label] of [
      ["agent:main:fuzz", "first"],
      ["agent:main:other", "second"],
    ] as const) {
      await operator.request("sessions.create", { key, label });
      await operator.request("chat.send", { sessionKey: key, message: "hi", idempotencyKey: key });
      await operator.waitEvent("chat", (p) => p.sessionKey === key && p.state === "final");
    }
    const job = await operator.request("cron.add", {
      name: "fuzz job",
      schedule: { kind: "every", everyMs: 3_600_000 },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "tick" },
    });
    await operator.request("cron.add", {
      name: "disabled job",
      enabled: false,
      schedule: { kind: "every", everyMs: 3_600_000 },
      sessionTarget: "isolated",
      wakeMode: "now",
      payload: { kind: "agentTurn", message: "tock" },
    });
    expect(typeof job.id).toBe("string");

    const used: string[] = [];
    let compared = 0;
    for (const method of READS) {
      const validate = validatorOf(definitionName(method));
      for (const c of casesFor(method)) {
        if (c.field === undefined || validate(c.params)) continue;
        const withBad = await answer(operator, c, 5_000);
        if (!withBad.ok) continue; // refused: good
        const { [c.field]: _dropped, ...without } = c.params as Record<string, Json>;
        const [a, b] = await Promise.all([
          operator.requestUnchecked(method, c.params),
          operator.requestUnchecked(method, without),
        ]);
        compared++;
        if (stable(a) !== stable(b)) used.push(`${method} (${c.what}) was accepted and used`);
      }
    }
    expect(used, used.join("\n")).toEqual([]);
    expect(compared).toBeGreaterThan(100);
  }, 120_000);
});
