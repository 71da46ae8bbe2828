/**
 * Commands that run other commands. An allowlist entry for `nice` or `env` must not let
 * `nice rm -rf ~` through, so the binding looks inside every wrapper it knows and lists the
 * inner command as an invocation of its own, which must be allowed (or approved) as well.
 *
 * Unwrapped: `env`, `nice`, `nohup`, `timeout`, `stdbuf`, `ionice`, `setsid`, `taskset`,
 * `time`, `sudo`, `doas`, `busybox` / `toybox` applets, `sh` / `bash` / `dash` / `ksh` ...
 * `-c` strings (parsed as shell), the builtins `exec`, `command`, `builtin`, `eval` and `trap`
 * (their strings parsed as shell), `xargs` and `find -exec` (their inner command listed; the
 * arguments they add at run time make the binding dynamic). `git -c`, `--config-env`,
 * `--exec-path=`, unknown git subcommands (possible aliases) and the git options that run a
 * helper (`--upload-pack`, `rebase --exec`, `submodule foreach`, ...) make it dynamic.
 * Wrappers whose grammar is not modelled (`strace`, `su -c`, `watch`, `flock`, `tmux`,
 * `zsh`, `fish`, ...) make the binding dynamic, as do wrapper options this file does not
 * understand. Dynamic means: no allowlist entry can approve it; only a fresh approval of the
 * whole string can.
 */
import type { ExecDynamicKind } from "./binding-types.js";

/** A command argument whose value is only known at run time; `raw` is its source text. */
export class DynamicArg {
  constructor(readonly raw: string) {}
}

/** A static argument (its exact value) or a {@link DynamicArg}. */
export type CommandArg = string | DynamicArg;

/** What a wrapper rule may report back to the binding. */
export interface WrapperContext {
  /** Analyses `args` as a command the wrapper runs. `sameExecutable` keeps the wrapper's program (busybox applets). */
  run(args: CommandArg[], via: string, options?: { sameExecutable?: boolean }): void;
  /** Parses and analyses a shell command string the wrapper runs. */
  script(source: CommandArg, via: string): void;
  /** Marks the binding dynamic. */
  dynamic(kind: ExecDynamicKind, detail: string): void;
  /** Records that the command sets or unsets variable `name` (refused if blocked). */
  assign(name: string, where: string): void;
  /** Records a file the command writes. */
  write(target: CommandArg): void;
  /** Records that the command changes its working directory. */
  changesDirectory(): void;
}

type Rule = (args: CommandArg[], ctx: WrapperContext, name: string) => void;

interface OptionGrammar {
  /** Short options that take a value: `-n 5` or `-n5`. */
  short?: string;
  /** Short options that take a value only when attached: `-e` or `-eEOF`. */
  shortOptional?: string;
  /** Short flags. */
  flags?: string;
  /** Long options that take a value: `--x=v` or `--x v`. */
  long?: readonly string[];
  /** Long options that take a value only with `=`. */
  longOptional?: readonly string[];
  /** Long flags. */
  longFlags?: readonly string[];
}

interface OptionScan {
  /** Index of the first operand. */
  index: number;
  options: Array<[string, string | undefined]>;
  /** An option that is not in the grammar. */
  unknown?: string;
  /** An option or its value is only known at run time. */
  dynamic?: boolean;
}

function scanOptions(args: CommandArg[], from: number, grammar: OptionGrammar): OptionScan {
  const options: OptionScan["options"] = [];
  let i = from;
  while (i < args.length) {
    const arg = args[i];
    if (typeof arg !== "string") return { index: i, options, dynamic: true };
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (grammar.long?.includes(name)) {
        if (eq !== -1) {
          options.push([name, arg.slice(eq + 1)]);
          i++;
          continue;
        }
        const value = args[i + 1];
        if (value === undefined) return { index: i + 1, options, unknown: arg };
        if (typeof value !== "string") return { index: i, options, dynamic: true };
        options.push([name, value]);
        i += 2;
        continue;
      }
      if (grammar.longOptional?.includes(name)) {
        options.push([name, eq === -1 ? undefined : arg.slice(eq + 1)]);
        i++;
        continue;
      }
      if (eq === -1 && grammar.longFlags?.includes(name)) {
        options.push([name, undefined]);
        i++;
        continue;
      }
      return { index: i, options, unknown: arg };
    }
    let consumedNext = false;
    for (let j = 1; j < arg.length; j++) {
      const c = arg[j]!;
      if (grammar.short?.includes(c)) {
        const rest = arg.slice(j + 1);
        if (rest !== "") {
          options.push([c, rest]);
        } else {
          const value = args[i + 1];
          if (value === undefined) return { index: i + 1, options, unknown: arg };
          if (typeof value !== "string") return { index: i, options, dynamic: true };
          options.push([c, value]);
          consumedNext = true;
        }
        break;
      }
      if (grammar.shortOptional?.includes(c)) {
        options.push([c, arg.slice(j + 1) || undefined]);
        break;
      }
      if (grammar.flags?.includes(c)) {
        options.push([c, undefined]);
        continue;
      }
      return { index: i, options, unknown: arg };
    }
    i += consumedNext ? 2 : 1;
  }
  return { index: i, options };
}

/** Reports an unusable option scan; returns true when the caller should stop. */
function unusable(scan: OptionScan, name: string, ctx: WrapperContext): boolean {
  if (scan.dynamic) {
    ctx.dynamic("wrapper", `${name}: its options are only known at run time`);
    return true;
  }
  if (scan.unknown !== undefined) {
    ctx.dynamic("wrapper", `${name}: the option ${scan.unknown} is not understood by the binding`);
    return true;
  }
  return false;
}

function has(scan: OptionScan, ...names: string[]): boolean {
  return scan.options.some(([n]) => names.includes(n));
}

/** Runs the operands after the options (and `skip` positional operands) as a command. */
function prefixRunner(grammar: OptionGrammar, skip = 0): Rule {
  return (args, ctx, name) => {
    const scan = scanOptions(args, 1, grammar);
    if (unusable(scan, name, ctx)) return;
    const rest = args.slice(scan.index + skip);
    if (rest.length > 0) ctx.run(rest, name);
  };
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ASSIGNMENT = /^([A-Za-z_][A-Za-z0-9_]*)=/;

const env: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, {
    short: "uCSP",
    flags: "i0v",
    long: ["unset", "chdir", "split-string"],
    longFlags: ["ignore-environment", "null", "debug", "list-signal-handling"],
    longOptional: ["default-signal", "ignore-signal", "block-signal"],
  });
  if (unusable(scan, name, ctx)) return;
  for (const [option, value] of scan.options) {
    if ((option === "u" || option === "unset") && value !== undefined) ctx.assign(value, "env -u");
    if (option === "C" || option === "chdir") ctx.changesDirectory();
    if (option === "S" || option === "split-string") {
      ctx.dynamic("wrapper", "env -S splits a string into a command at run time");
      return;
    }
    if (option === "P") {
      ctx.dynamic("wrapper", "env -P searches another PATH");
      return;
    }
  }
  let i = scan.index;
  if (args[i] === "-") i++;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    const text = typeof arg === "string" ? arg : arg.raw;
    const eq = text.indexOf("=");
    if (eq <= 0) break;
    const variable = text.slice(0, eq);
    if (typeof arg !== "string" && !NAME.test(variable)) break;
    ctx.assign(variable, "env");
  }
  const rest = args.slice(i);
  if (rest.length > 0) ctx.run(rest, name);
};

const sudo: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, {
    short: "ugphCDrtUTR",
    flags: "nEHkKPSbABisleVv",
    long: [
      "user",
      "group",
      "host",
      "prompt",
      "close-from",
      "chdir",
      "role",
      "type",
      "other-user",
      "command-timeout",
      "chroot",
    ],
    longOptional: ["preserve-env"],
    longFlags: [
      "non-interactive",
      "set-home",
      "reset-timestamp",
      "remove-timestamp",
      "preserve-groups",
      "stdin",
      "background",
      "askpass",
      "bell",
      "login",
      "shell",
      "edit",
      "list",
      "validate",
      "version",
      "help",
    ],
  });
  if (unusable(scan, name, ctx)) return;
  if (has(scan, "l", "v", "V", "K", "list", "validate", "version", "help")) return;
  if (has(scan, "e", "edit")) {
    ctx.dynamic("wrapper", `${name} -e runs an editor`);
    return;
  }
  if (has(scan, "R", "chroot")) {
    ctx.dynamic("wrapper", `${name} --chroot runs the command under another root directory`);
    return;
  }
  if (has(scan, "D", "chdir")) ctx.changesDirectory();
  let i = scan.index;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    const match = typeof arg === "string" ? ASSIGNMENT.exec(arg) : ASSIGNMENT.exec(arg.raw);
    if (match === null) break;
    ctx.assign(match[1]!, name);
  }
  const rest = args.slice(i);
  if (has(scan, "i", "s", "login", "shell")) {
    ctx.dynamic("wrapper", `${name} -i/-s runs the command through the target user's shell`);
    return;
  }
  if (rest.length > 0) ctx.run(rest, name);
};

const doas: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, { short: "uC", flags: "nsL" });
  if (unusable(scan, name, ctx)) return;
  if (has(scan, "C", "L")) return;
  if (has(scan, "s")) {
    ctx.dynamic("wrapper", `${name} -s starts a shell`);
    return;
  }
  const rest = args.slice(scan.index);
  if (rest.length > 0) ctx.run(rest, name);
};

const time: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, {
    short: "fo",
    flags: "pvqa",
    long: ["format", "output"],
    longFlags: ["append", "verbose", "quiet", "portability"],
  });
  if (unusable(scan, name, ctx)) return;
  for (const [option, value] of scan.options) {
    if ((option === "o" || option === "output") && value !== undefined) ctx.write(value);
  }
  const rest = args.slice(scan.index);
  if (rest.length > 0) ctx.run(rest, name);
};

const xargs: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, {
    short: "adEILnPs",
    shortOptional: "eil",
    flags: "0oprtx",
    long: [
      "arg-file",
      "delimiter",
      "eof",
      "replace",
      "max-lines",
      "max-args",
      "max-procs",
      "max-chars",
      "process-slot-var",
    ],
    longFlags: [
      "null",
      "open-tty",
      "interactive",
      "no-run-if-empty",
      "verbose",
      "exit",
      "show-limits",
    ],
  });
  if (unusable(scan, name, ctx)) return;
  const inner = args.slice(scan.index);
  ctx.run(
    [...(inner.length > 0 ? inner : ["echo"]), new DynamicArg("<arguments read from stdin>")],
    name,
  );
  ctx.dynamic("wrapper", `${name} adds arguments read from standard input to the command`);
};

const find: Rule = (args, ctx, name) => {
  for (let i = 1; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-exec" || arg === "-execdir" || arg === "-ok" || arg === "-okdir") {
      let j = i + 1;
      while (j < args.length) {
        const a = args[j];
        if (a === ";" || (a === "+" && args[j - 1] === "{}")) break;
        j++;
      }
      let substituted = false;
      const inner = args.slice(i + 1, j).map((a) => {
        if (typeof a === "string" && a.includes("{}")) {
          substituted = true;
          return new DynamicArg(a);
        }
        return a;
      });
      if (inner.length > 0) ctx.run(inner, `${name} ${arg}`);
      if (substituted)
        ctx.dynamic("wrapper", `${name} ${arg} substitutes each path it finds for {}`);
      i = j;
    } else if (arg === "-fprint" || arg === "-fprint0" || arg === "-fls" || arg === "-fprintf") {
      const target = args[i + 1];
      if (target !== undefined) ctx.write(target);
      i += arg === "-fprintf" ? 2 : 1;
    }
  }
};

/** Built-in git commands (porcelain and plumbing); any other name may be an alias. */
const GIT_COMMANDS = new Set(
  (
    "add am annotate apply archive bisect blame branch bundle cat-file check-attr check-ignore " +
    "check-mailmap check-ref-format checkout checkout-index cherry cherry-pick citool clean " +
    "clone column commit commit-graph commit-tree config count-objects describe diff " +
    "diff-files diff-index diff-tree difftool fast-export fast-import fetch fetch-pack " +
    "filter-branch fmt-merge-msg for-each-ref for-each-repo format-patch fsck gc " +
    "get-tar-commit-id grep hash-object help index-pack init instaweb interpret-trailers " +
    "log ls-files ls-remote ls-tree mailinfo mailsplit maintenance merge merge-base " +
    "merge-file merge-tree mergetool mktag mktree multi-pack-index mv name-rev notes " +
    "pack-objects pack-refs patch-id prune prune-packed pull push range-diff read-tree " +
    "rebase reflog remote repack replace request-pull rerere reset restore rev-list " +
    "rev-parse revert rm send-email shortlog show show-branch show-index show-ref " +
    "sparse-checkout stash status stripspace submodule switch symbolic-ref tag " +
    "unpack-file unpack-objects update-index update-ref update-server-info var " +
    "verify-commit verify-pack verify-tag version whatchanged worktree write-tree"
  ).split(" "),
);

const git: Rule = (args, ctx, name) => {
  const scan = scanOptions(args, 1, {
    short: "Cc",
    flags: "pPvh",
    long: [
      "git-dir",
      "work-tree",
      "namespace",
      "super-prefix",
      "config-env",
      "list-cmds",
      "attr-source",
    ],
    longOptional: ["exec-path"],
    longFlags: [
      "paginate",
      "no-pager",
      "bare",
      "no-replace-objects",
      "literal-pathspecs",
      "glob-pathspecs",
      "noglob-pathspecs",
      "icase-pathspecs",
      "no-optional-locks",
      "no-lazy-fetch",
      "no-advice",
      "version",
      "help",
      "html-path",
      "man-path",
      "info-path",
    ],
  });
  if (unusable(scan, name, ctx)) return;
  if (has(scan, "c", "config-env")) {
    ctx.dynamic(
      "git-config",
      "git -c / --config-env set configuration that can run commands (core.pager, core.sshCommand, alias.x=!cmd, ...)",
    );
    return;
  }
  if (scan.options.some(([n, v]) => n === "exec-path" && v !== undefined)) {
    ctx.dynamic("git-config", "git --exec-path= changes where git finds its commands");
    return;
  }
  const sub = args[scan.index];
  if (sub === undefined) return;
  if (typeof sub !== "string") {
    ctx.dynamic("git-config", "the git subcommand is only known at run time");
    return;
  }
  if (!GIT_COMMANDS.has(sub)) {
    ctx.dynamic(
      "git-config",
      `"git ${sub}" is not a built-in git command and may be an alias from git configuration`,
    );
    return;
  }
  const rest = args.slice(scan.index + 1).filter((a): a is string => typeof a === "string");
  const runsHelper =
    sub === "filter-branch" ||
    (sub === "submodule" && rest.includes("foreach")) ||
    (sub === "bisect" && rest.includes("run")) ||
    ((sub === "rebase" || sub === "difftool" || sub === "mergetool") &&
      rest.some((a) => a === "-x" || a.startsWith("--exec") || a.startsWith("--extcmd"))) ||
    (["clone", "fetch", "pull", "ls-remote", "archive"].includes(sub) && rest.includes("-u")) ||
    rest.some(
      (a) =>
        a.startsWith("--upload-pack") || a.startsWith("--receive-pack") || a.startsWith("--exec="),
    );
  if (runsHelper) {
    ctx.dynamic("wrapper", `git ${sub} with these options runs a shell command or helper program`);
  }
};

const multiCall: Rule = (args, ctx, name) => {
  const applet = args[1];
  if (applet === undefined) return;
  if (typeof applet !== "string") {
    ctx.dynamic("wrapper", `the ${name} applet is only known at run time`);
    return;
  }
  if (applet.startsWith("-")) return;
  ctx.run(args.slice(1), name, { sameExecutable: true });
};

/** Shells whose `-c` strings are POSIX enough for this parser. */
const POSIX_SHELLS = new Set([
  "sh",
  "bash",
  "dash",
  "ash",
  "ksh",
  "mksh",
  "lksh",
  "pdksh",
  "hush",
  "yash",
  "posh",
  "rbash",
]);

const SHELL_FLAGS = "abefhkmnptuvxBCEHPT";

const shell: Rule = (args, ctx, name) => {
  let i = 1;
  let commandMode = false;
  let fromStdin = false;
  let startup: string | undefined;
  while (i < args.length) {
    const arg = args[i]!;
    if (typeof arg !== "string") {
      ctx.dynamic("wrapper", `${name}: its arguments are only known at run time`);
      return;
    }
    if (arg === "--" || arg === "-") {
      i++;
      break;
    }
    if (arg.startsWith("--")) {
      if (["--norc", "--noprofile", "--posix", "--noediting", "--restricted"].includes(arg)) {
        i++;
        continue;
      }
      if (arg === "--login") {
        startup = arg;
        i++;
        continue;
      }
      if (arg === "--rcfile" || arg === "--init-file") {
        startup = arg;
        i += 2;
        continue;
      }
      ctx.dynamic("wrapper", `${name}: the option ${arg} is not understood by the binding`);
      return;
    }
    if (arg.startsWith("-") || arg.startsWith("+")) {
      let extra = 0;
      for (const c of arg.slice(1)) {
        if (c === "c") commandMode = true;
        else if (c === "s") fromStdin = true;
        else if (c === "i" || c === "l") startup = `-${c}`;
        else if (c === "o") extra++;
        else if (c === "O") {
          ctx.dynamic("wrapper", `${name} -O changes how the shell reads commands`);
          return;
        } else if (!SHELL_FLAGS.includes(c)) {
          ctx.dynamic("wrapper", `${name}: the option -${c} is not understood by the binding`);
          return;
        }
      }
      i += 1 + extra;
      continue;
    }
    break;
  }
  if (startup !== undefined) {
    ctx.dynamic("wrapper", `${name} ${startup} runs the commands of its startup files`);
  }
  if (commandMode) {
    const source = args[i];
    if (source !== undefined) ctx.script(source, `${name} -c`);
    return;
  }
  if (fromStdin || i >= args.length) {
    ctx.dynamic("shell-stdin", `${name} reads the commands it runs from standard input`);
  }
};

const opaque: Rule = (_args, ctx, name) => {
  ctx.dynamic("wrapper", `${name} runs commands in a way the binding does not analyse`);
};

/** Rules for programs found on PATH (by basename). */
const PROGRAM_RULES: Record<string, Rule> = {
  env,
  nice: (args, ctx, name) => {
    const from = typeof args[1] === "string" && /^-[0-9]+$/.test(args[1]) ? 2 : 1;
    const scan = scanOptions(args, from, { short: "n", long: ["adjustment"] });
    if (unusable(scan, name, ctx)) return;
    const rest = args.slice(scan.index);
    if (rest.length > 0) ctx.run(rest, name);
  },
  nohup: prefixRunner({}),
  timeout: prefixRunner(
    {
      short: "sk",
      flags: "v",
      long: ["signal", "kill-after"],
      longFlags: ["preserve-status", "foreground", "verbose"],
    },
    1,
  ),
  stdbuf: prefixRunner({ short: "ioe", long: ["input", "output", "error"] }),
  ionice: (args, ctx, name) => {
    const scan = scanOptions(args, 1, {
      short: "cnpPu",
      flags: "t",
      long: ["class", "classdata", "pid", "pgid", "uid"],
      longFlags: ["ignore"],
    });
    if (unusable(scan, name, ctx)) return;
    if (has(scan, "p", "P", "u", "pid", "pgid", "uid")) return;
    const rest = args.slice(scan.index);
    if (rest.length > 0) ctx.run(rest, name);
  },
  setsid: prefixRunner({ flags: "cfw", longFlags: ["ctty", "fork", "wait"] }),
  taskset: (args, ctx, name) => {
    const scan = scanOptions(args, 1, {
      flags: "acp",
      longFlags: ["all-tasks", "cpu-list", "pid"],
    });
    if (unusable(scan, name, ctx)) return;
    if (has(scan, "p", "pid")) return;
    const rest = args.slice(scan.index + 1);
    if (rest.length > 0) ctx.run(rest, name);
  },
  time,
  sudo,
  doas,
  xargs,
  find,
  git,
  busybox: multiCall,
  toybox: multiCall,
};
for (const name of POSIX_SHELLS) PROGRAM_RULES[name] = shell;
for (const name of [
  "zsh",
  "fish",
  "csh",
  "tcsh",
  "nu",
  "elvish",
  "xonsh",
  "pwsh",
  "strace",
  "ltrace",
  "valgrind",
  "fakeroot",
  "flock",
  "unshare",
  "nsenter",
  "chroot",
  "runuser",
  "su",
  "sg",
  "script",
  "watch",
  "tmux",
  "screen",
  "systemd-run",
  "firejail",
  "proot",
  "catchsegv",
  "chrt",
  "unbuffer",
  "parallel",
  "at",
  "batch",
  "pkexec",
  "gosu",
  "su-exec",
  "setpriv",
  "setarch",
  "prlimit",
  "numactl",
  "cgexec",
  "faketime",
  "torsocks",
  "proxychains",
  "proxychains4",
  "xvfb-run",
  "expect",
  "rlwrap",
  "entr",
  "dbus-run-session",
]) {
  PROGRAM_RULES[name] = opaque;
}

function checkNames(args: CommandArg[], ctx: WrapperContext, name: string): void {
  for (const arg of args.slice(1)) {
    if (typeof arg === "string") {
      if (arg.startsWith("-") || arg.startsWith("+")) continue;
      const variable = arg.split("=", 1)[0]!;
      if (NAME.test(variable)) ctx.assign(variable, name);
    } else {
      const match = ASSIGNMENT.exec(arg.raw) ?? /^([A-Za-z_][A-Za-z0-9_]*)$/.exec(arg.raw);
      if (match !== null) ctx.assign(match[1]!, name);
      else ctx.dynamic("builtin", `${name} with a variable name computed at run time`);
    }
  }
}

/** Rules for shell builtins (by name). */
const BUILTIN_RULES: Record<string, Rule> = {
  eval: (args, ctx, name) => {
    const rest = args.slice(1);
    if (rest.length === 0) return;
    if (rest.every((a): a is string => typeof a === "string")) ctx.script(rest.join(" "), name);
    else ctx.dynamic("eval", "eval runs a string computed at run time");
  },
  trap: (args, ctx, name) => {
    let rest = args.slice(1);
    if (rest[0] === "--") rest = rest.slice(1);
    const action = rest[0];
    if (action === undefined || rest.length < 2) return;
    if (
      typeof action === "string" &&
      (action === "-" || action === "" || /^[0-9]+$/.test(action))
    ) {
      return;
    }
    if (typeof action === "string" && (action === "-l" || action === "-p")) return;
    if (typeof action !== "string") ctx.dynamic("trap", "trap runs a string computed at run time");
    else ctx.script(action, name);
  },
  ".": (_args, ctx, name) => ctx.dynamic("source", `${name} runs the commands of a file`),
  source: (_args, ctx, name) => ctx.dynamic("source", `${name} runs the commands of a file`),
  alias: (args, ctx) => {
    if (args.slice(1).some((a) => typeof a !== "string" || a.includes("="))) {
      ctx.dynamic("alias", "alias definitions change how later commands are read");
    }
  },
  hash: (args, ctx) => {
    if (args.length > 1) ctx.dynamic("builtin", "hash can point a command name at another program");
  },
  enable: (_args, ctx) => ctx.dynamic("builtin", "enable can load builtins from a shared object"),
  shopt: (_args, ctx) => ctx.dynamic("builtin", "shopt changes how bash reads commands"),
  let: (_args, ctx) => ctx.dynamic("builtin", "let evaluates arithmetic that can assign variables"),
  fc: (_args, ctx) => ctx.dynamic("builtin", "fc re-runs commands from history"),
  export: checkNames,
  readonly: checkNames,
  local: checkNames,
  declare: checkNames,
  typeset: checkNames,
  unset: checkNames,
  read: (args, ctx, name) => {
    const scan = scanOptions(args, 1, { short: "dnNptua", flags: "rsei" });
    if (unusable(scan, name, ctx)) return;
    for (const [option, value] of scan.options)
      if (option === "a" && value) ctx.assign(value, name);
    checkNames([name, ...args.slice(scan.index)], ctx, name);
  },
  getopts: (args, ctx, name) => {
    const variable = args[2];
    if (typeof variable === "string") ctx.assign(variable, name);
    else if (variable !== undefined)
      ctx.dynamic("builtin", `${name} with a computed variable name`);
  },
  printf: (args, ctx, name) => {
    if (args[1] === "-v") {
      const variable = args[2];
      if (typeof variable === "string") ctx.assign(variable, `${name} -v`);
      else ctx.dynamic("builtin", `${name} -v with a computed variable name`);
    }
  },
  mapfile: (args, ctx, name) => {
    const scan = scanOptions(args, 1, { short: "dnOsuCc", flags: "t" });
    if (unusable(scan, name, ctx)) return;
    checkNames([name, ...args.slice(scan.index)], ctx, name);
  },
  cd: (_args, ctx) => ctx.changesDirectory(),
  pushd: (_args, ctx) => ctx.changesDirectory(),
  popd: (_args, ctx) => ctx.changesDirectory(),
  exec: (args, ctx, name) => {
    const first = args[1];
    if (first === undefined) return;
    if (typeof first === "string" && first.startsWith("-") && first !== "--") {
      ctx.dynamic("wrapper", `${name} ${first}: exec options are bash-only`);
      return;
    }
    const rest = args.slice(first === "--" ? 2 : 1);
    if (rest.length > 0) ctx.run(rest, name);
  },
  command: (args, ctx, name) => {
    const scan = scanOptions(args, 1, { flags: "pvV" });
    if (unusable(scan, name, ctx)) return;
    if (has(scan, "v", "V")) return;
    if (has(scan, "p")) {
      ctx.dynamic("wrapper", `${name} -p searches a default PATH instead of the host's`);
      return;
    }
    const rest = args.slice(scan.index);
    if (rest.length > 0) ctx.run(rest, name);
  },
  builtin: (args, ctx, name) => {
    const rest = args.slice(1);
    if (rest.length > 0) ctx.run(rest, name);
  },
};
BUILTIN_RULES.readarray = BUILTIN_RULES.mapfile!;

/**
 * Applies the wrapper rule for a command, if there is one. `args` is the whole argv;
 * `name` is the builtin name or the program's basename.
 */
export function analyseWrapper(
  name: string,
  kind: "builtin" | "program",
  args: CommandArg[],
  ctx: WrapperContext,
): void {
  const rule = kind === "builtin" ? BUILTIN_RULES[name] : PROGRAM_RULES[name];
  rule?.(args, ctx, name);
}
