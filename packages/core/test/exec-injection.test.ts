/**
 * Approval is bound to the exact command that runs. `ls -a` is approved with
 * `allow-always`; every variant below must either be refused outright or go back to the
 * approver as a new binding listing exactly the argv it would run — and, since the approver
 * then denies it, the payload (`touch pwned`) must never run.
 */
import { readdirSync } from "node:fs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  BackgroundProcessRegistry,
  createExecTool,
  type ExecApprovalDecision,
  type ExecBinding,
  GatewayHost,
} from "./fixtures/exec/api.js";
import { tempRoot, toolContext } from "./fixtures/exec/support.js";

const root = tempRoot();
const registry = new BackgroundProcessRegistry();
const asked: ExecBinding[] = [];
let answer: ExecApprovalDecision = "deny";
const exec = createExecTool({
  registry,
  hosts: { gateway: new GatewayHost({ roots: [root.dir] }) },
  approve: (binding) => {
    asked.push(binding);
    return answer;
  },
});
const context = toolContext();
let baseKey = "";

beforeAll(async () => {
  await registry.start();
  answer = "allow-always";
  const result = (await exec.execute({ command: "ls -a" }, context)) as { exitCode: number };
  expect(result.exitCode).toBe(0);
  expect(asked).toHaveLength(1);
  baseKey = asked[0]!.key;
  answer = "deny";
});

afterAll(async () => {
  await registry.stop();
  root.cleanup();
});

beforeEach(() => {
  asked.length = 0;
});

async function attempt(command: string): Promise<unknown> {
  try {
    await exec.execute({ command }, context);
  } catch (error) {
    return error;
  }
  throw new Error(`${JSON.stringify(command)} ran`);
}

type Expectation =
  | { refused: "EXEC_REFUSED" | "EXEC_ENV_BLOCKED" }
  | { asks: string[][]; dynamic?: boolean };

const P = ["touch", "pwned"];

const cases: Array<[string, string, Expectation]> = [
  ["a changed argument", "ls -al", { asks: [["ls", "-al"]] }],
  ["an added argument", "ls -a /", { asks: [["ls", "-a", "/"]] }],
  ["an appended `; touch`", "ls -a; touch pwned", { asks: [["ls", "-a"], P] }],
  ["`&&`", "ls -a && touch pwned", { asks: [["ls", "-a"], P] }],
  ["`||`", "ls -a || touch pwned", { asks: [["ls", "-a"], P] }],
  ["a pipe", "ls -a | touch pwned", { asks: [["ls", "-a"], P] }],
  ["`&`", "ls -a & touch pwned", { asks: [["ls", "-a"], P] }],
  ["a newline", "ls -a\ntouch pwned", { asks: [["ls", "-a"], P] }],
  ["a line continuation before `;`", "ls -a \\\n; touch pwned", { asks: [["ls", "-a"], P] }],
  ["a comment hiding nothing", "ls -a # fine\ntouch pwned", { asks: [["ls", "-a"], P] }],
  [
    "`$(...)`",
    "ls -a $(touch pwned)",
    { asks: [P, ["ls", "-a", "$(touch pwned)"]], dynamic: true },
  ],
  [
    "backquotes",
    "ls -a `touch pwned`",
    { asks: [P, ["ls", "-a", "`touch pwned`"]], dynamic: true },
  ],
  [
    "`$(...)` inside double quotes",
    'ls -a "$(touch pwned)"',
    { asks: [P, ["ls", "-a", '"$(touch pwned)"']], dynamic: true },
  ],
  [
    "nested substitutions",
    "ls -a $(echo $(touch pwned))",
    {
      asks: [P, ["echo", "$(touch pwned)"], ["ls", "-a", "$(echo $(touch pwned))"]],
      dynamic: true,
    },
  ],
  [
    "a substitution inside ${...}",
    "ls -a ${x:-$(touch pwned)}",
    { asks: [P, ["ls", "-a", "${x:-$(touch pwned)}"]], dynamic: true },
  ],
  [
    "a substitution inside arithmetic",
    "ls -a $(( $(touch pwned) ))",
    { asks: [P, ["ls", "-a", "$(( $(touch pwned) ))"]], dynamic: true },
  ],
  [
    "a process substitution",
    "ls -a <(touch pwned)",
    { asks: [P, ["ls", "-a", "<(touch pwned)"]], dynamic: true },
  ],
  [
    "a substitution inside a here-document",
    "ls -a <<EOF\n$(touch pwned)\nEOF",
    { asks: [P, ["ls", "-a"]], dynamic: true },
  ],
  ["a redirection to a file", "ls -a > pwned", { asks: [["ls", "-a"]] }],
  ["an appending redirection", "ls -a >> pwned", { asks: [["ls", "-a"]] }],
  [
    "`env X=1`",
    "env X=1 ls -a",
    {
      asks: [
        ["env", "X=1", "ls", "-a"],
        ["ls", "-a"],
      ],
    },
  ],
  ["`env` running the payload", "env touch pwned", { asks: [["env", ...P], P] }],
  [
    "`sh -c`",
    "sh -c 'ls -a; touch pwned'",
    { asks: [["sh", "-c", "ls -a; touch pwned"], ["ls", "-a"], P] },
  ],
  ["`bash -c`", 'bash -c "touch pwned"', { asks: [["bash", "-c", "touch pwned"], P] }],
  [
    "`busybox sh -c`",
    "busybox sh -c 'touch pwned'",
    { asks: [["busybox", "sh", "-c", "touch pwned"], ["sh", "-c", "touch pwned"], P] },
  ],
  ["a busybox applet", "busybox touch pwned", { asks: [["busybox", ...P], P] }],
  [
    "`xargs`",
    "echo pwned | xargs touch",
    {
      asks: [
        ["echo", "pwned"],
        ["xargs", "touch"],
        ["touch", "<arguments read from stdin>"],
      ],
      dynamic: true,
    },
  ],
  [
    "`find -exec`",
    "find . -maxdepth 0 -exec touch pwned \\;",
    { asks: [["find", ".", "-maxdepth", "0", "-exec", "touch", "pwned", ";"], P] },
  ],
  [
    "`find -exec {}`",
    "find . -exec touch {} +",
    {
      asks: [
        ["find", ".", "-exec", "touch", "{}", "+"],
        ["touch", "{}"],
      ],
      dynamic: true,
    },
  ],
  ["`nice`", "nice touch pwned", { asks: [["nice", ...P], P] }],
  ["`nohup`", "nohup touch pwned", { asks: [["nohup", ...P], P] }],
  ["`timeout`", "timeout 5 touch pwned", { asks: [["timeout", "5", ...P], P] }],
  ["`sudo`", "sudo touch pwned", { asks: [["sudo", ...P], P] }],
  ["`command`", "command touch pwned", { asks: [["command", ...P], P] }],
  ["`exec`", "exec touch pwned", { asks: [["exec", ...P], P] }],
  ["`eval`", "eval 'touch pwned'", { asks: [["eval", "touch pwned"], P] }],
  ["a dynamic `eval`", 'eval "$CMD"', { asks: [["eval", '"$CMD"']], dynamic: true }],
  [
    "`git -c core.pager`",
    "git -c core.pager='touch pwned' log",
    { asks: [["git", "-c", "core.pager=touch pwned", "log"]], dynamic: true },
  ],
  [
    "a `git -c alias` with `!`",
    "git -c alias.x='!touch pwned' x",
    { asks: [["git", "-c", "alias.x=!touch pwned", "x"]], dynamic: true },
  ],
  ["a subshell", "(ls -a; touch pwned)", { asks: [["ls", "-a"], P] }],
  ["a brace group", "{ ls -a; touch pwned; }", { asks: [["ls", "-a"], P] }],
  ["an `if`", "if ls -a; then touch pwned; fi", { asks: [["ls", "-a"], P] }],
  [
    "a function shadowing the approved command",
    "ls() { touch pwned; }; ls -a",
    { asks: [P, ["ls", "-a"]], dynamic: true },
  ],
  [
    "an alias shadowing the approved command",
    "alias ls='touch pwned'\nls -a",
    {
      asks: [
        ["alias", "ls=touch pwned"],
        ["ls", "-a"],
      ],
      dynamic: true,
    },
  ],
  [
    "a `trap`",
    "trap 'touch pwned' EXIT; ls -a",
    { asks: [["trap", "touch pwned", "EXIT"], P, ["ls", "-a"]] },
  ],
  ["a glob", "ls -a *", { asks: [["ls", "-a", "*"]], dynamic: true }],
  ["a tilde", "ls -a ~", { asks: [["ls", "-a", "~"]], dynamic: true }],
  ["`${IFS}` in the command name", "ls${IFS}-a", { asks: [["ls${IFS}-a"]], dynamic: true }],
  ["`$IFS` in an argument", "ls -a$IFS/", { asks: [["ls", "-a$IFS/"]], dynamic: true }],
  ["a computed command name", "$0 -a", { asks: [["$0", "-a"]], dynamic: true }],
  ["`.` sourcing a file", ". ./pwned.sh", { asks: [[".", "./pwned.sh"]], dynamic: true }],
  [
    "a shell reading commands from a pipe",
    "echo 'touch pwned' | sh",
    { asks: [["echo", "touch pwned"], ["sh"]], dynamic: true },
  ],
  ["another spelling of the program's path", "/bin/ls -a", { asks: [["/bin/ls", "-a"]] }],
  ["a relative program path", "./ls -a", { asks: [["./ls", "-a"]] }],
  ["a Cyrillic look-alike in an argument", "ls -\u0430", { asks: [["ls", "-\u0430"]] }],
  ["`IFS=` reassignment", "IFS=/; ls -a", { refused: "EXEC_ENV_BLOCKED" }],
  ["an `LD_PRELOAD=` prefix", "LD_PRELOAD=./x.so ls -a", { refused: "EXEC_ENV_BLOCKED" }],
  ["a `PATH=` override", "PATH=.:$PATH ls -a", { refused: "EXEC_ENV_BLOCKED" }],
  [
    "`export NODE_OPTIONS`",
    "export NODE_OPTIONS=--require=./x.js; ls -a",
    { refused: "EXEC_ENV_BLOCKED" },
  ],
  ["`env LD_PRELOAD=`", "env LD_PRELOAD=./x.so ls -a", { refused: "EXEC_ENV_BLOCKED" }],
  [
    "`BASH_ENV=` for a shell",
    "BASH_ENV=./pwned.sh bash -c 'ls -a'",
    { refused: "EXEC_ENV_BLOCKED" },
  ],
  ["a fullwidth look-alike command", "\uff4c\uff53 -a", { refused: "EXEC_REFUSED" }],
  ["a Cyrillic look-alike command", "l\u0455 -a", { refused: "EXEC_REFUSED" }],
  ["a fullwidth semicolon", "ls -a\uff1btouch pwned", { refused: "EXEC_REFUSED" }],
  ["a zero-width space", "ls -a\u200b; touch pwned", { refused: "EXEC_REFUSED" }],
  ["a right-to-left override", "ls -a \u202e; touch pwned", { refused: "EXEC_REFUSED" }],
  ["a NUL byte", "ls -a\u0000; touch pwned", { refused: "EXEC_REFUSED" }],
  ["a carriage return", "ls -a\r; touch pwned", { refused: "EXEC_REFUSED" }],
  ["a non-breaking space", "ls\u00a0-a", { refused: "EXEC_REFUSED" }],
  ["bash's `&>`", "ls -a &> pwned", { refused: "EXEC_REFUSED" }],
  ["bash's `|&`", "ls -a |& touch pwned", { refused: "EXEC_REFUSED" }],
  ["bash's `$'...'`", "ls -a $'\\x3b' touch pwned", { refused: "EXEC_REFUSED" }],
  ["an unterminated quote", "ls -a 'touch pwned", { refused: "EXEC_REFUSED" }],
  ["a `${ cmd; }` substitution", "ls -a ${ touch pwned; }", { refused: "EXEC_REFUSED" }],
];

describe("exec approval binding", () => {
  it("runs the approved command again, and its other spellings, without asking", async () => {
    for (const command of ["ls -a", "'ls' \"-a\"", "ls  -a;", "ls -a # same"]) {
      const result = (await exec.execute({ command }, context)) as { exitCode: number };
      expect(result.exitCode, command).toBe(0);
    }
    expect(asked).toHaveLength(0);
  });

  it(`covers at least 40 injection attempts (${cases.length})`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases)("does not let %s run without approval", async (_name, command, expected) => {
    const error = (await attempt(command)) as { code?: string; reason?: string };
    if ("refused" in expected) {
      expect(error.code).toBe(expected.refused);
      expect(asked).toHaveLength(0);
    } else {
      expect(error).toMatchObject({ code: "EXEC_REFUSED", reason: "denied" });
      expect(asked).toHaveLength(1);
      const binding = asked[0]!;
      expect(binding.invocations.map((i) => i.argv)).toEqual(expected.asks);
      expect(binding.key).not.toBe(baseKey);
      expect(binding.static).toBe(!expected.dynamic);
    }
    expect(readdirSync(root.dir)).toEqual([]);
  });
});
