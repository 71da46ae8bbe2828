import { InvalidArgumentError, ProcessNotFoundError } from "../../errors.js";
import type { JsonObject, JsonValue } from "../../providers/types.js";
import { optionalNumber } from "../../runtime/validate.js";
import type { AgentTool } from "../../sessions/tools.js";
import type { ToolContext } from "../../sessions/types.js";
import { DEFAULT_TOOL_TEXT_BYTES, fitJsonText } from "../output-cap.js";
import type { BackgroundProcessRegistry, ProcessSnapshot } from "./background.js";

/** Options of {@link createProcessTool}. */
export interface ProcessToolOptions {
  /** Tool name. Default `process`. */
  name?: string;
  /**
   * Whose processes a call may see: `session` (started in the same session, the default) or
   * `all`.
   */
  scope?: "session" | "all";
  /** Largest `data` accepted by `write`, in characters. Default 1 MiB. */
  maxWriteChars?: number;
  /**
   * How long a `write` may wait for its approval, in ms; the tool's own time limit is this
   * plus 30 s. Set it to the exec tool's `approvalTimeoutMs`. Default 120 000 (exec's
   * default); `Infinity` waits as long as it takes.
   */
  approvalTimeoutMs?: number;
  /**
   * The most bytes of output a `poll` or `log` returns, measured as serialized (UTF-8 JSON
   * text, escapes counted). Default 61 440 (60 KiB), so that a result fits the tool runner's
   * default cap on a result (64 KiB), which would otherwise cut the result's JSON text (and
   * a cut poll's output could never be polled again). A `poll` returns the start of the new
   * output and `more: true`, the next poll the rest; a `log` the end and `truncated: true`.
   * Keep it below the runner's `maxOutputBytes` when that is changed; `Infinity` for no limit.
   */
  maxOutputBytes?: number;
}

const ACTIONS = ["poll", "log", "write", "kill", "list", "remove"] as const;
type Action = (typeof ACTIONS)[number];
const KEYS = new Set(["action", "slug", "lines", "bytes", "stream", "data", "eof"]);

/**
 * The `process` tool: lets the model drive commands the exec tool moved to the background.
 * Actions: `list`; `poll` (state and new output since the last poll); `log` (the last
 * `lines` lines or `bytes` bytes); `write` (`data` to stdin, `eof` to close it); `kill`
 * (SIGTERM to the whole process tree, SIGKILL after the grace period); `remove` (kill if
 * needed and forget). By default a session only sees the processes it started.
 *
 * A `write` is approved like a command: for a command that needed an approval, the exec tool
 * asks again for every write, showing the process, the command approved before and the exact
 * data (see `ExecToolOptions.approveWrite`), and nothing is written on a denial or timeout.
 * Approving `sh` or `python3 -i` never approves what is typed into it. Writes to allowlisted
 * commands, closing stdin without data, and writes under a gate in mode `off` are not asked.
 *
 * @example
 * ```ts
 * const tools = [createExecTool({ registry, hosts, approve }), createProcessTool(registry)];
 * // the model: { "action": "log", "slug": "npm-3", "lines": 50 }
 * ```
 */
export function createProcessTool(
  registry: BackgroundProcessRegistry,
  options: ProcessToolOptions = {},
): AgentTool {
  const scope = options.scope ?? "session";
  const maxWrite = options.maxWriteChars ?? 1 << 20;
  optionalNumber(options.maxOutputBytes, "createProcessTool: maxOutputBytes", {
    min: "positive",
    integer: true,
    infinity: true,
  });
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_TOOL_TEXT_BYTES;
  optionalNumber(options.approvalTimeoutMs, "createProcessTool: approvalTimeoutMs", {
    min: "positive",
    infinity: true,
  });
  const approvalTimeoutMs = options.approvalTimeoutMs ?? 120_000;
  const owned = (slug: string, context: ToolContext): ProcessSnapshot => {
    const state = registry.get(slug);
    if (scope === "session" && state.owner !== context.sessionKey)
      throw new ProcessNotFoundError(slug);
    return state;
  };
  return {
    name: options.name ?? "process",
    description:
      "Manage commands that exec moved to the background: list, poll (new output), log " +
      "(tail), write (stdin; the input needs its own approval), kill, remove.",
    inputSchema: {
      type: "object",
      properties: {
        action: { type: "string", enum: [...ACTIONS] },
        slug: { type: "string", description: "The process slug exec returned." },
        lines: { type: "number", description: "log: last N lines." },
        bytes: { type: "number", description: "log: last N bytes." },
        stream: {
          type: "string",
          enum: ["stdout", "stderr"],
          description: "log: one stream only.",
        },
        data: { type: "string", description: "write: text for stdin." },
        eof: { type: "boolean", description: "write: close stdin afterwards." },
      },
      required: ["action"],
      additionalProperties: false,
    },
    timeoutMs: approvalTimeoutMs + 30_000,
    async execute(raw: JsonValue, context: ToolContext): Promise<JsonValue> {
      const input = parse(raw, maxWrite);
      if (input.action === "list") {
        const all = registry.list(scope === "session" ? { owner: context.sessionKey } : {});
        return { processes: all.map(toJson) };
      }
      const slug = input.slug!;
      owned(slug, context);
      switch (input.action) {
        case "poll": {
          const polled = registry.poll(slug, { maxJsonBytes: maxOutputBytes });
          return {
            process: toJson(polled.process),
            output: polled.output,
            skippedBytes: polled.skippedBytes,
            more: polled.more,
          };
        }
        case "log": {
          const lines = input.lines ?? (input.bytes === undefined ? 100 : undefined);
          const log = registry.log(slug, { lines, bytes: input.bytes, stream: input.stream });
          const output = fitJsonText(log, maxOutputBytes, "tail");
          return output === log ? { slug, output } : { slug, output, truncated: true };
        }
        case "write": {
          const data = input.data ?? "";
          const eof = input.eof === true;
          const gate = registry.writeGate(slug);
          // Only input is asked about: closing stdin (`eof` alone) feeds the command nothing.
          if (gate !== undefined && data !== "") {
            if (!registry.get(slug).stdinOpen) {
              throw new InvalidArgumentError(`the stdin of process ${slug} is closed`);
            }
            await gate({ slug, data, eof }, context);
          }
          await registry.write(slug, data, { eof });
          return { slug, written: data.length, eof };
        }
        case "kill":
          return { process: toJson(await registry.killProcess(slug)) };
        case "remove":
          return { slug, removed: await registry.remove(slug) };
      }
    },
  };
}

interface ProcessToolInput {
  action: Action;
  slug?: string;
  lines?: number;
  bytes?: number;
  stream?: "stdout" | "stderr";
  data?: string;
  eof?: boolean;
}

function parse(raw: JsonValue, maxWrite: number): ProcessToolInput {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InvalidArgumentError("process input must be an object with an action");
  }
  for (const key of Object.keys(raw)) {
    if (!KEYS.has(key)) throw new InvalidArgumentError(`process does not take "${key}"`);
  }
  const input = raw as Record<string, JsonValue>;
  if (typeof input.action !== "string" || !ACTIONS.includes(input.action as Action)) {
    throw new InvalidArgumentError(`action must be one of ${ACTIONS.join(", ")}`);
  }
  const out: ProcessToolInput = { action: input.action as Action };
  if (out.action !== "list") {
    if (typeof input.slug !== "string" || input.slug === "") {
      throw new InvalidArgumentError(`${out.action} needs a slug`);
    }
    out.slug = input.slug;
  }
  for (const key of ["lines", "bytes"] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new InvalidArgumentError(`${key} must be a non-negative integer`);
    }
    out[key] = v;
  }
  if (input.stream !== undefined) {
    if (input.stream !== "stdout" && input.stream !== "stderr") {
      throw new InvalidArgumentError("stream must be stdout or stderr");
    }
    out.stream = input.stream;
  }
  if (input.data !== undefined) {
    if (typeof input.data !== "string") throw new InvalidArgumentError("data must be a string");
    if (input.data.length > maxWrite) {
      throw new InvalidArgumentError(`data is longer than ${maxWrite} characters`);
    }
    out.data = input.data;
  }
  if (input.eof !== undefined) {
    if (typeof input.eof !== "boolean") throw new InvalidArgumentError("eof must be a boolean");
    out.eof = input.eof;
  }
  return out;
}

function toJson(state: ProcessSnapshot): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(state)) {
    if (key !== "owner" && value !== undefined) out[key] = value as JsonValue;
  }
  return out;
}
