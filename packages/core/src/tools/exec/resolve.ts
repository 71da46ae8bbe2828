/**
 * How a command name becomes a program, the way `sh` does it: a name with a `/` is a path
 * (relative to the working directory); otherwise a shell builtin wins; otherwise the first
 * executable regular file of that name in the search path.
 */
import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";

/**
 * Names the shell runs itself instead of searching `PATH` (the builtins of `dash` and
 * `bash` that matter for analysis; `time` is a bash keyword but an ordinary program to
 * `dash`, so it is not here).
 */
export const SHELL_BUILTINS: ReadonlySet<string> = new Set([
  ".",
  ":",
  "[",
  "alias",
  "bg",
  "break",
  "builtin",
  "cd",
  "command",
  "continue",
  "declare",
  "disown",
  "echo",
  "enable",
  "eval",
  "exec",
  "exit",
  "export",
  "false",
  "fc",
  "fg",
  "getopts",
  "hash",
  "jobs",
  "kill",
  "let",
  "local",
  "mapfile",
  "popd",
  "printf",
  "pushd",
  "pwd",
  "read",
  "readarray",
  "readonly",
  "return",
  "set",
  "shift",
  "shopt",
  "source",
  "test",
  "times",
  "trap",
  "true",
  "type",
  "typeset",
  "ulimit",
  "umask",
  "unalias",
  "unset",
  "wait",
]);

/**
 * What a command name resolved to: a program (`external`, with its absolute path), a shell
 * `builtin`, nothing (`missing`: the shell will report "not found"), or `unresolved` when the
 * host runs commands somewhere this process cannot look (a container image, a remote node).
 */
export interface ResolvedCommand {
  kind: "external" | "builtin" | "missing" | "unresolved";
  executable: string | null;
}

/**
 * Looks a program up on this machine; returns its absolute path, `null` when there is none,
 * or `undefined` when the host cannot resolve locally. Hosts supply one to the binding.
 */
export type ExecutableResolver = (name: string, cwd: string) => string | null | undefined;

/**
 * Resolves a command name like `sh` would, with the given search path.
 *
 * @example
 * ```ts
 * resolveCommand("git", { cwd: "/repo", path: "/usr/bin:/bin" });
 * // { kind: "external", executable: "/usr/bin/git" }
 * resolveCommand("cd", { cwd: "/repo", path: "/usr/bin" }); // { kind: "builtin", executable: null }
 * ```
 */
export function resolveCommand(
  name: string,
  options: { cwd: string; path: string; resolver?: ExecutableResolver },
): ResolvedCommand {
  if (!name.includes("/") && SHELL_BUILTINS.has(name)) return { kind: "builtin", executable: null };
  const found = (options.resolver ?? ((n, cwd) => findExecutable(n, cwd, options.path)))(
    name,
    options.cwd,
  );
  if (found === undefined) return { kind: "unresolved", executable: null };
  if (found === null) return { kind: "missing", executable: null };
  return { kind: "external", executable: found };
}

/**
 * Finds a program on this machine: a path with a `/` is taken relative to `cwd`; a bare
 * name is searched in `searchPath` (absolute entries only). Returns `null` when not found.
 *
 * @example
 * ```ts
 * findExecutable("ls", "/tmp", "/usr/bin:/bin"); // "/usr/bin/ls"
 * ```
 */
export function findExecutable(name: string, cwd: string, searchPath: string): string | null {
  if (name === "") return null;
  if (name.includes("/")) {
    const full = path.resolve(cwd, name);
    return isExecutableFile(full) ? full : null;
  }
  for (const dir of searchPath.split(":")) {
    if (!dir.startsWith("/")) continue;
    const candidate = path.join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

/** True for an existing regular file (after symlinks) that this process may execute. */
export function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
