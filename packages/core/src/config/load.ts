import { readFile } from "node:fs/promises";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { BeamClawError, InvalidArgumentError } from "../errors.js";
import { describeArg, optionalString, requireObject } from "../runtime/validate.js";
import {
  type BeamClawConfig,
  type ConfigInput,
  ConfigSchema,
  RESTART_ONLY_PATHS,
} from "./schema.js";

/** One problem in a configuration. */
export interface ConfigIssue {
  /** Where: `agents[0].model`, or `(root)`. */
  path: string;
  /** What was wrong and what was expected. */
  message: string;
}

/** A configuration could not be read, substituted or validated. `issues` names every problem. */
export class ConfigError extends BeamClawError {
  readonly issues: readonly ConfigIssue[];
  readonly source: string;
  constructor(source: string, issues: ConfigIssue[]) {
    super(
      "CONFIG_INVALID",
      `invalid configuration (${source}):\n${issues.map((i) => `  - ${i.path}: ${i.message}`).join("\n")}`,
    );
    this.issues = issues;
    this.source = source;
  }
  static override isInstance = (value: unknown): value is ConfigError =>
    BeamClawError.isInstance(value) && value.code === "CONFIG_INVALID";
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  if (path.length === 0) return "(root)";
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out.length === 0 ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** A value as JSON, or its kind when JSON cannot show it (a BigInt, a symbol). Never throws. */
function showValue(value: unknown): string {
  try {
    return JSON.stringify(value) ?? describeArg(value);
  } catch {
    return describeArg(value);
  }
}

function zodIssues(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((issue) => {
    const expected = (issue as { expected?: unknown }).expected;
    const received = (issue as { input?: unknown }).input;
    let message = issue.message;
    if (issue.code === "invalid_type" && expected !== undefined) {
      const shown = received === undefined ? "nothing" : showValue(received);
      message = `expected ${String(expected)}, got ${shown.length > 40 ? `${shown.slice(0, 37)}...` : shown}`;
    } else if (issue.code === "unrecognized_keys") {
      message = `unknown field(s) ${(issue as { keys: string[] }).keys.map((k) => JSON.stringify(k)).join(", ")}`;
    }
    return { path: formatPath(issue.path), message };
  });
}

const ENV_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${NAME}` (and `${NAME:-default}`) in every string of `value` with the
 * environment's value; `$${` stands for a literal `${`. A reference to an unset variable
 * without a default is an issue naming its path.
 */
export function substituteEnv(
  value: unknown,
  env: Record<string, string | undefined>,
  issues: ConfigIssue[],
  path: PropertyKey[] = [],
  /** The objects being walked, to refuse a cycle instead of recursing for ever. */
  ancestors: Set<object> = new Set(),
): unknown {
  if (typeof value === "string") {
    return value.replace(
      ENV_REF,
      (match, name: string | undefined, fallback: string | undefined) => {
        if (match === "$${") return "${";
        const found = env[name!];
        if (found !== undefined && found !== "") return found;
        if (fallback !== undefined) return fallback;
        issues.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
        return match;
      },
    );
  }
  if (typeof value === "object" && value !== null) {
    if (ancestors.has(value)) {
      issues.push({ path: formatPath(path), message: "a cyclic reference (JSON has no cycles)" });
      return undefined;
    }
    ancestors.add(value);
    try {
      if (Array.isArray(value)) {
        return value.map((v, i) => substituteEnv(v, env, issues, [...path, i], ancestors));
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value))
        setOwn(out, k, substituteEnv(v, env, issues, [...path, k], ancestors));
      return out;
    } finally {
      ancestors.delete(value);
    }
  }
  return value;
}

/** Options for parsing a configuration. */
export interface ParseConfigOptions {
  /** Environment for `${VAR}` substitution. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Named in errors, e.g. the file path. */
  source?: string;
}

/**
 * Validates a configuration object (the programmatic form, same schema as the file).
 *
 * @throws ConfigError naming the path and the expected value of every problem.
 */
export function parseConfig(
  input: ConfigInput | unknown,
  options: ParseConfigOptions = {},
): BeamClawConfig {
  requireObject(options, "parseConfig options");
  optionalString(options.source, "parseConfig options.source");
  if (options.env !== undefined) requireObject(options.env, "parseConfig options.env");
  const source = options.source ?? "config object";
  const issues: ConfigIssue[] = [];
  const substituted = substituteEnv(input, options.env ?? process.env, issues, [], new Set());
  if (issues.length > 0) throw new ConfigError(source, issues);
  const result = ConfigSchema.safeParse(substituted, { reportInput: true });
  if (!result.success) throw new ConfigError(source, zodIssues(result.error));
  const ids = new Set<string>();
  for (const [i, agent] of result.data.agents.entries()) {
    if (ids.has(agent.id))
      issues.push({ path: `agents[${i}].id`, message: `duplicate agent id "${agent.id}"` });
    ids.add(agent.id);
  }
  const jobIds = new Set<string>();
  for (const [i, job] of result.data.cron.jobs.entries()) {
    if (jobIds.has(job.id))
      issues.push({ path: `cron.jobs[${i}].id`, message: `duplicate job id "${job.id}"` });
    jobIds.add(job.id);
    if (!ids.has(job.agentId)) {
      issues.push({
        path: `cron.jobs[${i}].agentId`,
        message: `no agent "${job.agentId}" is configured`,
      });
    }
  }
  if (issues.length > 0) throw new ConfigError(source, issues);
  return result.data;
}

/**
 * Parses YAML text and validates it.
 *
 * @throws ConfigError for YAML syntax errors (with line and column) and validation problems.
 *
 * @example
 * ```ts
 * const config = parseConfigYaml("agents: { main: { model: anthropic/claude-sonnet-4-5 } }\n");
 * config.agents[0]?.id; // "main"
 * config.gateway.port; // 18789, the default
 * ```
 */
export function parseConfigYaml(text: string, options: ParseConfigOptions = {}): BeamClawConfig {
  if (typeof text !== "string") {
    throw new InvalidArgumentError(
      `parseConfigYaml needs the YAML text as a string, got ${describeArg(text)}`,
    );
  }
  requireObject(options, "parseConfigYaml options");
  const source = options.source ?? "beamclaw.yaml";
  // `${VAR}` is not valid YAML inside a flow map (`{ token: ${TOKEN} }`), so references are
  // swapped for inert placeholders before parsing and restored in the parsed strings, where
  // parseConfig substitutes them. Values are never spliced into the YAML text itself.
  const refs: string[] = [];
  const prepared = text.replace(/\$\$\{|\$\{[^}\n]*\}/g, (ref) => {
    refs.push(ref);
    return `__BEAMCLAW_REF_${refs.length - 1}__`;
  });
  const doc = parseDocument(prepared, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "(yaml)",
        message: e.message.split("\n")[0] ?? e.message,
      })),
    );
  }
  let parsed: unknown;
  try {
    // Aliases resolve here: one to an unknown anchor, or too many (a billion-laughs file),
    // throws a plain ReferenceError.
    parsed = doc.toJS();
  } catch (error) {
    throw new ConfigError(source, [{ path: "(yaml)", message: (error as Error).message }]);
  }
  return parseConfig(restoreRefs(parsed ?? {}, refs), { ...options, source });
}

/**
 * Sets `key` as an own property: `out[key] = value` would make a `__proto__` key the object's
 * prototype, so the key would vanish instead of being reported as unknown.
 */
function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}

function restoreRefs(value: unknown, refs: string[]): unknown {
  if (typeof value === "string") {
    return value.replace(
      /__BEAMCLAW_REF_(\d+)__/g,
      (placeholder, i: string) => refs[Number(i)] ?? placeholder,
    );
  }
  if (Array.isArray(value)) return value.map((v) => restoreRefs(v, refs));
  if (typeof value === "object" && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      setOwn(out, restoreRefs(k, refs) as string, restoreRefs(v, refs));
    return out;
  }
  return value;
}

/**
 * Reads and validates a `beamclaw.yaml` file.
 *
 * @example
 * ```ts
 * try {
 *   const config = await loadConfigFile("./beamclaw.yaml");
 *   console.log(config.agents.map((agent) => agent.id));
 * } catch (error) {
 *   if (!ConfigError.isInstance(error)) throw error;
 *   for (const issue of error.issues) console.error(`${issue.path}: ${issue.message}`);
 * }
 * ```
 */
export async function loadConfigFile(
  path: string,
  options: Omit<ParseConfigOptions, "source"> = {},
): Promise<BeamClawConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(path, [{ path: "(file)", message: (error as Error).message }]);
  }
  return parseConfigYaml(text, { ...options, source: path });
}

/** What changed between two configurations. */
export interface ConfigDiff {
  /** Dotted paths of every changed leaf (or added/removed branch). */
  changed: string[];
  /** The changed paths that were applied live. */
  applied: string[];
  /** The changed paths that only take effect after a restart. */
  restartRequired: string[];
}

function collectChanges(a: unknown, b: unknown, path: string, out: string[]): void {
  if (Object.is(a, b)) return;
  const bothObjects =
    typeof a === "object" &&
    a !== null &&
    typeof b === "object" &&
    b !== null &&
    Array.isArray(a) === Array.isArray(b);
  if (!bothObjects) {
    out.push(path || "(root)");
    return;
  }
  if (Array.isArray(a)) {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(path || "(root)");
    return;
  }
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
  for (const key of [...keys].sort()) {
    collectChanges(
      (a as Record<string, unknown>)[key],
      (b as Record<string, unknown>)[key],
      path ? `${path}.${key}` : key,
      out,
    );
  }
}

/** Diffs two configurations and classifies each change as live or restart-only. */
export function diffConfig(previous: BeamClawConfig, next: BeamClawConfig): ConfigDiff {
  const changed: string[] = [];
  collectChanges(previous, next, "", changed);
  const restartRequired = changed.filter((p) =>
    RESTART_ONLY_PATHS.some((r) => p === r || p.startsWith(`${r}.`)),
  );
  return { changed, applied: changed.filter((p) => !restartRequired.includes(p)), restartRequired };
}
