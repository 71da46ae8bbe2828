import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BlockedEnvError,
  bindCommand,
  describeBinding,
  ExecAllowlist,
  type ExecBinding,
  ExecRefusedError,
  InvalidArgumentError,
} from "./fixtures/exec/api.js";
import { tempRoot } from "./fixtures/exec/support.js";

const root = tempRoot();
afterAll(() => root.cleanup());
const cwd = root.dir;

const bind = (command: string, extra: Partial<Parameters<typeof bindCommand>[1]> = {}) =>
  bindCommand(command, { cwd, ...extra });
const argvOf = (b: ExecBinding) => b.invocations.map((i) => i.argv);

function failure(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

describe("bindCommand", () => {
  it("binds every spelling of the same command to the same key", () => {
    const key = bind("ls -la /tmp").key;
    for (const same of [
      "ls -la /tmp",
      "'ls' \"-la\" /tmp",
      "l's' -l'a' '/tmp'",
      "ls \\\n-la /tmp",
      "ls   -la\t/tmp  # a comment",
      "ls -la /tmp;",
      "ls -la /tmp\n",
    ]) {
      expect(bind(same).key, same).toBe(key);
    }
  });

  it("gives a different key to any change of structure, redirection, cwd, host, shell or env", () => {
    const keys = [
      bind("true && false"),
      bind("true || false"),
      bind("true; false"),
      bind("true | false"),
      bind("true & false"),
      bind("! true; false"),
      bind("(true; false)"),
      bind("true; false > /dev/null"),
      bind("true; false 2>&1"),
      bind("true; false", { cwd: "/" }),
      bind("true; false", { host: "sandbox:bubblewrap" }),
      bind("true; false", { shell: "/bin/bash" }),
      bind("true; false", { env: { CI: "1" } }),
      bind("true; false", { env: { CI: "2" } }),
    ].map((b) => b.key);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("resolves programs through the host's search path, not this process's PATH", () => {
    const bin = path.join(cwd, "bin");
    mkdirSync(bin);
    writeFileSync(path.join(bin, "only-here"), "#!/bin/sh\necho hi\n");
    chmodSync(path.join(bin, "only-here"), 0o755);
    expect(bind("only-here").invocations[0]).toMatchObject({ kind: "missing", executable: null });
    const found = bind("only-here", { path: `${bin}:/usr/bin` }).invocations[0];
    expect(found).toMatchObject({ kind: "external", executable: path.join(bin, "only-here") });
    expect(bind("./bin/only-here").invocations[0]).toMatchObject({
      kind: "external",
      executable: path.join(bin, "only-here"),
    });
    expect(bind("cd /; echo x").invocations.map((i) => i.kind)).toEqual(["builtin", "builtin"]);
  });

  it("runs a static command as its canonical form, with each looked-up program's resolved path", () => {
    const b = bind("ls  -la 'a b' | wc -l");
    expect(b.static).toBe(true);
    expect(b.script).toBe("/usr/bin/ls -la 'a b' | /usr/bin/wc -l\n");
  });

  it("runs a dynamic command exactly as written and says why it is dynamic", () => {
    const b = bind("echo $HOME *.txt ~/x {a,b} $(date) $((1+2)) `id`");
    expect(b.static).toBe(false);
    expect(b.script).toBe(b.command);
    expect(new Set(b.dynamic.map((d) => d.kind))).toEqual(
      new Set([
        "parameter-expansion",
        "glob",
        "tilde",
        "brace-expansion",
        "command-substitution",
        "arithmetic-expansion",
      ]),
    );
  });

  it.each([
    [
      "env",
      "env -i -- A=1 ls -a",
      [
        ["env", "-i", "--", "A=1", "ls", "-a"],
        ["ls", "-a"],
      ],
      ["env"],
    ],
    ["nice", "nice -n 5 ls", [["nice", "-n", "5", "ls"], ["ls"]], ["nice"]],
    ["nohup", "nohup ls", [["nohup", "ls"], ["ls"]], ["nohup"]],
    [
      "timeout",
      "timeout -s KILL 5 ls",
      [["timeout", "-s", "KILL", "5", "ls"], ["ls"]],
      ["timeout"],
    ],
    ["stdbuf", "stdbuf -oL ls", [["stdbuf", "-oL", "ls"], ["ls"]], ["stdbuf"]],
    ["setsid", "setsid -w ls", [["setsid", "-w", "ls"], ["ls"]], ["setsid"]],
    ["sudo", "sudo -u bob ls", [["sudo", "-u", "bob", "ls"], ["ls"]], ["sudo"]],
    ["doas", "doas ls", [["doas", "ls"], ["ls"]], ["doas"]],
    ["command", "command ls", [["command", "ls"], ["ls"]], ["command"]],
    ["exec", "exec ls", [["exec", "ls"], ["ls"]], ["exec"]],
    ["time", "time -p ls", [["time", "-p", "ls"], ["ls"]], ["time"]],
    ["busybox", "busybox ls", [["busybox", "ls"], ["ls"]], ["busybox"]],
    ["sh -c", "sh -c 'ls; id'", [["sh", "-c", "ls; id"], ["ls"], ["id"]], ["sh -c"]],
    ["bash -ec", "bash -ec 'ls'", [["bash", "-ec", "ls"], ["ls"]], ["bash -c"]],
    ["eval", "eval ls '&&' id", [["eval", "ls", "&&", "id"], ["ls"], ["id"]], ["eval"]],
    ["trap", "trap 'ls' EXIT", [["trap", "ls", "EXIT"], ["ls"]], ["trap"]],
    [
      "find -exec",
      "find . -exec ls ';'",
      [["find", ".", "-exec", "ls", ";"], ["ls"]],
      ["find -exec"],
    ],
    [
      "nested",
      "nice env sh -c 'sudo ls'",
      [
        ["nice", "env", "sh", "-c", "sudo ls"],
        ["env", "sh", "-c", "sudo ls"],
        ["sh", "-c", "sudo ls"],
        ["sudo", "ls"],
        ["ls"],
      ],
      ["nice", "env", "sh -c", "sudo"],
    ],
  ])("unwraps %s and lists the command it runs", (_name, command, expected, via) => {
    const b = bind(command);
    expect(argvOf(b)).toEqual(expected);
    expect(b.invocations.at(-1)!.via).toEqual(via);
  });

  it.each([
    ["xargs", "xargs rm", "wrapper"],
    ["find -exec {}", "find . -exec rm {} +", "wrapper"],
    ["git -c", "git -c core.pager=id log", "git-config"],
    ["git --config-env", "git --config-env=core.pager=X log", "git-config"],
    ["a possible git alias", "git yolo", "git-config"],
    ["git rebase --exec", "git rebase --exec id main", "wrapper"],
    ["git submodule foreach", "git submodule foreach id", "wrapper"],
    ["a shell reading stdin", "echo id | sh", "shell-stdin"],
    ["a login shell", "bash -lc ls", "wrapper"],
    ["zsh", "zsh -c ls", "wrapper"],
    ["strace", "strace ls", "wrapper"],
    ["su -c", "su -c ls root", "wrapper"],
    ["sudo -s", "sudo -s ls", "wrapper"],
    ["env -S", "env -S 'ls -a'", "wrapper"],
    ["an unknown wrapper option", "nice --frobnicate ls", "wrapper"],
    ["source", ". ./script.sh", "source"],
    ["alias", "alias ls=id", "alias"],
    ["hash", "hash -p /tmp/x ls", "builtin"],
    ["a dynamic eval", 'eval "$x"', "eval"],
    ["a function", "ls() { id; }", "function-definition"],
    ["a computed command name", "$cmd -a", "dynamic-command"],
    ["a relative program after cd", "cd /tmp && ./run", "cwd-change"],
    ["an expanding here-document", "cat <<E\n$HOME\nE", "here-document-expansion"],
  ])("marks %s as dynamic", (_name, command, kind) => {
    const b = bind(command);
    expect(b.static).toBe(false);
    expect(b.dynamic.map((d) => d.kind)).toContain(kind);
  });

  it.each([
    ["a prefix assignment", "LD_PRELOAD=/tmp/x.so ls"],
    ["a standalone assignment", "PATH=/tmp; ls"],
    ["export", "export NODE_OPTIONS=--require=/tmp/x.js"],
    ["readonly", "readonly BASH_ENV=/tmp/x"],
    ["declare -x", "declare -x PYTHONPATH=/tmp"],
    ["local", "f() { local IFS=/; }"],
    ["unset", "unset HOME"],
    ["read", "read PATH"],
    ["getopts", "getopts ab IFS"],
    ["printf -v", "printf -v PATH %s /tmp"],
    ["a for loop variable", "for LD_PRELOAD in /tmp/x.so; do ls; done"],
    ["a default-assigning expansion", "echo ${PATH:=/tmp}"],
    ["env NAME=VALUE", "env DYLD_INSERT_LIBRARIES=/tmp/x ls"],
    ["env -u", "env -u PATH ls"],
    ["sudo NAME=VALUE", "sudo PERL5LIB=/tmp perl x"],
    ["an assignment inside sh -c", "sh -c 'RUBYLIB=/tmp ruby x'"],
    ["an assignment inside $(...)", "echo $(GIT_SSH_COMMAND=id git fetch)"],
  ])("refuses a blocked variable set through %s", (_name, command) => {
    const error = failure(() => bind(command));
    expect(BlockedEnvError.isInstance(error)).toBe(true);
  });

  it("refuses a blocked variable supplied as the env option", () => {
    const error = failure(() => bind("ls", { env: { LD_LIBRARY_PATH: "/tmp" } }));
    expect(error).toMatchObject({ code: "EXEC_ENV_BLOCKED", names: ["LD_LIBRARY_PATH"] });
  });

  it("refuses non-ASCII command names, which can imitate another program", () => {
    for (const command of ["l\u0455 -a", "sh -c 'ｌｓ'", "\u0440m -rf x"]) {
      const error = failure(() => bind(command));
      expect(error, command).toMatchObject({ code: "EXEC_REFUSED", reason: "forbidden-character" });
    }
  });

  it("refuses an empty command and a syntax error inside a wrapped string", () => {
    expect(failure(() => bind("  # nothing"))).toMatchObject({ reason: "empty" });
    expect(failure(() => bind("sh -c 'echo \"'"))).toMatchObject({ reason: "syntax" });
    expect(failure(() => bind("ls", { cwd: "relative" }))).toBeInstanceOf(InvalidArgumentError);
  });

  it("records files written by redirections and wrapper options", () => {
    expect(bind("ls > a 2>>b <c >/dev/null; time -o d ls; find . -fprint e").writes).toEqual([
      "a",
      "b",
      "d",
      "e",
    ]);
  });

  it("describes a binding for the person approving it, escaping look-alike characters", () => {
    const text = describeBinding(bind("sudo ls -\u0430 > out", { env: { CI: "1" } }));
    expect(text).toContain("/usr/bin/ls '-\\u{430}'");
    expect(text).toContain("[via sudo]");
    expect(text).toContain("writes: out");
    expect(text).toContain("env: CI");
  });
});

describe("ExecAllowlist", () => {
  const allowlist = new ExecAllowlist([
    { executable: "git", argv: ["status", "**"] },
    { executable: "git", argv: ["log", "-n", "*"] },
    { executable: "/usr/bin/ls" },
    { executable: "nice" },
    { executable: "cat", argv: ["\\*"] },
  ]);

  it.each([
    "git status",
    "git status --short .",
    "git log -n 5",
    "ls -la",
    "/usr/bin/ls",
    "cd /tmp && ls",
    "nice ls",
    "git status | ls",
    "ls > /dev/null",
    "cat '*'",
  ])("allows %j", (command) => {
    expect(allowlist.explain(bind(command))).toEqual({ allowed: true, reasons: [] });
  });

  it.each([
    ["another subcommand", "git push"],
    ["an argument count the pattern does not allow", "git log -n 5 --all"],
    ["an unlisted program in a chain", "git status; rm -rf x"],
    ["an unlisted program inside an allowed wrapper", "nice rm -rf x"],
    ["an unlisted program inside sh -c", "sh -c 'ls'"],
    ["a substitution", "ls $(id)"],
    ["a glob", "ls *"],
    ["a write to a file", "ls > out"],
    ["a variable assignment", "A=1 ls"],
    ["a builtin that is not safe", "kill 1"],
    ["an argument where the pattern wants a literal star", "cat x"],
  ])("does not allow %s", (_name, command) => {
    const verdict = allowlist.explain(bind(command));
    expect(verdict.allowed).toBe(false);
    expect(verdict.reasons.length).toBeGreaterThan(0);
  });

  it("does not allow a command with caller-supplied environment variables", () => {
    expect(allowlist.allows(bind("ls", { env: { CI: "1" } }))).toBe(false);
  });

  it("matches an absolute entry through symlinks, and a bare name only in the search path", () => {
    const link = path.join(cwd, "ls-link");
    symlinkSync("/usr/bin/ls", link);
    const byPath = new ExecAllowlist([{ executable: "/usr/bin/ls" }]);
    expect(byPath.allows(bind("./ls-link"))).toBe(true);
    const byName = new ExecAllowlist([{ executable: "ls-link" }]);
    expect(byName.allows(bind("./ls-link"))).toBe(false);
    expect(byName.allows(bind("ls-link", { path: `${cwd}:/usr/bin` }))).toBe(true);
  });

  it("rejects malformed entries", () => {
    expect(() => new ExecAllowlist([{ executable: "" }])).toThrow(InvalidArgumentError);
    expect(() => new ExecAllowlist([{ executable: "bin/git" }])).toThrow(InvalidArgumentError);
    expect(() => new ExecAllowlist([{ executable: "git", argv: ["**", "x"] }])).toThrow(
      InvalidArgumentError,
    );
  });

  it("refusals are typed: ExecRefusedError for the command, never a plain Error", () => {
    const error = failure(() => bind("ls 'unterminated"));
    expect(ExecRefusedError.isInstance(error)).toBe(true);
  });
});
