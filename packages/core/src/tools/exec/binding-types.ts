/**
 * What an approval of an exec command is bound to. See `bindCommand`.
 */

/**
 * Why a binding cannot be decided statically. Any of these means no allowlist entry applies
 * and only a fresh approval of the whole string (bound to its exact text) can let it run.
 */
export type ExecDynamicKind =
  /** `$VAR`, `${...}`, `$1`, `$@`... */
  | "parameter-expansion"
  /** `$(...)` or backticks whose output becomes part of a word. */
  | "command-substitution"
  | "arithmetic-expansion"
  /** bash's `<(...)` / `>(...)`. */
  | "process-substitution"
  /** Unquoted `*`, `?` or `[...]`: the file system decides the arguments. */
  | "glob"
  /** Unquoted `~`: the home directory decides the argument. */
  | "tilde"
  /** `{a,b}` / `{1..3}`: bash expands it, POSIX sh does not. */
  | "brace-expansion"
  /** The command name itself is computed. */
  | "dynamic-command"
  /** A function definition, which can shadow any command name. */
  | "function-definition"
  | "eval"
  /** `.` or `source`: runs the commands of a file. */
  | "source"
  | "alias"
  | "trap"
  /** A builtin that changes how later commands resolve or parse (`hash`, `shopt`, `enable`...). */
  | "builtin"
  /** A wrapper whose inner command is not fully known (`xargs`, `find -exec {}`, `strace`...). */
  | "wrapper"
  /** A shell that reads its commands from standard input. */
  | "shell-stdin"
  /** git configuration or aliases that can run commands. */
  | "git-config"
  /** A relative program path used after the command changes directory. */
  | "cwd-change"
  /** An unquoted here-document with expansions. */
  | "here-document-expansion";

/** One reason a binding is dynamic. */
export interface ExecDynamicReason {
  kind: ExecDynamicKind;
  /** A sentence for the person approving. */
  detail: string;
}

/**
 * One program or builtin the command would run: every simple command of every pipeline,
 * list, subshell, substitution and `sh -c` string, and the inner command of every wrapper.
 */
export interface ExecInvocation {
  /** The argv. Entries listed in `dynamicArgs` are source text, not values (`$HOME`). */
  argv: string[];
  /** Indexes of `argv` entries only known at run time. */
  dynamicArgs: number[];
  /**
   * `external`: a program, at `executable`. `builtin`: run by the shell itself. `missing`: not
   * found (the shell will say so). `unresolved`: the host resolves it elsewhere (a container,
   * a remote node). `dynamic`: the command name is computed.
   */
  kind: "external" | "builtin" | "missing" | "unresolved" | "dynamic";
  /** Absolute path of the program for `external`, otherwise null. */
  executable: string | null;
  /** What it runs inside, outermost first: `["sudo"]`, `["$(...)"]`, `["sh -c", "env"]`. */
  via: string[];
}

/**
 * A command bound to everything that decides what it does. Approving a binding approves its
 * `key` and nothing else: the same program paths, the same argv for every command, the same
 * structure (pipes, `&&`, redirections), working directory, host, shell and caller env.
 */
export interface ExecBinding {
  /** The command string as asked for. */
  command: string;
  /** The host id (`gateway`, `sandbox:bubblewrap`, ...). */
  host: string;
  /** Absolute working directory. */
  cwd: string;
  /** Caller-supplied environment variables (already checked against the blocklist). */
  env: Readonly<Record<string, string>>;
  /**
   * The input written to the command's standard input, when the call gives one. It is part
   * of the `key`: for a shell or an interpreter (`sh`, `python3 -`, `xargs rm`) it is what
   * runs, so approving `sh` with one input never covers another.
   */
  stdin?: string;
  /** The search path programs were resolved against. */
  path: string;
  /** The shell that runs `script`. */
  shell: string;
  invocations: ExecInvocation[];
  /** Why static analysis is incomplete; empty when the binding is static. */
  dynamic: ExecDynamicReason[];
  /** `dynamic.length === 0`. */
  static: boolean;
  /** Files written by redirections and options like `time -o` (source text when dynamic). */
  writes: string[];
  /** Variables the command sets or unsets itself (`A=1 cmd`, `export`, `env A=1`, `read A`). */
  assignments: string[];
  /**
   * What the shell will run. For a static binding: the command re-serialized from its parsed
   * form with every word single-quoted and every program the shell looks up replaced by its
   * resolved absolute path, so that the shell cannot read it differently from this analysis.
   * For a dynamic binding: the command exactly as given.
   */
  script: string;
  /** SHA-256 (hex) of everything above that decides behaviour. */
  key: string;
}
