/** The `beamclaw` command: `gateway` and `doctor`. */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { AbortedError, BeamClawError, ConfigError, formatExitReason } from "@beamclaw/core";
import { GATEWAY_VERSION } from "../server.js";
import { CliError, startFromConfig } from "./bootstrap.js";
import { doctor } from "./doctor.js";

/** Where the command writes and how it waits for a signal (injectable for tests). */
export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  env: Record<string, string | undefined>;
  /**
   * Starts listening for the signal that asks the gateway to stop, and resolves with it.
   * `beamclaw gateway` calls it once, before it starts anything, so that a signal while
   * starting stops the start cleanly.
   */
  waitForStop(): Promise<string>;
  /** Called on a second signal while stopping (or while a cancelled start stops). */
  onForce(listener: () => void): void;
}

const HELP = `beamclaw ${GATEWAY_VERSION}

Usage:
  beamclaw gateway [--config <file>] [--host <addr>] [--port <n>] [--drain-timeout-ms <ms>] [--generate-token]
  beamclaw doctor  [--config <file>] [--probe]
  beamclaw --help | --version      (also: beamclaw <command> --help)

The configuration is read from --config, else $BEAMCLAW_CONFIG, else ./beamclaw.yaml.

  gateway   Starts the gateway: OpenClaw's WebSocket protocol, the OpenAI-compatible API,
            health probes and the dashboard on one port. SIGINT/SIGTERM stop it gracefully:
            no new connections, runs in progress get --drain-timeout-ms (default 10000) to
            finish, the store is flushed, exit code 0. A signal while it is still starting
            stops what has started (an MCP server still connecting is cancelled; another
            step under way ends first), also exit code 0. If the runtime's supervision tree
            gives up (a part kept crashing), it stops the same way and exits 1, so that a
            process manager restarts it; /healthz and /readyz answer 503 meanwhile.
            --generate-token  when BEAMCLAW_GATEWAY_TOKEN is not set, make a random one for
                              this run and print it.
  doctor    Checks a configuration (syntax, environment, store, providers, agents) and
            exits 1 if anything would stop the gateway. --probe also checks that provider
            base URLs answer.
`;

function configPath(value: string | undefined, env: CliIo["env"]): string {
  return resolve(value ?? env.BEAMCLAW_CONFIG ?? "beamclaw.yaml");
}

/** A command line `parseArgs` refused (an unknown flag, a missing value, a stray argument). */
function isUsageError(error: unknown): error is Error {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}

function explain(error: unknown, env: CliIo["env"]): string {
  if (ConfigError.isInstance(error)) {
    if ((error.cause as { code?: unknown } | undefined)?.code === "ENOENT") {
      return [
        `no configuration file at ${error.source}.`,
        "Give one with --config <file> or BEAMCLAW_CONFIG, or run where a beamclaw.yaml is",
        "(examples/gateway-server has a commented one).",
      ].join("\n");
    }
    const lines = [error.message];
    if (
      error.issues.some((i) => i.message.includes("BEAMCLAW_GATEWAY_TOKEN")) &&
      !env.BEAMCLAW_GATEWAY_TOKEN
    ) {
      lines.push(
        "Set the gateway token first, e.g.  export BEAMCLAW_GATEWAY_TOKEN=$(openssl rand -hex 24)",
        "or run with --generate-token to make a one-off token for this run.",
      );
    }
    return lines.join("\n");
  }
  if (error instanceof CliError) return error.message;
  const e = error as { code?: unknown; message?: unknown };
  if (e?.code === "EADDRINUSE") return `the port is already in use: ${String(e.message)}`;
  // Cannot listen there (an address this machine does not have, a port it may not bind, a
  // host name that does not resolve): the message names the address and the code.
  const syscall = (error as { syscall?: unknown })?.syscall;
  if ((syscall === "listen" || syscall === "getaddrinfo") && typeof e.code === "string") {
    return `cannot listen: ${String(e.message)}`;
  }
  // A typed failure (a store that cannot open, ...) says what is wrong; a stack adds nothing.
  if (BeamClawError.isInstance(error)) return `${error.message} (${error.code})`;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}

async function gatewayCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      host: { type: "string" },
      port: { type: "string" },
      "drain-timeout-ms": { type: "string" },
      "generate-token": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
  });
  if (values.help === true) {
    io.out(HELP);
    return 0;
  }
  // Digits only: Number() would take "" as 0, "0x50" as 80 and "1e3" as 1000.
  const digits = (value: string) => (/^\d+$/.test(value) ? Number(value) : Number.NaN);
  const drainTimeoutMs = digits(values["drain-timeout-ms"] ?? "10000");
  if (!Number.isSafeInteger(drainTimeoutMs)) {
    io.err("--drain-timeout-ms must be a whole number of milliseconds");
    return 2;
  }
  const port = values.port === undefined ? undefined : digits(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port > 65_535)) {
    io.err("--port must be a port number");
    return 2;
  }
  const env = io.env;
  if (values["generate-token"] === true && !env.BEAMCLAW_GATEWAY_TOKEN) {
    env.BEAMCLAW_GATEWAY_TOKEN = randomBytes(24).toString("base64url");
    io.out("BEAMCLAW_GATEWAY_TOKEN was not set: generated a token for this run:");
    io.out(`  ${env.BEAMCLAW_GATEWAY_TOKEN}`);
    io.out("Set BEAMCLAW_GATEWAY_TOKEN yourself to keep the same token across restarts.");
  }
  const path = configPath(values.config, env);
  // Signals count from before the start: one while starting (MCP servers spawning, channels
  // connecting) cancels it, and what had started is stopped as after a start.
  let forced = false;
  io.onForce(() => {
    forced = true;
  });
  const cancel = new AbortController();
  let started: Awaited<ReturnType<typeof startFromConfig>> | undefined;
  const stopRequested = io.waitForStop();
  void stopRequested.then((signal) => {
    if (started !== undefined) return;
    io.out(`${signal} while starting: stopping what has started`);
    cancel.abort(new AbortedError(`the start was cancelled by ${signal}`));
  });
  try {
    started = await startFromConfig({
      configPath: path,
      env,
      ...(values.host === undefined ? {} : { host: values.host }),
      ...(port === undefined ? {} : { port }),
      logSink: (line) => io.err(line),
      signal: cancel.signal,
    });
  } catch (error) {
    if (cancel.signal.aborted) {
      // Stopped on request: a part that failed meanwhile is worth a line, not a failure.
      if (error !== cancel.signal.reason) {
        io.err(`beamclaw gateway: while stopping the start: ${explain(error, env)}`);
      }
      io.out("stopped");
      return forced ? 1 : 0;
    }
    io.err(`beamclaw gateway: ${explain(error, env)}`);
    return 1;
  }
  const { host, port: bound } = started.address;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  io.out(`beamclaw gateway listening on http://${shownHost}:${bound} (config ${path})`);
  io.out(`  WebSocket  ws://${shownHost}:${bound}/   dashboard  http://${shownHost}:${bound}/`);
  io.out(
    `  store ${started.store.kind}, agents ${started.runtime.agents.map((a) => a.id).join(", ")}`,
  );
  // A runtime whose supervision tree gave up cannot recover in this process: stop as on a
  // signal and exit 1, for the process manager (systemd, Docker, Kubernetes) to restart us.
  let offFailed: () => void = () => {};
  const failed = new Promise<string>((resolve) => {
    offFailed = started.runtime.onFailed((reason) => resolve(formatExitReason(reason)));
  });
  const stop = await Promise.race([
    stopRequested.then((signal) => ({ signal, failure: undefined })),
    failed.then((failure) => ({ signal: "runtime failed", failure })),
  ]);
  offFailed();
  const { signal, failure } = stop;
  if (failure !== undefined) {
    io.err(`beamclaw gateway: the runtime's supervision tree gave up (${failure}); stopping`);
  }
  io.out(`${signal}: shutting down (runs in progress get up to ${drainTimeoutMs} ms)`);
  try {
    await started.stop({ drainTimeoutMs, reason: `gateway stopping (${signal})` });
  } catch (error) {
    io.err(`beamclaw gateway: stopping failed: ${explain(error, env)}`);
    return 1;
  }
  io.out("stopped");
  return forced || failure !== undefined ? 1 : 0;
}

async function doctorCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      probe: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: false,
  });
  if (values.help === true) {
    io.out(HELP);
    return 0;
  }
  const path = configPath(values.config, io.env);
  const findings = await doctor(path, { env: io.env, probe: values.probe === true });
  const marks = { ok: "ok   ", warn: "warn ", error: "ERROR" };
  for (const finding of findings) io.out(`${marks[finding.level]} ${finding.message}`);
  const errors = findings.filter((f) => f.level === "error").length;
  const warnings = findings.filter((f) => f.level === "warn").length;
  io.out(
    errors === 0
      ? `${path}: ready (${warnings} warning${warnings === 1 ? "" : "s"})`
      : `${path}: ${errors} problem${errors === 1 ? "" : "s"} to fix`,
  );
  return errors === 0 ? 0 : 1;
}

/** Runs the command; resolves with the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // Asked for, the usage is the output (exit 0); without a command it is a usage error, on
    // stderr with exit code 2 as every other one.
    if (command === "--help" || command === "-h" || command === "help") {
      io.out(HELP);
      return 0;
    }
    if (command === undefined) {
      io.err(`no command given\n\n${HELP}`);
      return 2;
    }
    if (command === "--version" || command === "-v") {
      io.out(GATEWAY_VERSION);
      return 0;
    }
    if (command === "gateway") return await gatewayCommand(rest, io);
    if (command === "doctor") return await doctorCommand(rest, io);
    io.err(`unknown command "${command}"\n\n${HELP}`);
    return 2;
  } catch (error) {
    if (isUsageError(error)) {
      io.err(`beamclaw ${command}: ${error.message}\nSee beamclaw --help for the usage.`);
      return 2;
    }
    io.err(`beamclaw ${command}: ${explain(error, io.env)}`);
    return 2;
  }
}
