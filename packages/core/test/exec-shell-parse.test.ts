import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ExecRefusedError,
  literalOf,
  parseShell,
  quoteShellWord,
  type ShellCommand,
  type ShellList,
  type ShellSimpleCommand,
  serializeShell,
} from "./fixtures/exec/api.js";

/** Every simple command of a tree, in source order, descending into everything. */
function simpleCommands(list: ShellList): ShellSimpleCommand[] {
  const out: ShellSimpleCommand[] = [];
  const visitList = (l: ShellList) => {
    for (const item of l.items) {
      for (const p of [item.command.first, ...item.command.rest.map((r) => r.pipeline)]) {
        for (const c of p.commands) visit(c);
      }
    }
  };
  const visit = (c: ShellCommand) => {
    switch (c.type) {
      case "simple":
        out.push(c);
        for (const w of c.words) {
          for (const part of w.parts) {
            if (part.type === "command-substitution" || part.type === "process-substitution") {
              visitList(part.body);
            } else if (part.type === "parameter" || part.type === "arithmetic") {
              part.commands.forEach(visitList);
            }
          }
        }
        return;
      case "subshell":
      case "group":
        return visitList(c.body);
      case "if":
        for (const cl of c.clauses) {
          visitList(cl.condition);
          visitList(cl.body);
        }
        if (c.elseBody) visitList(c.elseBody);
        return;
      case "while":
      case "until":
        visitList(c.condition);
        visitList(c.body);
        return;
      case "for":
        return visitList(c.body);
      case "case":
        for (const cl of c.clauses) visitList(cl.body);
        return;
      case "function":
        return visit(c.body);
    }
  };
  visitList(list);
  return out;
}

/** The static argv of every simple command ("?" for a word with an expansion). */
function argvs(source: string): string[][] {
  return simpleCommands(parseShell(source)).map((c) => c.words.map((w) => literalOf(w) ?? "?"));
}

function refusal(source: string): ExecRefusedError {
  try {
    parseShell(source);
  } catch (error) {
    if (ExecRefusedError.isInstance(error)) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(source)} to be refused`);
}

/** Printable ASCII plus tab and newline: what a command may contain. */
function printable(text: string): boolean {
  return [...text].every((c) => {
    const n = c.charCodeAt(0);
    return n === 9 || n === 10 || (n >= 32 && n < 127);
  });
}

/** Runs a script with dash and returns what it printed. */
function dash(script: string): string {
  return execFileSync("/bin/sh", ["-c", script], {
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin" },
  });
}

describe("parseShell", () => {
  it("splits pipelines, and-or chains, lists, background jobs and newlines into commands", () => {
    expect(argvs("a | b && c || d; e & f\ng")).toEqual([
      ["a"],
      ["b"],
      ["c"],
      ["d"],
      ["e"],
      ["f"],
      ["g"],
    ]);
    const tree = parseShell("a & b; c");
    expect(tree.items.map((i) => i.background)).toEqual([true, false, false]);
    expect(tree.items[0]!.command.first.commands).toHaveLength(1);
  });

  it("removes quotes and escapes the way sh does", () => {
    expect(argvs(`echo 'a b' "c\\"d" e\\ f 'it'"'"'s' "\\$x" "a\\qb" ''`)).toEqual([
      ["echo", "a b", 'c"d', "e f", "it's", "$x", "a\\qb", ""],
    ]);
  });

  it("joins lines continued with a backslash and drops comments", () => {
    expect(argvs("ls \\\n-la # a comment; rm -rf /\necho a#b")).toEqual([
      ["ls", "-la"],
      ["echo", "a#b"],
    ]);
  });

  it("parses the command inside every $(...), backquote, ${...} and $((...)), however nested", () => {
    expect(argvs('echo $(a "$(b `c \\`d\\``)") ${x:-$(e)} $(( $(f) + 1 ))')).toEqual([
      ["echo", "?", "?", "?"],
      ["a", "?"],
      ["b", "?"],
      ["c", "?"],
      ["d"],
      ["e"],
      ["f"],
    ]);
  });

  it("parses process substitutions and here-documents, expanding only unquoted ones", () => {
    expect(argvs("diff <(sort a) >(tee b)")).toEqual([
      ["diff", "?", "?"],
      ["sort", "a"],
      ["tee", "b"],
    ]);
    const tree = parseShell("cat <<EOF <<-'RAW'\nhi $(who)\nEOF\n\t$(not run)\n\tRAW\necho after");
    const cat = simpleCommands(tree)[0]!;
    const [expanded, raw] = cat.redirects.map((r) => r.heredoc!);
    expect(expanded!.body).toBe("hi $(who)\n");
    expect(expanded!.parts.some((p) => p.type === "command-substitution")).toBe(true);
    expect(raw!.quoted).toBe(true);
    expect(raw!.body).toBe("$(not run)\n");
    expect(raw!.parts).toEqual([{ type: "text", value: "$(not run)\n", quoted: true }]);
    expect(argvs("cat <<EOF\nhi\nEOF\necho after")).toEqual([["cat"], ["echo", "after"]]);
  });

  it("reads here-documents opened inside a command substitution", () => {
    expect(argvs("x $(cat <<E\nbody\nE\n) y")).toEqual([["x", "?", "y"], ["cat"]]);
  });

  it("parses compound commands: if/elif/else, while, until, for, case, groups, subshells, functions", () => {
    const source = [
      "if a; then b; elif c; then d; else e; fi",
      "while f; do g; done; until h; do i; done",
      "for x in 1 2; do j; done; for y do k; done",
      "case $v in (p1|p2) l;; *) m;; esac",
      "{ n; o; } > out; (p; q) 2>&1",
      "fn() { r; }",
    ].join("\n");
    expect(argvs(source).map((a) => a[0])).toEqual(
      "a b c d e f g h i j k l m n o p q r".split(" "),
    );
  });

  it("tells assignments, redirections and file descriptors apart from arguments", () => {
    const [cmd] = simpleCommands(parseShell("A=1 B='x y' cmd C=3 2>>log <in >&2 3<&- 10>f"));
    expect(cmd!.assignments.map((a) => [a.name, literalOf(a.value)])).toEqual([
      ["A", "1"],
      ["B", "x y"],
    ]);
    expect(cmd!.words.map((w) => literalOf(w))).toEqual(["cmd", "C=3"]);
    expect(cmd!.redirects.map((r) => [r.fd, r.op, literalOf(r.target)])).toEqual([
      [2, ">>", "log"],
      [undefined, "<", "in"],
      [undefined, ">&", "2"],
      [3, "<&", "-"],
      [10, ">", "f"],
    ]);
  });

  it("treats reserved words as words where sh does", () => {
    expect(argvs("echo if then fi; 'if' x")).toEqual([
      ["echo", "if", "then", "fi"],
      ["if", "x"],
    ]);
  });

  it.each([
    ["an unterminated single quote", "echo 'a", "syntax"],
    ["an unterminated double quote", 'echo "a', "syntax"],
    ["an unterminated backquote", "echo `a", "syntax"],
    ["an unterminated $(", "echo $(a", "syntax"],
    ["an unterminated ${", "echo ${a", "syntax"],
    ["an unterminated here-document", "cat <<EOF\nbody", "syntax"],
    ["a here-document without a body", "cat <<EOF", "syntax"],
    ["a trailing backslash", "echo \\", "syntax"],
    ["an unbalanced parenthesis", "(echo a", "syntax"],
    ["a stray closing parenthesis", "echo a)", "syntax"],
    ["an empty subshell", "( )", "syntax"],
    ["a missing fi", "if a; then b", "syntax"],
    ["a dangling &&", "a &&", "syntax"],
    ["bash's &>", "a &> f", "unsupported-syntax"],
    ["bash's &>>", "a &>> f", "unsupported-syntax"],
    ["bash's |&", "a |& b", "unsupported-syntax"],
    ["bash's here-string", "a <<< x", "unsupported-syntax"],
    ["bash's $'...'", "echo $'\\x41'", "unsupported-syntax"],
    ['bash\'s $"..."', 'echo $"x"', "unsupported-syntax"],
    ["bash's [[", "[[ -f x ]]", "unsupported-syntax"],
    ["bash's ((", "((x=1))", "unsupported-syntax"],
    ["bash's function keyword", "function f { a; }", "unsupported-syntax"],
    ["bash's +=", "A+=1 cmd", "unsupported-syntax"],
    ["bash arrays", "a[0]=1", "unsupported-syntax"],
    ["a ${ cmd; } function substitution", "echo ${ rm x; }", "unsupported-syntax"],
    ["bash's >&file", "a >&file", "unsupported-syntax"],
    ["bash's {fd}> redirection", "exec {fd}>file", "unsupported-syntax"],
    ["case fall-through", "case a in a) b;& c) d;; esac", "unsupported-syntax"],
    ["an ambiguous $((", "echo $((a) )", "unsupported-syntax"],
    ["a NUL byte", "ls\u0000; rm x", "forbidden-character"],
    ["a carriage return", "ls\r rm", "forbidden-character"],
    ["an escape character", "ls \u001b[2K", "forbidden-character"],
    ["a zero-width space", "l\u200bs", "forbidden-character"],
    ["a right-to-left override", "ls \u202e", "forbidden-character"],
    ["a non-breaking space", "ls\u00a0-la", "forbidden-character"],
    ["a line separator", "ls\u2028rm", "forbidden-character"],
    ["a fullwidth semicolon outside quotes", "ls\uff1brm", "forbidden-character"],
  ])("refuses %s", (_name, source, reason) => {
    expect(refusal(source).reason).toBe(reason);
  });

  it("accepts fullwidth characters inside quotes, where they are plainly text", () => {
    expect(argvs("echo '；'")).toEqual([["echo", "；"]]);
  });

  it("refuses input past its length and nesting limits", () => {
    expect(refusal("a".repeat(70_000)).reason).toBe("too-complex");
    expect(() => parseShell("echo $(".repeat(80) + ")".repeat(80))).toThrow(
      expect.objectContaining({ reason: "too-complex" }),
    );
  });
});

describe("serializeShell", () => {
  const samples = [
    "echo 'a b' \"c\\\"d\" e\\ f 'it'\"'\"'s' '' '*' '~' if",
    "A='x y' printf '%s|' 1 2; false || printf '[%s]' 'a;b' 2>/dev/null",
    "case 'b*' in a|'b*') echo quoted;; b*) echo glob;; esac",
    "if false; then echo no; elif true; then echo yes; else echo never; fi",
    "for i in 1 2 3; do printf x; done; while false; do :; done",
    "cat <<EOF | tr a-z A-Z\nhello 'there'\nEOF\ncat <<'X'\nBEAMCLAW_EOF\nX",
    "{ echo a; echo b; } | wc -l; (echo sub) >/dev/null; echo after",
  ];

  it.each(samples)("re-serializes %j so that sh prints the same", (source) => {
    const canonical = serializeShell(parseShell(source));
    expect(canonical).not.toBe(source);
    expect(dash(canonical)).toBe(dash(source));
  });

  it("quotes any argument so that both this parser and dash read it back unchanged", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: "binary-ascii", maxLength: 12 }).filter(printable), {
          minLength: 1,
          maxLength: 5,
        }),
        (args) => {
          const command = `printf '%s\\n' ${args.map(quoteShellWord).join(" ")}`;
          const parsed = argvs(command)[0]!.slice(2);
          expect(parsed).toEqual(args);
          expect(dash(command)).toBe(args.map((a) => `${a}\n`).join(""));
        },
      ),
      { numRuns: 60 },
    );
  });
});
