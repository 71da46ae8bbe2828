import { realpathSync } from "node:fs";
import path from "node:path";
import { InvalidArgumentError } from "../../errors.js";
import type { ExecBinding, ExecInvocation } from "./binding-types.js";

/**
 * One allowlist entry: a program and, optionally, the arguments it may get.
 *
 * - `executable`: an absolute path (`/usr/bin/git`; matches that file, also through
 *   symlinks), or a bare name (`git`; matches a program of that name found in a directory of
 *   the host's search path, or the shell builtin of that name). Never a tool name.
 * - `argv`: patterns for the arguments after the program name: an exact string, `*` for
 *   exactly one argument, `**` (last only) for any remaining arguments. A leading backslash
 *   makes `\*` and `\**` literal. Omitted: any arguments.
 */
export interface ExecAllowlistEntry {
  executable: string;
  argv?: readonly string[];
}

/** Options of {@link ExecAllowlist}. */
export interface ExecAllowlistOptions {
  /**
   * Builtins allowed without an entry because they run nothing and change nothing outside
   * the shell. Default {@link DEFAULT_SAFE_BUILTINS}.
   */
  safeBuiltins?: readonly string[];
}

/** Builtins an allowlist accepts without an entry. */
export const DEFAULT_SAFE_BUILTINS: readonly string[] = [
  ":",
  "true",
  "false",
  "echo",
  "printf",
  "test",
  "[",
  "pwd",
  "cd",
  "exit",
  "return",
  "break",
  "continue",
  "shift",
  "wait",
  "set",
  "type",
  "command",
  "exec",
  "builtin",
];

/** The verdict of {@link ExecAllowlist.explain}. */
export interface ExecAllowlistVerdict {
  allowed: boolean;
  /** Why not, one sentence per problem. */
  reasons: string[];
}

/**
 * Commands that may run without asking. An allowlist matches what actually runs — resolved
 * programs and their argv — never tool names, and it only ever approves a binding that is
 * fully static, writes no file (other than `/dev/null`), sets no environment variable, and
 * whose every invocation, wrapped ones included, matches an entry. `nice` on the list does
 * not allow `nice rm -rf ~`: `rm` must match too.
 *
 * @example
 * ```ts
 * const allowlist = new ExecAllowlist([
 *   { executable: "git", argv: ["status", "**"] },
 *   { executable: "/usr/bin/ls" },
 * ]);
 * allowlist.allows(bindCommand("git status --short", { cwd })); // true
 * allowlist.allows(bindCommand("git status; rm x", { cwd })); // false: rm is not listed
 * ```
 */
export class ExecAllowlist {
  readonly #entries: ReadonlyArray<ExecAllowlistEntry & { real?: string }>;
  readonly #builtins: ReadonlySet<string>;

  /** @throws InvalidArgumentError for a malformed entry. */
  constructor(entries: readonly ExecAllowlistEntry[], options: ExecAllowlistOptions = {}) {
    this.#entries = entries.map((entry, i) => {
      if (
        typeof entry?.executable !== "string" ||
        entry.executable === "" ||
        entry.executable.includes("\0")
      ) {
        throw new InvalidArgumentError(
          `allowlist entry ${i}: executable must be a non-empty string`,
        );
      }
      if (entry.executable.includes("/") && !path.isAbsolute(entry.executable)) {
        throw new InvalidArgumentError(
          `allowlist entry ${i}: executable must be an absolute path or a bare name, got ${entry.executable}`,
        );
      }
      if (entry.argv !== undefined) {
        if (!Array.isArray(entry.argv) || entry.argv.some((p) => typeof p !== "string")) {
          throw new InvalidArgumentError(`allowlist entry ${i}: argv must be a list of strings`);
        }
        const rest = entry.argv.indexOf("**");
        if (rest !== -1 && rest !== entry.argv.length - 1) {
          throw new InvalidArgumentError(`allowlist entry ${i}: "**" may only be the last pattern`);
        }
      }
      let real: string | undefined;
      if (path.isAbsolute(entry.executable)) {
        try {
          real = realpathSync(entry.executable);
        } catch {
          real = undefined;
        }
      }
      return { ...entry, real };
    });
    this.#builtins = new Set(options.safeBuiltins ?? DEFAULT_SAFE_BUILTINS);
  }

  /** True when the binding may run without approval. */
  allows(binding: ExecBinding): boolean {
    return this.explain(binding).allowed;
  }

  /** Whether the binding may run without approval, and if not, why. */
  explain(binding: ExecBinding): ExecAllowlistVerdict {
    const reasons: string[] = [];
    for (const d of binding.dynamic) reasons.push(`not static: ${d.detail}`);
    for (const target of binding.writes) reasons.push(`writes ${target}`);
    if (binding.assignments.length > 0) {
      reasons.push(`sets variables: ${binding.assignments.join(", ")}`);
    }
    const env = Object.keys(binding.env);
    if (env.length > 0) reasons.push(`sets environment variables: ${env.join(", ")}`);
    for (const inv of binding.invocations) {
      if (!this.#allowed(inv, binding)) {
        reasons.push(
          `${inv.executable ?? inv.argv[0]} ${JSON.stringify(inv.argv.slice(1))} is not allowlisted`,
        );
      }
    }
    return { allowed: reasons.length === 0, reasons };
  }

  #allowed(inv: ExecInvocation, binding: ExecBinding): boolean {
    if (inv.dynamicArgs.length > 0) return false;
    if (inv.kind === "builtin") {
      const name = inv.argv[0]!;
      if (this.#builtins.has(name)) return true;
      return this.#entries.some(
        (e) => e.executable === name && matchArguments(e.argv, inv.argv.slice(1)),
      );
    }
    if (inv.kind !== "external" || inv.executable === null) return false;
    const exe = inv.executable;
    let real: string | undefined;
    for (const entry of this.#entries) {
      let programMatches: boolean;
      if (path.isAbsolute(entry.executable)) {
        if (exe === entry.executable) programMatches = true;
        else {
          real ??= realpathOrSelf(exe);
          programMatches = entry.real !== undefined && real === entry.real;
        }
      } else {
        programMatches =
          path.basename(exe) === entry.executable &&
          binding.path.split(":").includes(path.dirname(exe));
      }
      if (programMatches && matchArguments(entry.argv, inv.argv.slice(1))) return true;
    }
    return false;
  }
}

function realpathOrSelf(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

/**
 * Matches arguments against `*` / `**` / exact patterns (`undefined`: anything).
 *
 * @example
 * ```ts
 * matchArguments(["log", "-n", "*"], ["log", "-n", "5"]); // true
 * matchArguments(["status", "**"], ["status"]); // true
 * matchArguments(["status"], ["status", "--short"]); // false
 * ```
 */
export function matchArguments(
  patterns: readonly string[] | undefined,
  args: readonly string[],
): boolean {
  if (patterns === undefined) return true;
  for (let i = 0; i < patterns.length; i++) {
    const p = patterns[i]!;
    if (p === "**") return true;
    if (i >= args.length) return false;
    if (p === "*") continue;
    const literal = p.startsWith("\\") ? p.slice(1) : p;
    if (args[i] !== literal) return false;
  }
  return args.length === patterns.length;
}
