/**
 * The cap on a tool result's size: what `capToolOutput` keeps and how it marks the cut, that
 * the cut never breaks UTF-8 or JSON, and that a tool flooding its output puts only the capped
 * result into the transcript and into the model's next request.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import type { JsonValue, ModelMessage, ModelRequest } from "../src/providers/types.js";
import { AgentRuntime, type ModelSource } from "../src/sessions/index.js";
import { MemoryStore } from "../src/store/memory-store.js";
import {
  capToolOutput,
  checkMaxOutputBytes,
  DEFAULT_TOOL_MAX_OUTPUT_BYTES,
  SupervisedToolRunner,
  ToolRegistry,
  truncationMarker,
  utf8Prefix,
} from "../src/tools/index.js";

const bytes = (text: string) => Buffer.byteLength(text, "utf8");
/** Round-trips through UTF-8: equal to the input only if it was well-formed. */
const roundTrip = (text: string) => Buffer.from(text, "utf8").toString("utf8");
const MARKER = /\n\[tool output truncated: (\d+) of (\d+) bytes dropped\]$/;

function split(capped: string): { head: string; dropped: number; total: number } {
  const match = MARKER.exec(capped);
  if (match === null) throw new Error(`no truncation marker at the end of ${capped.slice(-80)}`);
  return {
    head: capped.slice(0, match.index),
    dropped: Number(match[1]),
    total: Number(match[2]),
  };
}

describe("capToolOutput", () => {
  it("returns a result within the cap unchanged, strings and JSON alike", () => {
    const exact = "a".repeat(2048);
    expect(capToolOutput(exact, 2048)).toBe(exact);
    const value = { rows: [1, 2, 3], ok: true };
    expect(capToolOutput(value, 1024)).toBe(value);
    expect(capToolOutput(null, 1024)).toBeNull();
    expect(capToolOutput("x".repeat(10_000_000), Number.POSITIVE_INFINITY)).toHaveLength(
      10_000_000,
    );
  });

  it("cuts a long string to the cap and says exactly how many bytes were dropped", () => {
    const text = "0123456789".repeat(20_000); // 200,000 bytes
    const capped = capToolOutput(text, 65_536) as string;
    expect(typeof capped).toBe("string");
    expect(bytes(capped)).toBeLessThanOrEqual(65_536);
    const { head, dropped, total } = split(capped);
    expect(text.startsWith(head)).toBe(true);
    expect(head.length).toBeGreaterThan(60_000);
    expect(total).toBe(200_000);
    expect(dropped).toBe(200_000 - bytes(head));
    expect(capped.endsWith(truncationMarker(dropped, total))).toBe(true);
  });

  it("measures bytes of UTF-8, not characters, and never cuts a character in two", () => {
    // 3-byte characters: 30,000 of them are 90,000 bytes, over a 65,536-byte cap.
    const cjk = "中".repeat(30_000);
    const capped = capToolOutput(cjk, 65_536) as string;
    const { head, dropped, total } = split(capped);
    expect(total).toBe(90_000);
    expect(roundTrip(head)).toBe(head);
    expect(cjk.startsWith(head)).toBe(true);
    expect(dropped).toBe(90_000 - bytes(head));
    expect(bytes(capped)).toBeLessThanOrEqual(65_536);

    // Surrogate pairs (4 bytes): the cut never leaves half of one.
    const emoji = "😀".repeat(20_000);
    const cut = split(capToolOutput(emoji, 4096) as string).head;
    expect(roundTrip(cut)).toBe(cut);
    expect(cut.length % 2).toBe(0);
    expect(emoji.startsWith(cut)).toBe(true);
  });

  it("turns a JSON result over the cap into a string: the start of its JSON text and the marker", () => {
    const rows = Array.from({ length: 5_000 }, (_, i) => ({ id: i, name: `row ${i}`, ok: true }));
    const json = JSON.stringify(rows);
    const capped = capToolOutput(rows, 4096);
    expect(typeof capped).toBe("string");
    const { head, total } = split(capped as string);
    expect(json.startsWith(head)).toBe(true);
    expect(total).toBe(bytes(json));
    // Still a JSON value: it survives the transcript's serialization unchanged.
    expect(JSON.parse(JSON.stringify({ output: capped }))).toEqual({ output: capped });
  });

  it("keeps any string within the cap as well-formed UTF-8 and a prefix of the original (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme", minLength: 0, maxLength: 3_000 }),
        fc.integer({ min: 1024, max: 8192 }),
        (text, cap) => {
          const out = capToolOutput(text, cap) as string;
          expect(bytes(out)).toBeLessThanOrEqual(Math.max(cap, bytes(text)));
          if (bytes(text) <= cap) {
            expect(out).toBe(text);
            return;
          }
          const { head, dropped, total } = split(out);
          expect(bytes(out)).toBeLessThanOrEqual(cap);
          expect(roundTrip(head)).toBe(head);
          expect(text.startsWith(head)).toBe(true);
          expect(dropped + bytes(head)).toBe(total);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("utf8Prefix: the longest prefix within the byte budget", () => {
    expect(utf8Prefix("aé中😀", 1)).toBe("a");
    expect(utf8Prefix("aé中😀", 2)).toBe("a");
    expect(utf8Prefix("aé中😀", 3)).toBe("aé");
    expect(utf8Prefix("aé中😀", 5)).toBe("aé");
    expect(utf8Prefix("aé中😀", 6)).toBe("aé中");
    expect(utf8Prefix("aé中😀", 9)).toBe("aé中");
    expect(utf8Prefix("aé中😀", 10)).toBe("aé中😀");
    expect(utf8Prefix("abc", 0)).toBe("");
  });

  it("refuses a cap too small for the marker, or not a whole number", () => {
    for (const bad of [0, 100, 1023, 2048.5, Number.NaN, -1, "65536", undefined]) {
      expect(() => checkMaxOutputBytes(bad), String(bad)).toThrow(InvalidArgumentError);
    }
    expect(checkMaxOutputBytes(1024)).toBe(1024);
    expect(checkMaxOutputBytes(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(
      () =>
        new SupervisedToolRunner({
          registry: new ToolRegistry(),
          maxOutputBytes: 10,
          resolveAgent: (id) => ({ id, model: "m/m", tools: ["*"] }),
        }),
    ).toThrow(InvalidArgumentError);
  });
});

// ------------------------------------------------------------------ through the runtime

const KEY = "agent:main:main";
const FLOOD_BYTES = 5 * 1024 * 1024;

/** Calls `flood` once, then answers "done"; records each request's tool results. */
class FloodingModel implements ModelSource {
  readonly toolOutputs: JsonValue[][] = [];
  async *stream(request: Omit<ModelRequest, "model">) {
    const results = request.messages
      .filter((m): m is Extract<ModelMessage, { role: "tool" }> => m.role === "tool")
      .flatMap((m) => m.content.map((part) => part.output));
    this.toolOutputs.push(results);
    if (results.length === 0) {
      yield { type: "tool-call" as const, toolCallId: "c1", toolName: "flood", input: {} };
    } else {
      yield { type: "text-delta" as const, text: "done" };
    }
  }
}

const runtimes: AgentRuntime[] = [];
const stores: MemoryStore[] = [];
afterEach(async () => {
  for (const runtime of runtimes.splice(0)) await runtime.stop();
  for (const store of stores.splice(0)) await store.close();
});

async function floodTurn(
  options: { toolMaxOutputBytes?: number; failing?: boolean; output?: () => JsonValue } = {},
) {
  const store = new MemoryStore();
  await store.open();
  stores.push(store);
  const model = new FloodingModel();
  const runtime = new AgentRuntime({
    store,
    models: model,
    agents: [{ id: "main", model: "test/m", tools: ["*"] }],
    tools: [
      {
        name: "flood",
        description: "prints far too much",
        inputSchema: { type: "object" },
        execute: () => {
          if (options.output !== undefined) return options.output();
          const text = `${"é".repeat(FLOOD_BYTES / 2 - 1)}!!`;
          if (options.failing) throw new Error(text);
          return text;
        },
      },
    ],
    ...(options.toolMaxOutputBytes === undefined
      ? {}
      : { toolMaxOutputBytes: options.toolMaxOutputBytes }),
  });
  runtimes.push(runtime);
  await runtime.start();
  const session = runtime.session(KEY);
  const run = await session.send("flood it");
  const result = await run.result;
  const stored = (await session.history())
    .map((r) => r.entry.message as unknown as ModelMessage)
    .filter((m) => m.role === "tool")
    .flatMap((m) => (m.role === "tool" ? m.content.map((p) => p.output) : []));
  return { result, model, stored, runtime };
}

describe("a tool flooding its output", () => {
  it("puts at most the default 64 KiB into the transcript and the model's next request, marked as cut", async () => {
    const { result, model, stored } = await floodTurn();
    expect(result.status).toBe("completed");
    expect(stored).toHaveLength(1);
    const output = stored[0] as string;
    expect(bytes(output)).toBeLessThanOrEqual(DEFAULT_TOOL_MAX_OUTPUT_BYTES);
    const { head, dropped, total } = split(output);
    expect(total).toBe(FLOOD_BYTES);
    expect(dropped).toBe(FLOOD_BYTES - bytes(head));
    expect(head).toMatch(/^é+$/);
    // The model saw exactly what was stored.
    expect(model.toolOutputs.at(-1)).toEqual([output]);
  });

  it("caps a failing tool's huge error message the same way", async () => {
    const { stored } = await floodTurn({ failing: true });
    const output = stored[0] as string;
    expect(bytes(output)).toBeLessThanOrEqual(DEFAULT_TOOL_MAX_OUTPUT_BYTES);
    expect(output).toMatch(/^tool "flood" failed: /);
    expect(output).toMatch(MARKER);
  });

  it("follows a configured cap, and a changed one applies to the next call (hot reload)", async () => {
    const { stored, runtime } = await floodTurn({ toolMaxOutputBytes: 4096 });
    expect(bytes(stored[0] as string)).toBeLessThanOrEqual(4096);
    expect(bytes(stored[0] as string)).toBeGreaterThan(3000);

    runtime.reconfigure({ toolMaxOutputBytes: 200_000 });
    const run = await runtime.session("agent:main:other").send("again");
    await run.result;
    const again = (await runtime.session("agent:main:other").history())
      .map((r) => r.entry.message as unknown as ModelMessage)
      .flatMap((m) => (m.role === "tool" ? m.content.map((p) => p.output) : []));
    expect(bytes(again[0] as string)).toBeGreaterThan(150_000);
    expect(bytes(again[0] as string)).toBeLessThanOrEqual(200_000);
    expect(() => runtime.reconfigure({ toolMaxOutputBytes: 12 })).toThrow(InvalidArgumentError);
  });

  it("turns a result nested deeper than a store keeps into its JSON text: the run completes", async () => {
    // 600 levels fit in about 1.2 KB, well within the size cap, and deeper than any store
    // takes (MAX_STORED_JSON_DEPTH): saved as it is, the turn's save failed and was retried.
    let deep: JsonValue = "bottom";
    for (let i = 0; i < 600; i++) deep = i % 2 === 0 ? [deep] : { next: deep };
    const { result, model, stored } = await floodTurn({ output: () => deep });
    expect(result.status).toBe("completed");
    expect(stored).toEqual([JSON.stringify(deep)]);
    expect(model.toolOutputs.at(-1)).toEqual([JSON.stringify(deep)]);
    // A result of ordinary depth stays a value.
    const shallow = { a: [{ b: [1, 2, { c: "d" }] }] };
    expect((await floodTurn({ output: () => shallow })).stored).toEqual([shallow]);
  });
});
