/**
 * Approval bound to the exact command that will run.
 *
 * `bindCommand` parses the command string ({@link parseShell}), walks every simple command
 * — in pipelines, lists, subshells, compound commands, `$(...)`, backticks, process
 * substitutions, here-documents, `sh -c` / `eval` / `trap` strings and wrapper commands —
 * resolves each program against the host's fixed search path, and folds all of it (program
 * paths, exact argv, structure, redirections, cwd, host, shell, caller env) into a SHA-256
 * `key`. Approving one binding approves that key only: a changed argument, an appended
 * `; rm`, a `$(...)`, a `|`, a newline, an `env`/`sh -c`/`busybox` wrapper or a program
 * that now resolves elsewhere all give another key.
 *
 * A static binding runs as its canonical re-serialization, so the shell cannot read it
 * differently. When a construct makes the outcome depend on run time (`$VAR`, globs,
 * substitutions used as words, `eval "$x"`, `xargs`, `git -c`, ...) the binding is marked
 * dynamic with the reasons: no allowlist entry can approve it, the person approving sees why,
 * and the command runs exactly as the string they approved. Constructs that cannot be read
 * safely at all are refused ({@link ExecRefusedError}); blocked environment variables set
 * anywhere in the command are refused ({@link BlockedEnvError}).
 *
 * @example
 * ```ts
 * const a = bindCommand("git status", { cwd: "/repo" });
 * const b = bindCommand("git status; rm -rf ~", { cwd: "/repo" });
 * a.key === b.key; // false
 * b.invocations.map((i) => i.argv); // [["git", "status"], ["rm", "-rf", "~"]]
 * b.dynamic; // [{ kind: "tilde", ... }]
 * ```
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { BlockedEnvError, ExecRefusedError, InvalidArgumentError } from "../../errors.js";
import type {
  ExecBinding,
  ExecDynamicKind,
  ExecDynamicReason,
  ExecInvocation,
} from "./binding-types.js";
import { checkEnv, checkSearchPath, DEFAULT_EXEC_PATH, isBlockedEnvName } from "./env.js";
import { type ExecutableResolver, type ResolvedCommand, resolveCommand } from "./resolve.js";
import {
  parseShell,
  type ShellCommand,
  type ShellList,
  type ShellRedirect,
  type ShellSimpleCommand,
  type ShellWord,
  type ShellWordPart,
} from "./shell-parse.js";
import { serializeShell } from "./shell-serialize.js";
import { analyseWrapper, type CommandArg, DynamicArg, type WrapperContext } from "./wrappers.js";

/** Options of {@link bindCommand}. */
export interface BindOptions {
  /** Absolute working directory the command starts in. */
  cwd: string;
  /** Host id, part of the key. Default `gateway`. */
  host?: string;
  /** Caller-supplied environment variables; blocked names throw {@link BlockedEnvError}. */
  env?: Readonly<Record<string, string>>;
  /**
   * The input the command will be given on standard input, if any. Part of the key, and
   * shown by {@link describeBinding}: the person approving sees what the command will read.
   */
  stdin?: string;
  /** Search path programs resolve against. Default {@link DEFAULT_EXEC_PATH}. */
  path?: string;
  /** Resolves programs on hosts that do not share this file system. */
  resolveExecutable?: ExecutableResolver;
  /** The shell that will run the command. Default `/bin/sh`. */
  shell?: string;
  /** More environment variable names to block. */
  extraBlockedEnv?: readonly string[];
  /** Longest accepted command. Default 65 536. */
  maxLength?: number;
}

const MAX_SCRIPT_DEPTH = 8;
const MAX_RUN_DEPTH = 32;
const WRITE_OPS = new Set([">", ">>", ">|", "<>"]);

/**
 * Parses, analyses and binds a command. See the module documentation.
 *
 * @throws ExecRefusedError when the command cannot be read safely (reason `syntax`,
 *   `unsupported-syntax`, `forbidden-character`, `too-complex` or `empty`).
 * @throws BlockedEnvError when a blocked variable is supplied or set by the command.
 * @throws InvalidArgumentError for a relative `cwd` or a bad search path.
 *
 * @example
 * ```ts
 * const binding = bindCommand("git status && ls -la", { cwd: "/srv/work" });
 * binding.static; // true: nothing in it is decided at run time
 * binding.key; // what an approval of this exact command binds to
 * describeBinding(binding); // "host gateway, cwd /srv/work\n  /usr/bin/git status\n  /usr/bin/ls -la"
 *
 * bindCommand("rm -rf $HOME/tmp", { cwd: "/srv/work" }).dynamic; // [{ kind: "parameter-expansion", ... }]
 * ```
 */
export function bindCommand(command: string, options: BindOptions): ExecBinding {
  if (typeof command !== "string") throw new InvalidArgumentError("command must be a string");
  if (options.stdin !== undefined && typeof options.stdin !== "string") {
    throw new InvalidArgumentError("stdin must be a string");
  }
  if (!path.isAbsolute(options.cwd)) {
    throw new InvalidArgumentError(`cwd must be absolute, got ${JSON.stringify(options.cwd)}`);
  }
  const extraBlocked = new Set((options.extraBlockedEnv ?? []).map((n) => n.toUpperCase()));
  const env = checkEnv(options.env, extraBlocked);
  const searchPath = checkSearchPath(options.path ?? DEFAULT_EXEC_PATH);
  const host = options.host ?? "gateway";
  const shell = options.shell ?? "/bin/sh";
  const tree = parseShell(command, { maxLength: options.maxLength });
  if (tree.items.length === 0) {
    throw new ExecRefusedError("empty", "the command is empty", command);
  }
  const analysis = new Analysis(command, {
    cwd: options.cwd,
    path: searchPath,
    resolver: options.resolveExecutable,
    extraBlocked,
    maxLength: options.maxLength,
  });
  analysis.list(tree, []);
  analysis.finish();
  const dynamic = analysis.dynamic;
  const isStatic = dynamic.length === 0;
  const script = isStatic ? serializeShell(tree, analysis.programs) : command;
  const sortedEnv = Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        v: 1,
        host,
        shell,
        cwd: options.cwd,
        path: searchPath,
        env: sortedEnv,
        script,
        run: analysis.invocations.map((i) => [i.kind, i.executable, i.argv, i.via]),
        // Only when given, so that a command without input keeps the key it always had.
        ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
      }),
    )
    .digest("hex");
  return {
    command,
    host,
    cwd: options.cwd,
    env,
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    path: searchPath,
    shell,
    invocations: analysis.invocations,
    dynamic,
    static: isStatic,
    writes: analysis.writes,
    assignments: [...analysis.assignments],
    script,
    key,
  };
}

interface AnalysisContext {
  cwd: string;
  path: string;
  resolver: ExecutableResolver | undefined;
  extraBlocked: ReadonlySet<string>;
  maxLength: number | undefined;
}

class Analysis {
  readonly invocations: ExecInvocation[] = [];
  readonly dynamic: ExecDynamicReason[] = [];
  readonly writes: string[] = [];
  readonly assignments = new Set<string>();
  /** Simple commands whose command name the serializer replaces with a resolved path. */
  readonly programs = new Map<ShellSimpleCommand, string>();
  #changesDirectory = false;
  readonly #relative: ExecInvocation[] = [];
  readonly #seen = new Set<string>();
  #scriptDepth = 0;
  #runDepth = 0;

  constructor(
    private readonly command: string,
    private readonly ctx: AnalysisContext,
  ) {}

  finish(): void {
    if (this.#changesDirectory && this.#relative.length > 0) {
      this.#dyn(
        "cwd-change",
        `${this.#relative[0]!.argv[0]} is a relative path, and the command changes directory before it may run`,
      );
    }
  }

  list(list: ShellList, via: readonly string[]): void {
    for (const item of list.items) {
      const andOr = item.command;
      for (const pipeline of [andOr.first, ...andOr.rest.map((r) => r.pipeline)]) {
        for (const command of pipeline.commands) this.#command(command, via);
      }
    }
  }

  #command(node: ShellCommand, via: readonly string[]): void {
    switch (node.type) {
      case "simple":
        this.#simple(node, via);
        return;
      case "subshell":
      case "group":
        this.list(node.body, via);
        break;
      case "if":
        for (const clause of node.clauses) {
          this.list(clause.condition, via);
          this.list(clause.body, via);
        }
        if (node.elseBody !== undefined) this.list(node.elseBody, via);
        break;
      case "while":
      case "until":
        this.list(node.condition, via);
        this.list(node.body, via);
        break;
      case "for":
        this.#assign(node.name, "for");
        for (const item of node.items ?? []) this.#word(item, via, "arg");
        this.list(node.body, via);
        break;
      case "case":
        this.#word(node.subject, via, "subject");
        for (const clause of node.clauses) {
          for (const p of clause.patterns) this.#word(p, via, "pattern");
          this.list(clause.body, via);
        }
        break;
      case "function":
        this.#dyn(
          "function-definition",
          `defines the function ${node.name}, which can stand in for any command`,
        );
        this.#command(node.body, [...via, `${node.name}()`]);
        return;
    }
    for (const r of node.redirects) this.#redirect(r, via);
  }

  #simple(node: ShellSimpleCommand, via: readonly string[]): void {
    for (const a of node.assignments) {
      this.#assign(a.name, "assignment");
      this.#word(a.value, via, "assignment");
    }
    for (const r of node.redirects) this.#redirect(r, via);
    if (node.words.length === 0) return;
    const args = node.words.map((w) => this.#word(w, via, "arg"));
    this.#run(args, via, node, undefined);
  }

  #redirect(r: ShellRedirect, via: readonly string[]): void {
    if (r.heredoc !== undefined) {
      if (!r.heredoc.quoted) {
        const before = this.dynamic.length;
        this.#word({ raw: r.heredoc.body, parts: r.heredoc.parts }, via, "heredoc");
        if (this.dynamic.length > before) {
          this.#dyn(
            "here-document-expansion",
            `the here-document "${r.heredoc.delimiter}" expands variables or commands`,
          );
        }
      }
      return;
    }
    const target = this.#word(r.target, via, "redirect");
    if (WRITE_OPS.has(r.op)) {
      const shown = typeof target === "string" ? target : target.raw;
      if (shown !== "/dev/null") this.writes.push(shown);
    }
  }

  /** Analyses a word: its static value, or a {@link DynamicArg} with the reasons recorded. */
  #word(
    word: ShellWord,
    via: readonly string[],
    role: "arg" | "assignment" | "redirect" | "pattern" | "subject" | "heredoc",
  ): CommandArg {
    let value = "";
    let dynamic = false;
    let shape = "";
    for (const part of word.parts) {
      if (part.type === "text") {
        value += part.value;
        shape += part.quoted ? "x".repeat(part.value.length) : part.value;
        continue;
      }
      dynamic = true;
      shape += "x";
      this.#expansion(part, via);
    }
    if (role === "arg" || role === "redirect" || role === "assignment" || role === "subject") {
      const first = word.parts[0];
      const leadingTilde = first?.type === "text" && !first.quoted && first.value.startsWith("~");
      const assignmentTilde = role === "assignment" && /(^|:)~/.test(shape);
      if (leadingTilde || assignmentTilde) {
        dynamic = true;
        this.#dyn("tilde", `${short(word.raw)} starts with ~, which expands to a home directory`);
      }
    }
    if (role === "arg" || role === "redirect") {
      if (/[*?]/.test(shape) || (/\[/.test(shape) && shape !== "[")) {
        dynamic = true;
        this.#dyn("glob", `${short(word.raw)} is a pattern the file system expands`);
      }
      if (/\{[^{}]*(,|\.\.)[^{}]*\}/.test(shape)) {
        dynamic = true;
        this.#dyn("brace-expansion", `${short(word.raw)} is expanded by bash but not by POSIX sh`);
      }
    }
    return dynamic ? new DynamicArg(word.raw) : value;
  }

  #expansion(part: Exclude<ShellWordPart, { type: "text" }>, via: readonly string[]): void {
    switch (part.type) {
      case "parameter": {
        const assigned = /^\$\{([A-Za-z_][A-Za-z0-9_]*):?=/.exec(part.raw);
        if (assigned !== null) this.#assign(assigned[1]!, part.raw);
        this.#dyn("parameter-expansion", `${short(part.raw)} is only known at run time`);
        for (const list of part.commands) this.list(list, [...via, "${...}"]);
        return;
      }
      case "command-substitution":
        this.#dyn(
          "command-substitution",
          `the output of ${short(part.raw)} becomes part of the command`,
        );
        this.list(part.body, [...via, part.backtick ? "`...`" : "$(...)"]);
        return;
      case "arithmetic":
        this.#dyn("arithmetic-expansion", `${short(part.raw)} is only known at run time`);
        for (const list of part.commands) this.list(list, [...via, "$((...))"]);
        return;
      case "process-substitution":
        this.#dyn(
          "process-substitution",
          `${short(part.raw)} runs a command and passes a file descriptor path`,
        );
        this.list(part.body, [...via, `${part.direction}(...)`]);
        return;
    }
  }

  #run(
    args: CommandArg[],
    via: readonly string[],
    node: ShellSimpleCommand | undefined,
    mode: { parent?: ResolvedCommand; builtinOnly?: boolean } | undefined,
  ): void {
    if (++this.#runDepth > MAX_RUN_DEPTH) {
      throw new ExecRefusedError(
        "too-complex",
        `commands wrap each other more than ${MAX_RUN_DEPTH} levels deep`,
        this.command,
      );
    }
    try {
      const argv = args.map((a) => (typeof a === "string" ? a : a.raw));
      const dynamicArgs = args.flatMap((a, i) => (typeof a === "string" ? [] : [i]));
      const first = args[0]!;
      if (typeof first !== "string") {
        this.invocations.push({
          argv,
          dynamicArgs,
          kind: "dynamic",
          executable: null,
          via: [...via],
        });
        this.#dyn(
          "dynamic-command",
          `the command name ${short(first.raw)} is only known at run time`,
        );
        return;
      }
      if (/[^\x20-\x7e]/.test(first) || first === "") {
        throw new ExecRefusedError(
          "forbidden-character",
          `the command name ${JSON.stringify(first)} is empty or contains non-ASCII characters, which can imitate another command`,
          this.command,
        );
      }
      let resolved: ResolvedCommand;
      if (mode?.parent !== undefined) resolved = mode.parent;
      else if (mode?.builtinOnly) {
        resolved = resolveCommand(first, { cwd: this.ctx.cwd, path: this.ctx.path });
        if (resolved.kind !== "builtin") resolved = { kind: "missing", executable: null };
      } else {
        resolved = resolveCommand(first, {
          cwd: this.ctx.cwd,
          path: this.ctx.path,
          resolver: this.ctx.resolver,
        });
      }
      const invocation: ExecInvocation = {
        argv,
        dynamicArgs,
        kind: resolved.kind,
        executable: resolved.executable,
        via: [...via],
      };
      this.invocations.push(invocation);
      if (node !== undefined && resolved.kind === "external" && !first.includes("/")) {
        this.programs.set(node, resolved.executable!);
      }
      if (first.includes("/") && !first.startsWith("/")) this.#relative.push(invocation);
      const isBuiltin = resolved.kind === "builtin" && mode?.parent === undefined;
      const name = isBuiltin || mode?.parent !== undefined ? first : path.posix.basename(first);
      analyseWrapper(
        name,
        isBuiltin ? "builtin" : "program",
        args,
        this.#wrapperContext(via, resolved),
      );
    } finally {
      this.#runDepth--;
    }
  }

  #wrapperContext(via: readonly string[], resolved: ResolvedCommand): WrapperContext {
    return {
      run: (args, wrapper, options) =>
        this.#run(args, [...via, wrapper], undefined, {
          parent: options?.sameExecutable ? resolved : undefined,
          builtinOnly: wrapper === "builtin",
        }),
      script: (source, wrapper) => {
        if (typeof source === "string") this.#script(source, [...via, wrapper]);
        else
          this.#dyn(
            "wrapper",
            `${wrapper} runs the string ${short(source.raw)}, computed at run time`,
          );
      },
      dynamic: (kind, detail) => this.#dyn(kind, detail),
      assign: (name, where) => this.#assign(name, where),
      write: (target) => {
        this.writes.push(typeof target === "string" ? target : target.raw);
      },
      changesDirectory: () => {
        this.#changesDirectory = true;
      },
    };
  }

  #script(source: string, via: readonly string[]): void {
    if (++this.#scriptDepth > MAX_SCRIPT_DEPTH) {
      throw new ExecRefusedError(
        "too-complex",
        `shell strings nest more than ${MAX_SCRIPT_DEPTH} levels deep`,
        this.command,
      );
    }
    try {
      let tree: ShellList;
      try {
        tree = parseShell(source, { maxLength: this.ctx.maxLength });
      } catch (error) {
        if (ExecRefusedError.isInstance(error)) {
          throw new ExecRefusedError(
            error.reason,
            `in the string run by ${via.at(-1)}: ${error.message}`,
            this.command,
            { cause: error },
          );
        }
        throw error;
      }
      this.list(tree, via);
    } finally {
      this.#scriptDepth--;
    }
  }

  #assign(name: string, where: string): void {
    if (isBlockedEnvName(name, this.ctx.extraBlocked)) {
      throw new BlockedEnvError([name], `set or unset inside the command by ${where}`);
    }
    this.assignments.add(name);
  }

  #dyn(kind: ExecDynamicKind, detail: string): void {
    const id = `${kind}\u0000${detail}`;
    if (this.#seen.has(id)) return;
    this.#seen.add(id);
    this.dynamic.push({ kind, detail });
  }
}

function short(raw: string): string {
  const oneLine = raw.replaceAll("\n", "\\n");
  return `\`${oneLine.length > 60 ? `${oneLine.slice(0, 57)}...` : oneLine}\``;
}

/**
 * A multi-line description of a binding for the person approving it: every invocation with
 * its resolved program, the writes, the assignments, the caller's environment variables with
 * their values, the input given on stdin (its length and its first 4 000 characters) and why
 * it is dynamic. Characters
 * outside printable ASCII are shown as `\u{...}` escapes so that look-alikes stand out.
 *
 * @example
 * ```ts
 * console.log(describeBinding(bindCommand("ls -la | wc -l", { cwd: "/tmp" })));
 * // host gateway, cwd /tmp
 * //   /usr/bin/ls -la
 * //   /usr/bin/wc -l
 * ```
 */
export function describeBinding(binding: ExecBinding): string {
  const lines = [`host ${binding.host}, cwd ${visible(binding.cwd)}`];
  for (const inv of binding.invocations) {
    const program =
      inv.kind === "external"
        ? inv.executable!
        : inv.kind === "builtin"
          ? `builtin ${inv.argv[0]}`
          : `${inv.argv[0]} (${inv.kind})`;
    const args = inv.argv
      .slice(1)
      .map((a, i) => (inv.dynamicArgs.includes(i + 1) ? `<${visible(a)}>` : quoteForDisplay(a)));
    const via = inv.via.length > 0 ? `  [via ${inv.via.join(" > ")}]` : "";
    lines.push(`  ${visible(program)}${args.length > 0 ? ` ${args.join(" ")}` : ""}${via}`);
  }
  if (binding.writes.length > 0) lines.push(`writes: ${binding.writes.map(visible).join(", ")}`);
  if (binding.assignments.length > 0) lines.push(`sets: ${binding.assignments.join(", ")}`);
  // Values too: a name alone (`HTTPS_PROXY`, `GIT_DIR`) does not say what the command does.
  const env = Object.entries(binding.env).map(
    ([name, value]) => `${name}=${quoteForDisplay(value)}`,
  );
  if (env.length > 0) lines.push(`env: ${env.join(" ")}`);
  if (binding.stdin !== undefined) lines.push(describeStdin(binding.stdin));
  for (const reason of binding.dynamic) lines.push(`dynamic (${reason.kind}): ${reason.detail}`);
  return lines.join("\n");
}

/** The most characters of a command's input {@link describeBinding} shows. */
const STDIN_SHOWN_CHARS = 4_000;

/** One line: how long the input is, and its start, escaped (a newline shows as `\u{a}`). */
function describeStdin(stdin: string): string {
  const shown = Array.from(stdin.slice(0, STDIN_SHOWN_CHARS + 1)).slice(0, STDIN_SHOWN_CHARS);
  const head = shown.join("");
  const rest = stdin.length - head.length;
  const more = rest > 0 ? ` ... (${rest} more characters not shown)` : "";
  return `stdin (${stdin.length} characters): ${quoteForDisplay(head)}${more}`;
}

function visible(text: string): string {
  return text.replace(/[^\x20-\x7e]/gu, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`);
}

function quoteForDisplay(arg: string): string {
  const shown = visible(arg);
  return /^[A-Za-z0-9_/.,:=@%+-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", "'\\''")}'`;
}
