import { readFile } from "node:fs/promises";
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { BeamClawError, type BeamClawErrorOptions, InvalidArgumentError } from "../errors.js";
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
  /**
   * The line of the file where it is (1-based): the key's line, or its nearest enclosing
   * key's when the key is missing. Only for a configuration read from YAML.
   */
  line?: number;
}

/** A configuration could not be read, substituted or validated. `issues` names every problem. */
export class ConfigError extends BeamClawError {
  readonly issues: readonly ConfigIssue[];
  readonly source: string;
  /**
   * @param source the file (or "config object") the issues are in
   * @param issues every problem found
   * @param options `cause`: the underlying error (the file system's, when the file cannot be read)
   */
  constructor(source: string, issues: ConfigIssue[], options?: BeamClawErrorOptions) {
    super(
      "CONFIG_INVALID",
      `invalid configuration (${source}):\n${issues
        .map((i) => `  - ${i.path}: ${i.message}${i.line === undefined ? "" : ` (line ${i.line})`}`)
        .join("\n")}`,
      options,
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

/**
 * Where each issue is, as keys of the input (`["agents", "main", "model"]`), for
 * {@link parseConfigYaml} to find its line. Kept aside so that issues stay `{ path, message }`.
 */
const issueKeys = new WeakMap<ConfigIssue, readonly PropertyKey[]>();

/** An issue at `keys` (and `at` for its line, when that differs: an unknown key's own line). */
function issueAt(
  keys: readonly PropertyKey[],
  message: string,
  at: readonly PropertyKey[] = keys,
): ConfigIssue {
  const issue = { path: formatPath(keys), message };
  issueKeys.set(issue, at);
  return issue;
}

/**
 * The path as the input has it: `agents` written as a map keyed by id validates as a list,
 * so `agents[1]` of the list is `agents.<its id>` of the input.
 */
function inputPath(path: readonly PropertyKey[], input: unknown): PropertyKey[] {
  const agents = (input as { agents?: unknown } | null)?.agents;
  if (
    path[0] !== "agents" ||
    typeof path[1] !== "number" ||
    typeof agents !== "object" ||
    agents === null ||
    Array.isArray(agents)
  ) {
    return [...path];
  }
  const id = Object.keys(agents)[path[1]];
  return id === undefined ? [...path] : ["agents", id, ...path.slice(2)];
}

function zodIssues(error: z.ZodError, input: unknown): ConfigIssue[] {
  return error.issues.map((issue) => {
    const expected = (issue as { expected?: unknown }).expected;
    const received = (issue as { input?: unknown }).input;
    const path = inputPath(issue.path, input);
    let message = issue.message;
    if (issue.code === "invalid_type" && expected !== undefined) {
      const shown = received === undefined ? "nothing" : showValue(received);
      const what =
        path.length === 1 && path[0] === "agents"
          ? "a map of agents by id (main: { model: provider/model }) or a list"
          : String(expected);
      message = `expected ${what}, got ${shown.length > 40 ? `${shown.slice(0, 37)}...` : shown}`;
    } else if (issue.code === "unrecognized_keys") {
      const keys = (issue as { keys: string[] }).keys;
      message = `unknown field(s) ${keys.map((k) => JSON.stringify(k)).join(", ")}`;
      // The line is the first unknown key's own.
      return issueAt(path, message, keys[0] === undefined ? path : [...path, keys[0]]);
    }
    return issueAt(path, message);
  });
}

/** `$${`, a reference, or any other `${` (a malformed reference: the last alternative). */
const ENV_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g;

/**
 * Replaces `${NAME}` (and `${NAME:-default}`) in every string of `value` with the
 * environment's value; `$${` stands for a literal `${`. A reference to an unset variable
 * without a default is an issue naming its path, and so is any other `${` (`${MY-TOKEN}`,
 * `${TOKEN:default}`, `${TOKEN }`): it would otherwise stay in the value as literal text.
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
      (match, name: string | undefined, fallback: string | undefined, offset: number) => {
        if (match === "$${") return "${";
        if (name === undefined) {
          const shown = malformedRef(value, offset);
          issues.push(
            issueAt(
              path,
              `${JSON.stringify(shown)} is not a reference: write \${NAME} or \${NAME:-default} (NAME of letters, digits and _), or $\${ for a literal \${`,
            ),
          );
          return match;
        }
        const found = env[name!];
        if (found !== undefined && found !== "") return found;
        if (fallback !== undefined) return fallback;
        issues.push(issueAt(path, `environment variable ${name} is not set`));
        return match;
      },
    );
  }
  if (typeof value === "object" && value !== null) {
    if (ancestors.has(value)) {
      issues.push(issueAt(path, "a cyclic reference (JSON has no cycles)"));
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

/** The malformed reference at `offset` of `text`, up to its `}` (at most 40 characters). */
function malformedRef(text: string, offset: number): string {
  const end = text.indexOf("}", offset);
  const ref = end === -1 ? text.slice(offset) : text.slice(offset, end + 1);
  return ref.length > 40 ? `${ref.slice(0, 37)}...` : ref;
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
  if (!result.success) throw new ConfigError(source, zodIssues(result.error, substituted));
  const ids = new Set<string>();
  for (const [i, agent] of result.data.agents.entries()) {
    if (ids.has(agent.id)) {
      issues.push(
        issueAt(inputPath(["agents", i, "id"], substituted), `duplicate agent id "${agent.id}"`),
      );
    }
    ids.add(agent.id);
  }
  const jobIds = new Set<string>();
  for (const [i, job] of result.data.cron.jobs.entries()) {
    if (jobIds.has(job.id))
      issues.push(issueAt(["cron", "jobs", i, "id"], `duplicate job id "${job.id}"`));
    jobIds.add(job.id);
    if (!ids.has(job.agentId)) {
      issues.push(
        issueAt(["cron", "jobs", i, "agentId"], `no agent "${job.agentId}" is configured`),
      );
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
  // (The placeholders hold no line break: every line number is the text's own.)
  const lineCounter = new LineCounter();
  const doc = parseDocument(prepared, { prettyErrors: true, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "(yaml)",
        // prettyErrors appends the position and a code frame; the path already has it.
        message: (e.message.split("\n")[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, ""),
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
  try {
    return parseConfig(restoreRefs(parsed ?? {}, refs), { ...options, source });
  } catch (error) {
    if (!ConfigError.isInstance(error)) throw error;
    throw new ConfigError(
      source,
      error.issues.map((issue) => {
        const keys = issueKeys.get(issue);
        const line = keys === undefined ? undefined : lineOf(doc, keys, lineCounter);
        return line === undefined ? issue : { ...issue, line };
      }),
    );
  }
}

/**
 * The line of `keys` in the document: the line of the deepest key (or list item) of that
 * path the document has, so a missing field is placed at the section that lacks it.
 */
function lineOf(
  doc: Document,
  keys: readonly PropertyKey[],
  lineCounter: LineCounter,
): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const key of keys) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (pair === undefined) break;
      offset = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number") {
      const item = node.items[key] as { range?: [number, number, number] } | undefined;
      if (item?.range === undefined) break;
      offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : lineCounter.linePos(offset).line;
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
    throw unreadableConfig(path, error);
  }
  return parseConfigYaml(text, { ...options, source: path });
}

/** The `ConfigError` of a configuration file that cannot be read (`error`: the file system's). */
export function unreadableConfig(path: string, error: unknown): ConfigError {
  return new ConfigError(path, [{ path: "(file)", message: unreadable(error) }], { cause: error });
}

/** Why a configuration file cannot be read, in words (the path is the error's source). */
function unreadable(error: unknown): string {
  switch ((error as { code?: unknown }).code) {
    case "ENOENT":
      return "no such file";
    case "EISDIR":
      return "a directory, not a file: give the path of a YAML file";
    case "EACCES":
    case "EPERM":
      return "permission denied: this user may not read it";
    default:
      return (error as Error).message;
  }
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
