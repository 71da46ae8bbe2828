import { createHash } from "node:crypto";
import { AbortedError, ExecRefusedError, InvalidArgumentError } from "../../errors.js";
import type { JsonObject, JsonValue } from "../../providers/types.js";
import { withLazySignal } from "../../runtime/lazy-abort.js";
import { optionalNumber } from "../../runtime/validate.js";
import type { AgentTool } from "../../sessions/tools.js";
import type { ToolContext } from "../../sessions/types.js";
import { storeFailed } from "../approval.js";
import { DEFAULT_TOOL_TEXT_BYTES, fitJsonText, jsonTextBytes } from "../output-cap.js";
import type { ExecAllowlist } from "./allowlist.js";
import type {
  BackgroundProcessRegistry,
  ProcessSnapshot,
  ProcessWrite,
  ProcessWriteGate,
} from "./background.js";
import { DEFAULT_EXEC_TIMEOUT_MS } from "./background.js";
import { bindCommand, describeBinding } from "./binding.js";
import type { ExecBinding } from "./binding-types.js";
import type { ExecHost, ExecHostKind } from "./host.js";

/** What an approver answers. `allow-always` remembers this exact binding (its `key`). */
export type ExecApprovalDecision = "allow-once" | "allow-always" | "deny";

/**
 * Asks whether a binding may run. Called for every command the allowlist does not cover and
 * that was not approved with `allow-always` before. The approval gate implements it
 * ({@link approveWithGate}), with a `write` that asks about input too.
 */
export type ExecApprover = ((
  binding: ExecBinding,
  context: ToolContext,
) => ExecApprovalDecision | Promise<ExecApprovalDecision>) & {
  /**
   * Asks about a `write` to a command this approver let run; used unless the exec tool is
   * given `approveWrite`. See {@link ExecToolOptions.approveWrite}.
   */
  readonly write?: ExecWriteApprover;
};

/**
 * A `write` of the `process` tool to the standard input of a command the exec tool started
 * after an approval: what the person is asked about. Input to a shell or an interpreter
 * (`sh`, `python3 -i`, `node`) is code, so approving the command never approves its input.
 */
export interface ExecWriteRequest {
  /** The process the input goes to. */
  slug: string;
  /** The command as it was approved. */
  binding: ExecBinding;
  /** Exactly what is written. */
  data: string;
  /** Whether standard input is closed afterwards. */
  eof: boolean;
  /**
   * SHA-256 (hex) of the command's binding key, `data` and `eof`: what an `allow-always` of
   * this write binds to — this exact input to this exact command, nothing else.
   */
  key: string;
}

/** Asks whether a {@link ExecWriteRequest} may be written. */
export type ExecWriteApprover = (
  request: ExecWriteRequest,
  context: ToolContext,
) => ExecApprovalDecision | Promise<ExecApprovalDecision>;

/**
 * The text a person sees for a write: the process, the command approved before (as
 * {@link describeBinding} shows it) and the exact data, JSON-quoted so that newlines and
 * control characters show.
 *
 * @example
 * ```ts
 * describeWrite(request);
 * // write to the standard input of process python3-4
 * // command approved before: python3 -i
 * //   host gateway, cwd /srv/work
 * //   /usr/bin/python3 -i
 * // data (22 characters): "import os; os.system()\n"
 * ```
 */
export function describeWrite(request: ExecWriteRequest): string {
  return [
    `write to the standard input of process ${request.slug}${request.eof ? ", then close it" : ""}`,
    `command approved before: ${request.binding.command}`,
    ...describeBinding(request.binding)
      .split("\n")
      .map((line) => `  ${line}`),
    `data (${request.data.length} characters): ${JSON.stringify(request.data)}`,
  ].join("\n");
}

/** The key an approval of a write binds to. See {@link ExecWriteRequest.key}. */
function writeKey(binding: ExecBinding, data: string, eof: boolean): string {
  return createHash("sha256")
    .update(JSON.stringify({ v: 1, write: binding.key, data, eof }))
    .digest("hex");
}

/**
 * Where `allow-always` decisions are kept. A memory that throws never costs a command: one
 * whose `has` fails is asked about, and an `allow-always` that `remember` cannot keep still
 * runs (the next run of it asks again); either failure is published as
 * `beamclaw:approval.store-error` telemetry and a `BeamClawWarning` process warning.
 */
export interface ExecApprovalMemory {
  has(binding: ExecBinding, context: ToolContext): boolean | Promise<boolean>;
  remember(binding: ExecBinding, context: ToolContext): void | Promise<void>;
  /**
   * Whether this exact write (its `key`) was approved with `allow-always`. A memory without
   * `hasWrite` and `rememberWrite` treats an `allow-always` of a write as `allow-once`.
   */
  hasWrite?(request: ExecWriteRequest, context: ToolContext): boolean | Promise<boolean>;
  rememberWrite?(request: ExecWriteRequest, context: ToolContext): void | Promise<void>;
}

/**
 * Remembers `allow-always` per agent and exact binding key, in memory.
 *
 * @example
 * ```ts
 * const approvals = new InMemoryExecApprovals();
 * createExecTool({ registry, hosts, approve, approvals });
 * ```
 */
export class InMemoryExecApprovals implements ExecApprovalMemory {
  readonly #keys = new Set<string>();

  has(binding: ExecBinding, context: ToolContext): boolean {
    return this.#keys.has(`${context.agentId}\u0000${binding.key}`);
  }

  remember(binding: ExecBinding, context: ToolContext): void {
    this.#keys.add(`${context.agentId}\u0000${binding.key}`);
  }

  hasWrite(request: ExecWriteRequest, context: ToolContext): boolean {
    return this.#keys.has(`${context.agentId}\u0000write\u0000${request.key}`);
  }

  rememberWrite(request: ExecWriteRequest, context: ToolContext): void {
    this.#keys.add(`${context.agentId}\u0000write\u0000${request.key}`);
  }

  /** Forgets every decision. */
  clear(): void {
    this.#keys.clear();
  }
}

/** Options of {@link createExecTool}. */
export interface ExecToolOptions {
  /** Owns every process the tool starts. */
  registry: BackgroundProcessRegistry;
  /** The hosts the model may choose from. */
  hosts: Partial<Record<ExecHostKind, ExecHost>>;
  /** The host used when the model names none. Default `sandbox` if configured, else `gateway`. */
  defaultHost?: ExecHostKind;
  /** Asks a person (or policy). Without one, only allowlisted or remembered commands run. */
  approve?: ExecApprover;
  /**
   * Asks about each `write` the `process` tool makes to a command that needed an approval (a
   * remembered `allow-always` or `approve`): approving a command never approves what is
   * typed into it afterwards (`sh`, `python3 -i`). Default: `approve.write`
   * ({@link approveWithGate} has one, so an `ApprovalGate` is asked with the process, the
   * approved command and the exact data; in mode `off` it allows everything, as before). Without
   * either, such writes are refused with `ExecRefusedError` (`denied`), unless remembered.
   *
   * An `allow-always` of a write covers that exact data (and `eof`) written to that exact
   * command binding, in any of its processes, and nothing else. Input to an interpreter means
   * what the state it is in makes it mean, so `allow-always` of input to a REPL is rarely
   * what a careful person wants; a gate in mode `always` asks every time.
   *
   * Writes to a command the allowlist let run are not asked about: the allowlist is the
   * operator's standing trust in that command (with `tools.approvals.mode: off` it is the only
   * one), whatever it is fed. So do not allowlist programs that run their input as code;
   * shells reading standard input are marked dynamic and cannot be allowlisted anyway.
   * Processes started through the registry directly (not by this tool) are not gated.
   */
  approveWrite?: ExecWriteApprover;
  /** Commands that run without asking. */
  allowlist?: ExecAllowlist;
  /** Where `allow-always` is remembered. Default an {@link InMemoryExecApprovals}. */
  approvals?: ExecApprovalMemory;
  /**
   * How long to wait for `approve`; then the command is refused. Default 120 000; `Infinity`
   * waits as long as it takes.
   */
  approvalTimeoutMs?: number;
  /** Handed to the background after this long. Default: the registry's `yieldAfterMs` (10 s). */
  yieldAfterMs?: number;
  /** Overall time limit of a command. Default 30 min. */
  timeoutMs?: number;
  /** The most a call may ask for with `timeoutMs`. Default 2 h. */
  maxTimeoutMs?: number;
  /** Characters of stdout and of stderr in a result (the end is kept). Default 50 000. */
  maxOutputChars?: number;
  /**
   * Bytes of stdout and stderr together in a result, measured as they are serialized (UTF-8
   * JSON text); the end of each is kept, and neither gets less than half unless the other
   * needs less. Default {@link DEFAULT_EXEC_MAX_OUTPUT_BYTES} (60 KiB), so that a result fits
   * the tool runner's default cap on a result (64 KiB), which would otherwise cut the
   * result's JSON text from its end (stderr first). Keep it below the runner's
   * `maxOutputBytes` when that is changed; `Infinity` for no byte limit.
   */
  maxOutputBytes?: number;
  /** Longest accepted command. Default 65 536. */
  maxCommandLength?: number;
  /** Tool name. Default `exec`. */
  name?: string;
}

/** The input the model sends. */
export interface ExecToolInput {
  command: string;
  cwd?: string;
  env?: Record<string, string>;
  host?: ExecHostKind;
  timeoutMs?: number;
  background?: boolean;
  stdin?: string;
}

/**
 * The default byte limit on stdout and stderr together in an exec result: the runner's
 * default cap on a result (64 KiB) less room for the rest of the result.
 */
export const DEFAULT_EXEC_MAX_OUTPUT_BYTES: number = DEFAULT_TOOL_TEXT_BYTES;

const INPUT_KEYS = new Set(["command", "cwd", "env", "host", "timeoutMs", "background", "stdin"]);
const HOST_KINDS: readonly ExecHostKind[] = ["gateway", "sandbox", "node"];

/**
 * The `exec` tool: runs a shell command after binding it ({@link bindCommand}) and getting
 * it approved — by the allowlist, by an earlier `allow-always` of the exact same binding, or
 * by `approve`. The binding covers the call's `env` values and its `stdin` too: the approver
 * sees them, and an `allow-always` covers only the same ones. A host that cannot run anything
 * now (bubblewrap missing, a node not connected) fails the call before anyone is asked. A
 * denial, an approval timeout, a refused construct or a blocked environment variable is an
 * error result; nothing runs.
 *
 * Returns `{ status: "exited", exitCode, signal, stdout, stderr, truncated, durationMs,
 * timedOut }`, or, for a command still running after `yieldAfterMs` (or asked to run in the
 * `background`), `{ status: "running", backgrounded: true, slug, ... }` — the model then
 * uses the `process` tool with that slug.
 *
 * @example
 * ```ts
 * const registry = await new BackgroundProcessRegistry().start();
 * const exec = createExecTool({
 *   registry,
 *   hosts: { gateway: new GatewayHost({ roots: ["/srv/work"] }) },
 *   allowlist: new ExecAllowlist([{ executable: "git", argv: ["status", "**"] }]),
 *   approve: (binding) => askHuman(describeBinding(binding)),
 * });
 * const runner = new BasicToolRunner({ tools: [exec, createProcessTool(registry)] });
 * ```
 */
export function createExecTool(options: ExecToolOptions): AgentTool {
  const registry = options.registry;
  const approvals = options.approvals ?? new InMemoryExecApprovals();
  optionalNumber(options.approvalTimeoutMs, "createExecTool: approvalTimeoutMs", {
    min: "positive",
    infinity: true,
  });
  const approvalTimeoutMs = options.approvalTimeoutMs ?? 120_000;
  const yieldAfterMs = options.yieldAfterMs ?? registry.yieldAfterMs;
  const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  const maxTimeoutMs = options.maxTimeoutMs ?? 2 * 60 * 60_000;
  const maxOutputChars = options.maxOutputChars ?? 50_000;
  optionalNumber(options.maxOutputBytes, "createExecTool: maxOutputBytes", {
    min: "positive",
    integer: true,
    infinity: true,
  });
  const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_EXEC_MAX_OUTPUT_BYTES;
  const available = HOST_KINDS.filter((k) => options.hosts[k] !== undefined);
  if (available.length === 0)
    throw new InvalidArgumentError("createExecTool needs at least one host");
  const defaultHost =
    options.defaultHost ?? (options.hosts.sandbox !== undefined ? "sandbox" : available[0]!);
  if (options.hosts[defaultHost] === undefined) {
    throw new InvalidArgumentError(`the default host "${defaultHost}" is not configured`);
  }

  const inputSchema: JsonObject = {
    type: "object",
    properties: {
      command: { type: "string", description: "A POSIX sh command line." },
      cwd: { type: "string", description: "Working directory, relative to the host's root." },
      env: {
        type: "object",
        additionalProperties: { type: "string" },
        description:
          "Extra environment variables (PATH, LD_*, NODE_OPTIONS and similar are refused).",
      },
      host: { type: "string", enum: [...available] },
      timeoutMs: { type: "number", description: `Overall time limit; default ${timeoutMs}.` },
      background: { type: "boolean", description: "Return at once with a process slug." },
      stdin: { type: "string", description: "Written to standard input, which is then closed." },
    },
    required: ["command"],
    additionalProperties: false,
  };

  const name = options.name ?? "exec";

  /**
   * Asks `approver` within `approvalTimeoutMs`; its signal also aborts at the deadline, so
   * that what it asked (a gate's pending request) is withdrawn rather than left open to an
   * answer nothing acts on.
   */
  const ask = <T>(
    approver: (
      request: T,
      context: ToolContext,
    ) => ExecApprovalDecision | Promise<ExecApprovalDecision>,
    request: T,
    context: ToolContext,
    command: string,
  ): Promise<ExecApprovalDecision> => {
    const deadline = new AbortController();
    const asking = withLazySignal(context, {
      signal: AbortSignal.any([context.signal, deadline.signal]),
    });
    return withDeadline(
      Promise.resolve().then(() => approver(request, asking)),
      approvalTimeoutMs,
      context.signal,
      () => {
        const refused = new ExecRefusedError(
          "approval-timeout",
          `no approval within ${approvalTimeoutMs} ms`,
          command,
        );
        deadline.abort(refused);
        return refused;
      },
    );
  };

  /** Resolves how the binding may run (`allowlist` or `asked`), or throws. */
  const decide = async (
    binding: ExecBinding,
    context: ToolContext,
  ): Promise<"allowlist" | "asked"> => {
    if (options.allowlist?.allows(binding)) return "allowlist";
    const subject = () => ({
      sessionKey: context.sessionKey,
      runId: context.runId,
      toolName: name,
      key: binding.key,
    });
    try {
      if (await approvals.has(binding, context)) return "asked";
    } catch (error) {
      // What cannot be read is asked again: the person decides, and the call goes on.
      storeFailed(subject(), "list", error);
    }
    if (options.approve === undefined) {
      throw new ExecRefusedError(
        "denied",
        "this command needs approval and no approver is configured",
        binding.command,
      );
    }
    const decision = await ask(options.approve, binding, context, binding.command);
    if (decision === "allow-always") {
      try {
        await approvals.remember(binding, context);
      } catch (error) {
        // The answer holds for this command; only its memory is lost (the next run asks again).
        storeFailed(subject(), "put", error);
      }
      return "asked";
    }
    if (decision === "allow-once") return "asked";
    throw new ExecRefusedError("denied", "the command was not approved", binding.command);
  };

  /** The gate on `write`s to a process started after an approval. */
  const gateWrites =
    (binding: ExecBinding): ProcessWriteGate =>
    async (write: ProcessWrite, context: ToolContext) => {
      const request: ExecWriteRequest = {
        slug: write.slug,
        binding,
        data: write.data,
        eof: write.eof,
        key: writeKey(binding, write.data, write.eof),
      };
      const subject = () => ({
        sessionKey: context.sessionKey,
        runId: context.runId,
        toolName: `${name}:write`,
        key: request.key,
      });
      try {
        if (await approvals.hasWrite?.(request, context)) return;
      } catch (error) {
        storeFailed(subject(), "list", error);
      }
      const approver = options.approveWrite ?? options.approve?.write;
      if (approver === undefined) {
        throw new ExecRefusedError(
          "denied",
          `writing to process ${write.slug} needs approval (its command did) and no write approver is configured; nothing was written`,
          binding.command,
        );
      }
      const decision = await ask(approver, request, context, binding.command);
      if (decision === "allow-always") {
        try {
          await approvals.rememberWrite?.(request, context);
        } catch (error) {
          storeFailed(subject(), "put", error);
        }
        return;
      }
      if (decision === "allow-once") return;
      throw new ExecRefusedError(
        "denied",
        `the write to process ${write.slug} was not approved; nothing was written`,
        binding.command,
      );
    };

  return {
    name,
    description:
      "Run a shell command (POSIX sh). Every command needs approval unless allowlisted; the " +
      "approval covers exactly this command. Commands still running after " +
      `${Math.round(yieldAfterMs / 1000)} s continue in the background and return a slug for ` +
      "the process tool (poll, log, write, kill, list, remove); input written to an approved " +
      "command needs its own approval.",
    inputSchema,
    timeoutMs: approvalTimeoutMs + yieldAfterMs + 30_000,
    async execute(rawInput: JsonValue, context: ToolContext): Promise<JsonValue> {
      const input = parseInput(rawInput, maxTimeoutMs);
      const kind = input.host ?? defaultHost;
      const host = options.hosts[kind];
      if (host === undefined) {
        throw new InvalidArgumentError(
          `host "${kind}" is not available here (${available.join(", ")})`,
        );
      }
      if (input.stdin !== undefined && host.acceptsStdin === false) {
        throw new InvalidArgumentError(
          `host "${kind}" (${host.id}) cannot pass stdin to a command; nothing ran`,
        );
      }
      await host.ready?.();
      const cwd = host.resolveCwd(input.cwd);
      const env = host.environment(input.env);
      const binding = bindCommand(input.command, {
        cwd,
        host: host.id,
        env: input.env ?? {},
        stdin: input.stdin,
        path: host.path,
        shell: host.shell,
        resolveExecutable: host.resolveExecutable,
        maxLength: options.maxCommandLength,
      });
      const allowedBy = await decide(binding, context);
      if (context.signal.aborted) throw context.signal.reason ?? new AbortedError("aborted");

      const started = await registry.spawn(host, {
        command: input.command,
        script: binding.script,
        cwd,
        env,
        owner: context.sessionKey,
        timeoutMs: input.timeoutMs ?? timeoutMs,
        // What the allowlist lets run is trusted with its input; what was asked about is not.
        ...(allowedBy === "asked" ? { gateWrite: gateWrites(binding) } : {}),
      });
      const slug = started.slug;
      if (input.stdin !== undefined) {
        // A command that exits or closes stdin before reading it makes this fail (EPIPE):
        // that is the command's business, and its result says what it did. Not awaited: a
        // command that does not read its input would block the write (a full pipe) and, with
        // it, the yield to the background and the kill on abort below.
        void registry.write(slug, input.stdin, { eof: true }).catch(() => {});
      }
      if (input.background) return backgrounded(registry.background(slug));

      let state: ProcessSnapshot;
      try {
        state = await registry.wait(slug, { timeoutMs: yieldAfterMs, signal: context.signal });
      } catch (error) {
        // The run was aborted while the command ran in the foreground: it goes too.
        await registry.remove(slug);
        throw error;
      }
      if (state.status === "running") return backgrounded(registry.background(slug));
      const result = finished(state);
      await registry.remove(slug);
      return result;
    },
  };

  function backgrounded(state: ProcessSnapshot): JsonObject {
    const output = cap(registry.output(state.slug));
    return {
      status: "running",
      backgrounded: true,
      slug: state.slug,
      pid: state.pid,
      ...output,
      durationMs: state.durationMs,
    };
  }

  function finished(state: ProcessSnapshot): JsonObject {
    return {
      status: "exited",
      exitCode: state.exitCode,
      signal: state.signal,
      ...cap(registry.output(state.slug)),
      durationMs: state.durationMs,
      timedOut: state.timedOut,
    };
  }

  function cap(output: { stdout: string; stderr: string; truncated: boolean }) {
    const cut = (text: string) => {
      if (text.length <= maxOutputChars) return text;
      const end = text.slice(-maxOutputChars);
      // Never start with the second half of a character (a lone low surrogate).
      const first = end.charCodeAt(0);
      return first >= 0xdc00 && first <= 0xdfff ? end.slice(1) : end;
    };
    const [stdout, stderr] = withinBytes(cut(output.stdout), cut(output.stderr), maxOutputBytes);
    return {
      stdout,
      stderr,
      truncated:
        output.truncated ||
        stdout.length < output.stdout.length ||
        stderr.length < output.stderr.length,
    };
  }
}

/**
 * The ends of `stdout` and `stderr` within `maxBytes` serialized bytes together: each gets
 * half, or all it needs when that is less and the other takes the rest.
 */
function withinBytes(stdout: string, stderr: string, maxBytes: number): [string, string] {
  if (maxBytes === Number.POSITIVE_INFINITY) return [stdout, stderr];
  const outBytes = jsonTextBytes(stdout);
  const errBytes = jsonTextBytes(stderr);
  if (outBytes + errBytes <= maxBytes) return [stdout, stderr];
  const half = Math.floor(maxBytes / 2);
  const outRoom = errBytes < half ? maxBytes - errBytes : Math.min(outBytes, half);
  return [fitJsonText(stdout, outRoom, "tail"), fitJsonText(stderr, maxBytes - outRoom, "tail")];
}

function parseInput(raw: JsonValue, maxTimeoutMs: number): ExecToolInput {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new InvalidArgumentError("exec input must be an object with a command");
  }
  for (const key of Object.keys(raw)) {
    if (!INPUT_KEYS.has(key)) throw new InvalidArgumentError(`exec does not take "${key}"`);
  }
  const input = raw as Record<string, JsonValue>;
  if (typeof input.command !== "string") throw new InvalidArgumentError("command must be a string");
  const out: ExecToolInput = { command: input.command };
  if (input.cwd !== undefined) {
    if (typeof input.cwd !== "string") throw new InvalidArgumentError("cwd must be a string");
    out.cwd = input.cwd;
  }
  if (input.env !== undefined) {
    if (typeof input.env !== "object" || input.env === null || Array.isArray(input.env)) {
      throw new InvalidArgumentError("env must be an object of strings");
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.env)) {
      if (typeof v !== "string") throw new InvalidArgumentError(`env.${k} must be a string`);
      env[k] = v;
    }
    out.env = env;
  }
  if (input.host !== undefined) {
    if (typeof input.host !== "string" || !HOST_KINDS.includes(input.host as ExecHostKind)) {
      throw new InvalidArgumentError(`host must be one of ${HOST_KINDS.join(", ")}`);
    }
    out.host = input.host as ExecHostKind;
  }
  if (input.timeoutMs !== undefined) {
    const t = input.timeoutMs;
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0 || t > maxTimeoutMs) {
      throw new InvalidArgumentError(`timeoutMs must be a number between 1 and ${maxTimeoutMs}`);
    }
    out.timeoutMs = t;
  }
  if (input.background !== undefined) {
    if (typeof input.background !== "boolean") {
      throw new InvalidArgumentError("background must be a boolean");
    }
    out.background = input.background;
  }
  if (input.stdin !== undefined) {
    if (typeof input.stdin !== "string") throw new InvalidArgumentError("stdin must be a string");
    out.stdin = input.stdin;
  }
  return out;
}

/** The longest delay a Node.js timer can hold. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Settles with `promise`, or rejects with `onTimeout()` after `ms`, or with the abort reason. */
function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  signal: AbortSignal,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason ?? new AbortedError("aborted"));
      return;
    }
    const onAbort = () => done(() => reject(signal.reason ?? new AbortedError("aborted")));
    // Infinity waits as long as it takes; a timer holds at most 2^31-1 ms (about 24.8 days),
    // and a longer delay would make it fire at once.
    const timer =
      ms === Number.POSITIVE_INFINITY
        ? undefined
        : setTimeout(() => done(() => reject(onTimeout())), Math.min(ms, MAX_TIMER_MS));
    let settled = false;
    function done(settle: () => void) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      settle();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => done(() => resolve(value)),
      (error: unknown) => done(() => reject(error)),
    );
  });
}
