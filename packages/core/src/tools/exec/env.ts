/**
 * The environment an exec'd command gets. Two rules:
 *
 * 1. Variables that change which code a program loads or runs — the dynamic linker's
 *    `LD_*` / `DYLD_*`, interpreter hooks (`NODE_OPTIONS`, `PYTHONPATH`, `RUBYOPT`,
 *    `PERL5OPT`, `BASH_ENV`, `JAVA_TOOL_OPTIONS`...), programs that run a helper
 *    (`GIT_SSH_COMMAND`, `PAGER`, `EDITOR`, `LESSOPEN`...), and the identity and lookup
 *    variables (`PATH`, `HOME`, `USER`, `SHELL`, `IFS`, `CDPATH`) — are on a blocklist. A
 *    caller (or the model) that supplies one gets a {@link BlockedEnvError}: it is refused,
 *    never silently dropped, so nobody believes a setting took effect when it did not.
 * 2. The host's own environment is not inherited wholesale: the gateway's environment holds
 *    provider API keys. Only a short list of harmless variables (locale, time zone, `HOME`,
 *    `USER`, `TERM`, `TMPDIR`) is passed on unless the host is configured otherwise, and
 *    blocklisted ones are stripped even then. `PATH` is always the host's fixed, absolute
 *    search path.
 *
 * @example
 * ```ts
 * const env = sanitizeEnv({ base: process.env, path: DEFAULT_EXEC_PATH, env: { CI: "1" } });
 * sanitizeEnv({ base: {}, path: DEFAULT_EXEC_PATH, env: { LD_PRELOAD: "/tmp/x.so" } }); // throws BlockedEnvError
 * ```
 */
import { BlockedEnvError, InvalidArgumentError } from "../../errors.js";

/** The search path commands resolve against unless a host is configured with another. */
export const DEFAULT_EXEC_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Variables no caller or command may set, unset or override (compared case-insensitively).
 * The first line is the seed's list; the rest closes the same hole for other loaders,
 * interpreters and helper-running programs.
 */
export const BLOCKED_ENV_NAMES: readonly string[] = [
  "LD_PRELOAD",
  "LD_LIBRARY_PATH",
  "DYLD_INSERT_LIBRARIES",
  "NODE_OPTIONS",
  "PYTHONPATH",
  "RUBYLIB",
  "PERL5LIB",
  "PATH",
  "HOME",
  "USER",
  "SHELL",
  // shells
  "BASH_ENV",
  "ENV",
  "IFS",
  "CDPATH",
  "GLOBIGNORE",
  "SHELLOPTS",
  "BASHOPTS",
  "PS4",
  "PROMPT_COMMAND",
  "ZDOTDIR",
  "LOGNAME",
  // loaders and C library
  "LD_AUDIT",
  "GLIBC_TUNABLES",
  "GCONV_PATH",
  "GETCONF_DIR",
  "LOCPATH",
  "NLSPATH",
  "HOSTALIASES",
  "RESOLV_HOST_CONF",
  "MALLOC_CONF",
  // interpreters
  "NODE_PATH",
  "PYTHONHOME",
  "PYTHONSTARTUP",
  "PYTHONWARNINGS",
  "PYTHONINSPECT",
  "PYTHONBREAKPOINT",
  "RUBYOPT",
  "PERL5OPT",
  "PERLLIB",
  "PERL5DB",
  "JAVA_TOOL_OPTIONS",
  "_JAVA_OPTIONS",
  "JDK_JAVA_OPTIONS",
  "CLASSPATH",
  "OPENSSL_CONF",
  "OPENSSL_ENGINES",
  "OPENSSL_MODULES",
  "MAKEFLAGS",
  // programs that run a helper command
  "GIT_SSH",
  "GIT_SSH_COMMAND",
  "GIT_EXEC_PATH",
  "GIT_EXTERNAL_DIFF",
  "GIT_PAGER",
  "GIT_EDITOR",
  "GIT_SEQUENCE_EDITOR",
  "GIT_ASKPASS",
  "GIT_PROXY_COMMAND",
  "GIT_TEMPLATE_DIR",
  "SSH_ASKPASS",
  "EDITOR",
  "VISUAL",
  "PAGER",
  "MANPAGER",
  "LESSOPEN",
  "LESSCLOSE",
  "BROWSER",
];

/** Prefixes of blocked variable families (compared case-insensitively). */
export const BLOCKED_ENV_PREFIXES: readonly string[] = [
  "LD_",
  "DYLD_",
  "BASH_FUNC_",
  "GIT_CONFIG",
  "NPM_CONFIG_",
];

/** Variables passed on from the host's own environment by default (plus every `LC_*`). */
export const DEFAULT_INHERITED_ENV: readonly string[] = [
  "HOME",
  "USER",
  "LOGNAME",
  "LANG",
  "LANGUAGE",
  "TZ",
  "TERM",
  "TMPDIR",
];

const BLOCKED = new Set(BLOCKED_ENV_NAMES.map((n) => n.toUpperCase()));
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Set by the host itself from trusted sources, never from the caller. */
const HOST_OWNED = new Set(["PATH", "HOME", "USER", "LOGNAME", "SHELL"]);

/**
 * True when `name` is on the exec blocklist.
 *
 * @example
 * ```ts
 * isBlockedEnvName("LD_PRELOAD"); // true
 * isBlockedEnvName("DYLD_FRAMEWORK_PATH"); // true (prefix)
 * isBlockedEnvName("CI"); // false
 * ```
 */
export function isBlockedEnvName(name: string, extra: ReadonlySet<string> = EMPTY): boolean {
  const upper = name.toUpperCase();
  if (BLOCKED.has(upper) || extra.has(upper)) return true;
  return BLOCKED_ENV_PREFIXES.some((prefix) => upper.startsWith(prefix));
}

const EMPTY: ReadonlySet<string> = new Set();

/**
 * Checks caller-supplied variables: valid names, string values without NUL, none blocked.
 *
 * @example
 * ```ts
 * checkEnv({ CI: "1" }); // { CI: "1" }
 * checkEnv({ NODE_OPTIONS: "-r x" }); // throws BlockedEnvError (names: ["NODE_OPTIONS"])
 * ```
 *
 * @throws BlockedEnvError naming every blocked variable.
 * @throws InvalidArgumentError for a malformed name or value.
 */
export function checkEnv(
  env: Readonly<Record<string, unknown>> | undefined,
  extraBlocked: ReadonlySet<string> = EMPTY,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (env === undefined) return out;
  const blocked: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!ENV_NAME.test(name)) {
      throw new InvalidArgumentError(`invalid environment variable name ${JSON.stringify(name)}`);
    }
    if (typeof value !== "string" || value.includes("\0")) {
      throw new InvalidArgumentError(`environment variable ${name} must be a string without NUL`);
    }
    if (isBlockedEnvName(name, extraBlocked)) blocked.push(name);
    out[name] = value;
  }
  if (blocked.length > 0) throw new BlockedEnvError(blocked, "refused in the env option");
  return out;
}

/** Options of {@link sanitizeEnv}. */
export interface SanitizeEnvOptions {
  /** The host's own environment. Default `process.env`. */
  base?: Readonly<Record<string, string | undefined>>;
  /**
   * Which variables of `base` to pass on: a list of names (entries ending in `*` match a
   * prefix), or `"all"`. Blocked variables are never passed on. Default
   * {@link DEFAULT_INHERITED_ENV} plus `LC_*`.
   */
  inherit?: readonly string[] | "all";
  /** The search path; every entry must be absolute. Default {@link DEFAULT_EXEC_PATH}. */
  path?: string;
  /** `SHELL` for the command. Default `/bin/sh`. */
  shell?: string;
  /** Caller-supplied variables, checked with {@link checkEnv}. */
  env?: Readonly<Record<string, unknown>>;
  /** More names to block, on top of the built-in list. */
  extraBlocked?: readonly string[];
}

/**
 * Builds the environment of an exec'd command: the inherited subset of the host's
 * environment without blocked variables, the fixed `PATH` and `SHELL`, and the caller's
 * variables (refused with {@link BlockedEnvError} if any is blocked).
 *
 * @example
 * ```ts
 * const env = sanitizeEnv({ env: { FORCE_COLOR: "0" } });
 * env.PATH === DEFAULT_EXEC_PATH; // true
 * ```
 */
export function sanitizeEnv(options: SanitizeEnvOptions = {}): Record<string, string> {
  const extra = new Set((options.extraBlocked ?? []).map((n) => n.toUpperCase()));
  const caller = checkEnv(options.env, extra);
  const path = checkSearchPath(options.path ?? DEFAULT_EXEC_PATH);
  const base = options.base ?? process.env;
  const inherit = options.inherit ?? [...DEFAULT_INHERITED_ENV, "LC_*"];
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(base)) {
    if (value === undefined || value.includes("\0") || !ENV_NAME.test(name)) continue;
    if (!(inherit === "all" || matchesAny(name, inherit))) continue;
    // The host-owned identity variables are trusted from the host, blocked for callers.
    if (isBlockedEnvName(name, extra) && !HOST_OWNED.has(name)) continue;
    out[name] = value;
  }
  out.PATH = path;
  out.SHELL = options.shell ?? "/bin/sh";
  Object.assign(out, caller);
  return out;
}

/**
 * Validates a search path: every entry absolute, no empty entry (an empty entry means the
 * current directory to a shell).
 *
 * @throws InvalidArgumentError otherwise.
 */
export function checkSearchPath(path: string): string {
  const entries = path.split(":");
  for (const entry of entries) {
    if (!entry.startsWith("/") || entry.includes("\0")) {
      throw new InvalidArgumentError(
        `every PATH entry must be an absolute directory, got ${JSON.stringify(entry)} in ${JSON.stringify(path)}`,
      );
    }
  }
  return path;
}

function matchesAny(name: string, patterns: readonly string[]): boolean {
  for (const pattern of patterns) {
    if (pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : name === pattern) {
      return true;
    }
  }
  return false;
}
