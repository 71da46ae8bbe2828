/**
 * A parser for POSIX `sh` command strings, written for one job: telling exactly which
 * commands a string would run, so that approval can be bound to them.
 *
 * It reads the whole POSIX grammar an agent is likely to write — quotes and escapes,
 * pipelines, `&&` / `||` / `;` / `&` / newlines, `( ... )` subshells, `{ ...; }` groups,
 * `if` / `while` / `until` / `for` / `case`, function definitions, assignments, redirections,
 * here-documents, `$(...)`, backticks, `$((...))`, `${...}` and bash's `<(...)` — and
 * returns a syntax tree in which every command substitution is itself parsed, so nothing
 * that runs is hidden inside a word.
 *
 * It never guesses. Input it cannot read the way every common `sh` would (an unterminated
 * quote, a bash-only operator such as `&>` that `dash` reads differently, `$'...'`,
 * `[[ ]]`, `((`, invisible or control characters) is refused with an
 * {@link ExecRefusedError}; deciding what the tree means for approval is the binding's job.
 *
 * Why not a library: `shell-quote` tokenizes with regular expressions and does not parse
 * substitutions, subshells, compound commands or here-documents; `bash-parser` is
 * unmaintained and not an allowed dependency of core.
 *
 * @example
 * ```ts
 * const tree = parseShell("git log | head -n 3 && echo $(date)");
 * tree.items[0]?.command.first.commands.length; // 2 (git, head)
 * ```
 */
import { type ExecRefusalReason, ExecRefusedError } from "../../errors.js";

/** A list of and-or commands separated by `;`, `&` or newlines. */
export interface ShellList {
  type: "list";
  items: ShellListItem[];
}

/** One entry of a {@link ShellList}; `background` when it ended with `&`. */
export interface ShellListItem {
  command: ShellAndOr;
  background: boolean;
}

/** Pipelines joined by `&&` and `||`. */
export interface ShellAndOr {
  type: "and-or";
  first: ShellPipeline;
  rest: Array<{ op: "&&" | "||"; pipeline: ShellPipeline }>;
}

/** Commands joined by `|`, optionally negated with `!`. */
export interface ShellPipeline {
  type: "pipeline";
  negated: boolean;
  commands: ShellCommand[];
}

/** Any command the grammar knows. */
export type ShellCommand =
  | ShellSimpleCommand
  | ShellSubshell
  | ShellGroup
  | ShellIf
  | ShellLoop
  | ShellFor
  | ShellCase
  | ShellFunction;

/** `A=1 B=2 cmd arg... >out`: assignments, words (the argv to be) and redirections. */
export interface ShellSimpleCommand {
  type: "simple";
  assignments: ShellAssignment[];
  words: ShellWord[];
  redirects: ShellRedirect[];
}

/** `NAME=value`. */
export interface ShellAssignment {
  name: string;
  value: ShellWord;
}

/** `( list )`. */
export interface ShellSubshell {
  type: "subshell";
  body: ShellList;
  redirects: ShellRedirect[];
}

/** `{ list; }`. */
export interface ShellGroup {
  type: "group";
  body: ShellList;
  redirects: ShellRedirect[];
}

/** `if list; then list; [elif list; then list;]... [else list;] fi`. */
export interface ShellIf {
  type: "if";
  clauses: Array<{ condition: ShellList; body: ShellList }>;
  elseBody: ShellList | undefined;
  redirects: ShellRedirect[];
}

/** `while list; do list; done` and `until list; do list; done`. */
export interface ShellLoop {
  type: "while" | "until";
  condition: ShellList;
  body: ShellList;
  redirects: ShellRedirect[];
}

/** `for name [in word...]; do list; done`; `items` is undefined without `in`. */
export interface ShellFor {
  type: "for";
  name: string;
  items: ShellWord[] | undefined;
  body: ShellList;
  redirects: ShellRedirect[];
}

/** `case word in pattern|pattern) list;; ... esac`. */
export interface ShellCase {
  type: "case";
  subject: ShellWord;
  clauses: Array<{ patterns: ShellWord[]; body: ShellList }>;
  redirects: ShellRedirect[];
}

/** `name() compound-command`. */
export interface ShellFunction {
  type: "function";
  name: string;
  body: ShellCommand;
}

/** Redirection operators of POSIX sh. */
export type ShellRedirectOp = "<" | ">" | ">>" | ">|" | "<>" | "<&" | ">&" | "<<" | "<<-";

/**
 * A redirection. For `<<` and `<<-` the target is the delimiter word and `heredoc` holds
 * the body.
 */
export interface ShellRedirect {
  /** The explicit file descriptor (`2>`), if any. */
  fd: number | undefined;
  op: ShellRedirectOp;
  target: ShellWord;
  heredoc?: ShellHereDoc;
}

/** A here-document body. */
export interface ShellHereDoc {
  delimiter: string;
  /** A quoted delimiter (`<<'EOF'`) turns off expansion in the body. */
  quoted: boolean;
  /** The body text, leading tabs already removed for `<<-`. */
  body: string;
  /** The body as word parts: one text part when quoted, expansions parsed otherwise. */
  parts: ShellWordPart[];
}

/** A word: its source text and its parts after tokenizing (quotes marked, not removed). */
export interface ShellWord {
  raw: string;
  parts: ShellWordPart[];
}

/**
 * A piece of a word. `quoted` is true for text from `'...'`, `"..."` or a backslash escape:
 * such text is not subject to field splitting, globbing or tilde expansion.
 */
export type ShellWordPart =
  | { type: "text"; value: string; quoted: boolean }
  /** `$name`, `${...}`; `commands` are the substitutions nested inside `${...}`. */
  | { type: "parameter"; raw: string; quoted: boolean; commands: ShellList[] }
  | {
      type: "command-substitution";
      raw: string;
      quoted: boolean;
      backtick: boolean;
      body: ShellList;
    }
  | { type: "arithmetic"; raw: string; quoted: boolean; commands: ShellList[] }
  /** bash's `<(...)` and `>(...)`. */
  | { type: "process-substitution"; raw: string; direction: "<" | ">"; body: ShellList };

/** Limits of {@link parseShell}. */
export interface ShellParseOptions {
  /** Longest accepted input, in UTF-16 code units. Default 65 536. */
  maxLength?: number;
  /** Deepest nesting of substitutions, subshells and compound commands. Default 64. */
  maxDepth?: number;
}

const DEFAULT_MAX_LENGTH = 65_536;
const DEFAULT_MAX_DEPTH = 64;

/** Characters that end an unquoted word. */
const METACHARACTERS = new Set([" ", "\t", "\n", ";", "&", "|", "<", ">", "(", ")"]);
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SPECIAL_PARAMETERS = new Set(["@", "*", "#", "?", "-", "$", "!"]);
/** Words that close a compound command's list. */
const CLOSERS = new Set(["then", "else", "elif", "fi", "do", "done", "esac", "}"]);
/** bash/ksh/zsh reserved words that POSIX sh reads as ordinary commands. */
const BASH_ONLY_WORDS = new Set(["[[", "]]", "function", "select", "coproc"]);

/**
 * Characters that are never accepted anywhere in a command: C0 and C1 controls other than
 * tab and newline (NUL, carriage return, escape...), DEL, invisible format characters
 * (zero-width spaces and joiners, bidirectional overrides and isolates, soft hyphen, BOM),
 * line and paragraph separators, non-ASCII spaces that look like a separator but are not
 * one, and unpaired surrogates. Each can make the command a person approves differ from
 * the command that runs.
 */
const FORBIDDEN = /(?![\n\t])\p{Cc}|\p{Cf}|\p{Zl}|\p{Zp}|[^\S\n\t ]|\p{Cs}/u;
/** Fullwidth forms of ASCII (`；｜＆＄－`...), refused outside quotes: they pose as operators. */
const FULLWIDTH_ASCII = /[\uff01-\uff5e]/;

/** Describes a character for an error message: `U+202E`. */
export function describeCodePoint(char: string): string {
  return `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Parses a POSIX `sh` command string into a {@link ShellList}.
 *
 * @throws ExecRefusedError with reason `syntax`, `unsupported-syntax`, `forbidden-character`
 *   or `too-complex`.
 */
export function parseShell(source: string, options: ShellParseOptions = {}): ShellList {
  const maxLength = options.maxLength ?? DEFAULT_MAX_LENGTH;
  if (source.length > maxLength) {
    throw new ExecRefusedError(
      "too-complex",
      `command is ${source.length} characters long; the limit is ${maxLength}`,
      source,
    );
  }
  const bad = FORBIDDEN.exec(source);
  if (bad !== null) {
    throw new ExecRefusedError(
      "forbidden-character",
      `command contains the forbidden character ${describeCodePoint(bad[0])} at offset ${bad.index}`,
      source,
    );
  }
  return new Parser(source, source, options.maxDepth ?? DEFAULT_MAX_DEPTH, 0).parseScript();
}

class Parser {
  #pos = 0;
  #depth: number;
  readonly #pending: Array<{ doc: ShellHereDoc; stripTabs: boolean }> = [];

  constructor(
    private readonly src: string,
    /** The whole command, for error messages (differs from `src` inside backticks). */
    private readonly command: string,
    private readonly maxDepth: number,
    depth: number,
  ) {
    this.#depth = depth;
  }

  parseScript(): ShellList {
    const list = this.#list({ allowEmpty: true });
    this.#skipLinebreaks();
    if (this.#pos < this.src.length) {
      this.#fail("syntax", `unexpected ${this.#describeHere()}`);
    }
    if (this.#pending.length > 0) {
      this.#fail(
        "syntax",
        `here-document "${this.#pending[0]!.doc.delimiter}" has no body (missing newline)`,
      );
    }
    return list;
  }

  // ------------------------------------------------------------------ errors

  #fail(reason: ExecRefusalReason, message: string): never {
    throw new ExecRefusedError(reason, message, this.command);
  }

  #describeHere(): string {
    if (this.#pos >= this.src.length) return "end of input";
    const rest = this.src.slice(this.#pos, this.#pos + 12);
    return `${JSON.stringify(rest)} at offset ${this.#pos}`;
  }

  #enter(): void {
    this.#depth++;
    if (this.#depth > this.maxDepth) {
      this.#fail("too-complex", `command nests deeper than ${this.maxDepth} levels`);
    }
  }

  #leave(): void {
    this.#depth--;
  }

  // ------------------------------------------------------------------ lexing helpers

  #peek(offset = 0): string {
    return this.src[this.#pos + offset] ?? "";
  }

  #startsWith(text: string): boolean {
    return this.src.startsWith(text, this.#pos);
  }

  /** Skips blanks, line continuations and comments (a `#` where a token would start). */
  #skipBlanks(): void {
    for (;;) {
      const c = this.#peek();
      if (c === " " || c === "\t") {
        this.#pos++;
      } else if (c === "\\" && this.#peek(1) === "\n") {
        this.#pos += 2;
      } else if (c === "#") {
        while (this.#pos < this.src.length && this.#peek() !== "\n") this.#pos++;
      } else {
        return;
      }
    }
  }

  /** Skips blanks and newlines, reading pending here-document bodies at each newline. */
  #skipLinebreaks(): void {
    for (;;) {
      this.#skipBlanks();
      if (this.#peek() !== "\n") return;
      this.#newline();
    }
  }

  /** Consumes one newline and reads the bodies of the here-documents it completes. */
  #newline(): void {
    this.#pos++;
    while (this.#pending.length > 0) {
      const { doc, stripTabs } = this.#pending.shift()!;
      this.#readHereDocBody(doc, stripTabs);
    }
  }

  /**
   * The operator at the current position, longest match first, or "" for none. bash-only
   * operators are returned too, so that the caller can refuse them by name.
   */
  #operator(): string {
    const c = this.#peek();
    const two = this.src.slice(this.#pos, this.#pos + 2);
    const three = this.src.slice(this.#pos, this.#pos + 3);
    switch (c) {
      case "&":
        if (three === "&>>") return "&>>";
        if (two === "&&" || two === "&>") return two;
        return "&";
      case "|":
        if (two === "||" || two === "|&") return two;
        return "|";
      case ";":
        if (three === ";;&") return ";;&";
        if (two === ";;" || two === ";&") return two;
        return ";";
      case "<":
        if (three === "<<<" || three === "<<-") return three;
        if (two === "<<" || two === "<&" || two === "<>" || two === "<(") return two;
        return "<";
      case ">":
        if (two === ">>" || two === ">&" || two === ">|" || two === ">(") return two;
        return ">";
      case "(":
      case ")":
      case "\n":
        return c;
      default:
        return "";
    }
  }

  #refuseBashOperator(op: string): never {
    const hints: Record<string, string> = {
      "&>": "use `>file 2>&1`",
      "&>>": "use `>>file 2>&1`",
      "|&": "use `2>&1 |`",
      "<<<": "use a here-document or `printf '%s\\n' ... |`",
      ";&": "case fall-through is not POSIX",
      ";;&": "case fall-through is not POSIX",
    };
    this.#fail(
      "unsupported-syntax",
      `the bash-only operator \`${op}\` is read differently by POSIX sh; ${hints[op] ?? "rewrite it"}`,
    );
  }

  // ------------------------------------------------------------------ grammar

  #list(options: {
    allowEmpty?: boolean;
    stopOps?: ReadonlySet<string>;
    stopWords?: ReadonlySet<string>;
  }): ShellList {
    const items: ShellListItem[] = [];
    for (;;) {
      this.#skipLinebreaks();
      if (this.#pos >= this.src.length) break;
      const op = this.#operator();
      if (op !== "" && options.stopOps?.has(op)) break;
      if (op === ")" && options.stopOps === undefined) break;
      const reserved = this.#peekReserved();
      if (reserved !== undefined && (options.stopWords?.has(reserved) || CLOSERS.has(reserved))) {
        break;
      }
      const command = this.#andOr();
      this.#skipBlanks();
      const sep = this.#operator();
      if (sep === ";") {
        this.#pos++;
        items.push({ command, background: false });
      } else if (sep === "&") {
        this.#pos++;
        items.push({ command, background: true });
      } else if (sep === "\n") {
        this.#newline();
        items.push({ command, background: false });
      } else {
        items.push({ command, background: false });
        if (sep === "&>" || sep === "&>>" || sep === "|&" || sep === ";&" || sep === ";;&") {
          this.#refuseBashOperator(sep);
        }
        break;
      }
    }
    if (items.length === 0 && options.allowEmpty !== true) {
      this.#fail("syntax", `expected a command before ${this.#describeHere()}`);
    }
    return { type: "list", items };
  }

  #andOr(): ShellAndOr {
    const first = this.#pipeline();
    const rest: ShellAndOr["rest"] = [];
    for (;;) {
      this.#skipBlanks();
      const op = this.#operator();
      if (op !== "&&" && op !== "||") break;
      this.#pos += 2;
      this.#skipLinebreaks();
      rest.push({ op, pipeline: this.#pipeline() });
    }
    return { type: "and-or", first, rest };
  }

  #pipeline(): ShellPipeline {
    this.#skipBlanks();
    let negated = false;
    if (this.#peekReserved() === "!") {
      this.#pos++;
      negated = true;
    }
    const commands = [this.#command()];
    for (;;) {
      this.#skipBlanks();
      const op = this.#operator();
      if (op === "|&") this.#refuseBashOperator(op);
      if (op !== "|") break;
      this.#pos++;
      this.#skipLinebreaks();
      commands.push(this.#command());
    }
    return { type: "pipeline", negated, commands };
  }

  #command(): ShellCommand {
    this.#skipBlanks();
    this.#enter();
    try {
      const op = this.#operator();
      if (op === "(") {
        if (this.#peek(1) === "(") {
          this.#fail(
            "unsupported-syntax",
            "`((` is arithmetic in bash but nested subshells in POSIX sh; add a space: `( (`",
          );
        }
        this.#pos++;
        const body = this.#list({ stopOps: new Set([")"]) });
        this.#expectOperator(")");
        return { type: "subshell", body, redirects: this.#redirects() };
      }
      const reserved = this.#peekReserved();
      if (reserved !== undefined) {
        if (BASH_ONLY_WORDS.has(reserved)) {
          this.#fail(
            "unsupported-syntax",
            `\`${reserved}\` is bash syntax that POSIX sh reads as a command name`,
          );
        }
        switch (reserved) {
          case "{":
            return this.#group();
          case "if":
            return this.#if();
          case "while":
          case "until":
            return this.#loop(reserved);
          case "for":
            return this.#for();
          case "case":
            return this.#case();
          case "!":
            this.#fail("syntax", "`!` must start a pipeline");
            break;
          default:
            if (CLOSERS.has(reserved) || reserved === "in") {
              this.#fail("syntax", `unexpected \`${reserved}\` at offset ${this.#pos}`);
            }
        }
      }
      return this.#simpleCommand();
    } finally {
      this.#leave();
    }
  }

  #group(): ShellGroup {
    this.#expectReserved("{");
    const body = this.#list({ stopWords: new Set(["}"]) });
    this.#expectReserved("}");
    return { type: "group", body, redirects: this.#redirects() };
  }

  #if(): ShellIf {
    this.#expectReserved("if");
    const clauses: ShellIf["clauses"] = [];
    let elseBody: ShellList | undefined;
    const condition = this.#list({});
    this.#expectReserved("then");
    clauses.push({ condition, body: this.#list({}) });
    for (;;) {
      const word = this.#peekReserved();
      if (word === "elif") {
        this.#expectReserved("elif");
        const cond = this.#list({});
        this.#expectReserved("then");
        clauses.push({ condition: cond, body: this.#list({}) });
      } else if (word === "else") {
        this.#expectReserved("else");
        elseBody = this.#list({});
        this.#expectReserved("fi");
        break;
      } else {
        this.#expectReserved("fi");
        break;
      }
    }
    return { type: "if", clauses, elseBody, redirects: this.#redirects() };
  }

  #loop(kind: "while" | "until"): ShellLoop {
    this.#expectReserved(kind);
    const condition = this.#list({});
    this.#expectReserved("do");
    const body = this.#list({});
    this.#expectReserved("done");
    return { type: kind, condition, body, redirects: this.#redirects() };
  }

  #for(): ShellFor {
    this.#expectReserved("for");
    this.#skipBlanks();
    const nameWord = this.#word();
    const name = nameWord === undefined ? undefined : literalOf(nameWord);
    if (name === undefined || !NAME.test(name)) {
      this.#fail("unsupported-syntax", "`for` must be followed by a variable name");
    }
    let items: ShellWord[] | undefined;
    this.#skipLinebreaks();
    if (this.#peekReserved() === "in") {
      this.#expectReserved("in");
      items = [];
      for (;;) {
        this.#skipBlanks();
        const op = this.#operator();
        if (op === ";" || op === "\n") {
          if (op === ";") this.#pos++;
          else this.#newline();
          break;
        }
        if (op !== "") this.#fail("syntax", `unexpected ${this.#describeHere()} in \`for\``);
        const w = this.#word();
        if (w === undefined) this.#fail("syntax", "unterminated `for` word list");
        items.push(w);
      }
    } else if (this.#operator() === ";") {
      this.#pos++;
    }
    this.#skipLinebreaks();
    this.#expectReserved("do");
    const body = this.#list({});
    this.#expectReserved("done");
    return { type: "for", name, items, body, redirects: this.#redirects() };
  }

  #case(): ShellCase {
    this.#expectReserved("case");
    this.#skipBlanks();
    const subject = this.#word();
    if (subject === undefined) this.#fail("syntax", "`case` needs a word");
    this.#skipLinebreaks();
    this.#expectReserved("in");
    const clauses: ShellCase["clauses"] = [];
    for (;;) {
      this.#skipLinebreaks();
      if (this.#peekReserved() === "esac") break;
      if (this.#operator() === "(") this.#pos++;
      const patterns: ShellWord[] = [];
      for (;;) {
        this.#skipBlanks();
        const w = this.#word();
        if (w === undefined)
          this.#fail("syntax", `expected a case pattern at ${this.#describeHere()}`);
        patterns.push(w);
        this.#skipBlanks();
        const op = this.#operator();
        if (op === "|") {
          this.#pos++;
          continue;
        }
        if (op === ")") {
          this.#pos++;
          break;
        }
        this.#fail("syntax", `expected \`)\` after a case pattern at ${this.#describeHere()}`);
      }
      const body = this.#list({
        allowEmpty: true,
        stopOps: new Set([";;", ";&", ";;&", ")"]),
        stopWords: new Set(["esac"]),
      });
      clauses.push({ patterns, body });
      this.#skipLinebreaks();
      const op = this.#operator();
      if (op === ";&" || op === ";;&") this.#refuseBashOperator(op);
      if (op === ";;") {
        this.#pos += 2;
        continue;
      }
      break;
    }
    this.#skipLinebreaks();
    this.#expectReserved("esac");
    return { type: "case", subject, clauses, redirects: this.#redirects() };
  }

  #simpleCommand(): ShellSimpleCommand | ShellFunction {
    const assignments: ShellAssignment[] = [];
    const words: ShellWord[] = [];
    const redirects: ShellRedirect[] = [];
    for (;;) {
      this.#skipBlanks();
      const op = this.#operator();
      if (op === "&>" || op === "&>>" || op === "<<<") this.#refuseBashOperator(op);
      if (op === "<(" || op === ">(") {
        words.push(this.#processSubstitution(op[0] as "<" | ">"));
        continue;
      }
      if (op !== "" && isRedirectOp(op)) {
        redirects.push(this.#redirect(undefined, op));
        continue;
      }
      if (op === "(" && words.length === 1 && assignments.length === 0 && redirects.length === 0) {
        return this.#functionDefinition(words[0]!);
      }
      if (op !== "") break;
      const fd = this.#ioNumber();
      if (fd !== undefined) {
        const redirectOp = this.#operator();
        if (redirectOp === "<<<") this.#refuseBashOperator(redirectOp);
        if (!isRedirectOp(redirectOp)) {
          this.#fail("syntax", `expected a redirection after ${fd} at offset ${this.#pos}`);
        }
        redirects.push(this.#redirect(fd, redirectOp));
        continue;
      }
      const start = this.#pos;
      const word = this.#word();
      if (word === undefined) break;
      if (/^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(word.raw) && /[<>]/.test(this.#peek())) {
        this.#fail(
          "unsupported-syntax",
          `\`${word.raw}${this.#peek()}\` allocates a file descriptor in bash but is a word in POSIX sh`,
        );
      }
      if (words.length === 0) {
        const assignment = this.#assignment(word, start);
        if (assignment !== undefined) {
          assignments.push(assignment);
          continue;
        }
      }
      words.push(word);
    }
    if (words.length === 0 && assignments.length === 0 && redirects.length === 0) {
      this.#fail("syntax", `expected a command at ${this.#describeHere()}`);
    }
    return { type: "simple", assignments, words, redirects };
  }

  #functionDefinition(nameWord: ShellWord): ShellFunction {
    const name = literalOf(nameWord);
    if (name === undefined || !/^[A-Za-z_][A-Za-z0-9_.:-]*$/.test(name)) {
      this.#fail("syntax", `invalid function name ${JSON.stringify(nameWord.raw)}`);
    }
    this.#pos++; // (
    this.#skipBlanks();
    this.#expectOperator(")");
    this.#skipLinebreaks();
    return { type: "function", name, body: this.#command() };
  }

  #assignment(word: ShellWord, start: number): ShellAssignment | undefined {
    const first = word.parts[0];
    if (first === undefined || first.type !== "text" || first.quoted) return undefined;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)(\+?)=/.exec(first.value);
    if (match === null) {
      if (/^[A-Za-z_][A-Za-z0-9_]*\[/.test(first.value) && word.raw.includes("]=")) {
        this.#fail("unsupported-syntax", "array assignments are bash syntax");
      }
      return undefined;
    }
    if (match[2] === "+") {
      this.#fail(
        "unsupported-syntax",
        `\`${match[1]}+=\` appends in bash but is a command name in POSIX sh`,
      );
    }
    const name = match[1]!;
    const rest = first.value.slice(match[0].length);
    const parts: ShellWordPart[] =
      rest === "" ? [] : [{ type: "text", value: rest, quoted: false }];
    parts.push(...word.parts.slice(1));
    const raw = this.src.slice(start + match[0].length, start + word.raw.length);
    return { name, value: { raw, parts } };
  }

  /** Digits immediately followed by `<` or `>` (`2>file`): the redirected descriptor. */
  #ioNumber(): number | undefined {
    let end = this.#pos;
    while (end < this.src.length && /[0-9]/.test(this.src[end]!)) end++;
    if (end === this.#pos || end - this.#pos > 4) return undefined;
    const next = this.src[end];
    if (next !== "<" && next !== ">") return undefined;
    const fd = Number(this.src.slice(this.#pos, end));
    this.#pos = end;
    return fd;
  }

  #redirects(): ShellRedirect[] {
    const out: ShellRedirect[] = [];
    for (;;) {
      this.#skipBlanks();
      const op = this.#operator();
      if (op === "&>" || op === "&>>" || op === "<<<") this.#refuseBashOperator(op);
      if (op !== "" && isRedirectOp(op)) {
        out.push(this.#redirect(undefined, op));
        continue;
      }
      if (op !== "") return out;
      const fd = this.#ioNumber();
      if (fd === undefined) return out;
      const redirectOp = this.#operator();
      if (!isRedirectOp(redirectOp)) this.#fail("syntax", `expected a redirection after ${fd}`);
      out.push(this.#redirect(fd, redirectOp));
    }
  }

  #redirect(fd: number | undefined, op: ShellRedirectOp): ShellRedirect {
    this.#pos += op.length;
    this.#skipBlanks();
    const target = this.#word();
    if (target === undefined) {
      this.#fail("syntax", `\`${op}\` needs a target at ${this.#describeHere()}`);
    }
    if (op === "<<" || op === "<<-") {
      if (target.parts.some((p) => p.type !== "text")) {
        this.#fail(
          "unsupported-syntax",
          `here-document delimiter ${JSON.stringify(target.raw)} contains an expansion`,
        );
      }
      const delimiter = target.parts.map((p) => (p.type === "text" ? p.value : "")).join("");
      const quoted = target.parts.some((p) => p.type === "text" && p.quoted);
      const doc: ShellHereDoc = { delimiter, quoted, body: "", parts: [] };
      this.#pending.push({ doc, stripTabs: op === "<<-" });
      return { fd, op, target, heredoc: doc };
    }
    if (op === ">&" || op === "<&") {
      const value = literalOf(target);
      if (value !== undefined && !/^([0-9]+|-)$/.test(value)) {
        this.#fail(
          "unsupported-syntax",
          `\`${op}${value}\` redirects both streams to a file in bash but is an error in POSIX sh; use \`>file 2>&1\``,
        );
      }
    }
    return { fd, op, target };
  }

  #readHereDocBody(doc: ShellHereDoc, stripTabs: boolean): void {
    let body = "";
    for (;;) {
      if (this.#pos >= this.src.length) {
        this.#fail("syntax", `here-document "${doc.delimiter}" is not terminated`);
      }
      let end = this.src.indexOf("\n", this.#pos);
      if (end === -1) end = this.src.length;
      let line = this.src.slice(this.#pos, end);
      this.#pos = Math.min(end + 1, this.src.length);
      if (stripTabs) line = line.replace(/^\t+/, "");
      if (line === doc.delimiter) break;
      body += `${line}\n`;
    }
    doc.body = body;
    doc.parts = doc.quoted
      ? [{ type: "text", value: body, quoted: true }]
      : new Parser(body, this.command, this.maxDepth, this.#depth).#hereDocParts();
  }

  /** Parses an unquoted here-document body: like double quotes, but `"` is ordinary. */
  #hereDocParts(): ShellWordPart[] {
    const parts: ShellWordPart[] = [];
    let text = "";
    const flush = () => {
      if (text !== "") parts.push({ type: "text", value: text, quoted: true });
      text = "";
    };
    while (this.#pos < this.src.length) {
      const c = this.#peek();
      if (c === "\\") {
        const next = this.#peek(1);
        if (next === "$" || next === "`" || next === "\\") {
          text += next;
          this.#pos += 2;
        } else if (next === "\n") {
          this.#pos += 2;
        } else {
          text += c;
          this.#pos++;
        }
      } else if (c === "$") {
        flush();
        parts.push(this.#dollar(true));
      } else if (c === "`") {
        flush();
        parts.push(this.#backtick(true));
      } else {
        text += c;
        this.#pos++;
      }
    }
    flush();
    return mergeText(parts);
  }

  #processSubstitution(direction: "<" | ">"): ShellWord {
    const start = this.#pos;
    this.#pos += 2;
    this.#enter();
    const body = this.#list({ allowEmpty: true, stopOps: new Set([")"]) });
    this.#leave();
    this.#expectOperator(")");
    const raw = this.src.slice(start, this.#pos);
    return { raw, parts: [{ type: "process-substitution", raw, direction, body }] };
  }

  #expectOperator(op: string): void {
    this.#skipLinebreaks();
    if (!this.#startsWith(op))
      this.#fail("syntax", `expected \`${op}\` at ${this.#describeHere()}`);
    this.#pos += op.length;
  }

  /** The reserved word at the current position (after blanks), without consuming it. */
  #peekReserved(): string | undefined {
    const save = this.#pos;
    this.#skipBlanks();
    const at = this.#pos;
    const c = this.#peek();
    let result: string | undefined;
    if (c === "{" || c === "}" || c === "!") {
      const next = this.#peek(1);
      if (next === "" || METACHARACTERS.has(next)) result = c;
    }
    if (result === undefined && /[a-z[\]]/.test(c)) {
      let end = at;
      while (end < this.src.length && /[a-z[\]]/.test(this.src[end]!)) end++;
      const next = this.src[end] ?? "";
      if (next === "" || METACHARACTERS.has(next)) {
        const word = this.src.slice(at, end);
        if (
          CLOSERS.has(word) ||
          BASH_ONLY_WORDS.has(word) ||
          ["if", "while", "until", "for", "case", "in"].includes(word)
        ) {
          result = word;
        }
      }
    }
    this.#pos = save;
    return result;
  }

  #expectReserved(word: string): void {
    this.#skipLinebreaks();
    if (this.#peekReserved() !== word) {
      this.#fail("syntax", `expected \`${word}\` at ${this.#describeHere()}`);
    }
    this.#skipBlanks();
    this.#pos += word.length;
  }

  // ------------------------------------------------------------------ words

  /** Reads one word in unquoted context, or returns undefined at a metacharacter or EOF. */
  #word(): ShellWord | undefined {
    const start = this.#pos;
    const parts: ShellWordPart[] = [];
    let text = "";
    const flush = () => {
      if (text !== "") parts.push({ type: "text", value: text, quoted: false });
      text = "";
    };
    while (this.#pos < this.src.length) {
      const c = this.#peek();
      if (METACHARACTERS.has(c)) break;
      if (c === "\\") {
        const next = this.#peek(1);
        if (next === "\n") {
          this.#pos += 2;
          continue;
        }
        if (next === "") this.#fail("syntax", "the command ends with a lone backslash");
        flush();
        parts.push({ type: "text", value: next, quoted: true });
        this.#pos += 2;
      } else if (c === "'") {
        flush();
        const end = this.src.indexOf("'", this.#pos + 1);
        if (end === -1) this.#fail("syntax", `unterminated single quote at offset ${this.#pos}`);
        parts.push({ type: "text", value: this.src.slice(this.#pos + 1, end), quoted: true });
        this.#pos = end + 1;
      } else if (c === '"') {
        flush();
        parts.push(...this.#doubleQuoted());
      } else if (c === "$") {
        flush();
        parts.push(this.#dollar(false));
      } else if (c === "`") {
        flush();
        parts.push(this.#backtick(false));
      } else {
        if (FULLWIDTH_ASCII.test(c)) {
          this.#fail(
            "forbidden-character",
            `the fullwidth character ${describeCodePoint(c)} ("${c}") at offset ${this.#pos} looks like ASCII but is not; quote it if it is meant as text`,
          );
        }
        text += c;
        this.#pos++;
      }
    }
    flush();
    if (this.#pos === start) return undefined;
    return { raw: this.src.slice(start, this.#pos), parts: mergeText(parts) };
  }

  #doubleQuoted(): ShellWordPart[] {
    const open = this.#pos;
    this.#pos++;
    const parts: ShellWordPart[] = [];
    let text = "";
    const flush = () => {
      if (text !== "") parts.push({ type: "text", value: text, quoted: true });
      text = "";
    };
    for (;;) {
      if (this.#pos >= this.src.length) {
        this.#fail("syntax", `unterminated double quote at offset ${open}`);
      }
      const c = this.#peek();
      if (c === '"') {
        this.#pos++;
        break;
      }
      if (c === "\\") {
        const next = this.#peek(1);
        if (next === "$" || next === "`" || next === '"' || next === "\\") {
          text += next;
          this.#pos += 2;
        } else if (next === "\n") {
          this.#pos += 2;
        } else {
          text += c;
          this.#pos++;
        }
      } else if (c === "$") {
        flush();
        parts.push(this.#dollar(true));
      } else if (c === "`") {
        flush();
        parts.push(this.#backtick(true));
      } else {
        text += c;
        this.#pos++;
      }
    }
    flush();
    // `""` is an empty word, not nothing.
    if (parts.length === 0) parts.push({ type: "text", value: "", quoted: true });
    return parts;
  }

  #dollar(quoted: boolean): ShellWordPart {
    const start = this.#pos;
    const next = this.#peek(1);
    if (next === "(") {
      if (this.#peek(2) === "(") return this.#arithmetic(quoted);
      this.#pos += 2;
      this.#enter();
      const body = this.#list({ allowEmpty: true, stopOps: new Set([")"]) });
      this.#leave();
      this.#expectOperator(")");
      const raw = this.src.slice(start, this.#pos);
      return { type: "command-substitution", raw, quoted, backtick: false, body };
    }
    if (next === "{") return this.#braceParameter(quoted);
    if (/[A-Za-z_]/.test(next)) {
      let end = this.#pos + 2;
      while (end < this.src.length && /[A-Za-z0-9_]/.test(this.src[end]!)) end++;
      this.#pos = end;
      return { type: "parameter", raw: this.src.slice(start, end), quoted, commands: [] };
    }
    if (/[0-9]/.test(next) || SPECIAL_PARAMETERS.has(next)) {
      this.#pos += 2;
      return { type: "parameter", raw: this.src.slice(start, this.#pos), quoted, commands: [] };
    }
    if (!quoted && next === "'") {
      this.#fail(
        "unsupported-syntax",
        "`$'...'` quoting is bash syntax that POSIX sh reads differently; use printf",
      );
    }
    if (!quoted && next === '"') {
      this.#fail("unsupported-syntax", '`$"..."` (locale translation) is bash syntax');
    }
    this.#pos++;
    return { type: "text", value: "$", quoted };
  }

  #braceParameter(quoted: boolean): ShellWordPart {
    const start = this.#pos;
    const first = this.#peek(2);
    if (first === "" || first === " " || first === "\t" || first === "\n" || first === "|") {
      this.#fail(
        "unsupported-syntax",
        "`${ command; }` runs a command in newer bash and ksh; POSIX sh calls it a bad substitution",
      );
    }
    if (first === "}") this.#fail("syntax", "`${}` is a bad substitution");
    this.#pos += 2;
    const commands: ShellList[] = [];
    let depth = 1;
    for (;;) {
      if (this.#pos >= this.src.length)
        this.#fail("syntax", `unterminated \`\${\` at offset ${start}`);
      const c = this.#peek();
      if (c === "}") {
        depth--;
        this.#pos++;
        if (depth === 0) break;
      } else if (c === "{") {
        depth++;
        this.#pos++;
      } else if (c === "\\") {
        this.#pos += 2;
      } else if (c === "'" && !quoted) {
        const end = this.src.indexOf("'", this.#pos + 1);
        if (end === -1) this.#fail("syntax", `unterminated single quote at offset ${this.#pos}`);
        this.#pos = end + 1;
      } else if (c === '"') {
        collectCommands(this.#doubleQuoted(), commands);
      } else if (c === "$") {
        collectCommands([this.#dollar(true)], commands);
      } else if (c === "`") {
        collectCommands([this.#backtick(true)], commands);
      } else {
        this.#pos++;
      }
    }
    return { type: "parameter", raw: this.src.slice(start, this.#pos), quoted, commands };
  }

  #arithmetic(quoted: boolean): ShellWordPart {
    const start = this.#pos;
    this.#pos += 3;
    const commands: ShellList[] = [];
    let depth = 0;
    for (;;) {
      if (this.#pos >= this.src.length)
        this.#fail("syntax", `unterminated \`$((\` at offset ${start}`);
      const c = this.#peek();
      if (c === "(") {
        depth++;
        this.#pos++;
      } else if (c === ")") {
        if (depth > 0) {
          depth--;
          this.#pos++;
          continue;
        }
        if (this.#peek(1) !== ")") {
          this.#fail(
            "unsupported-syntax",
            "`$((` that is not arithmetic is ambiguous; write `$( (` for a subshell",
          );
        }
        this.#pos += 2;
        break;
      } else if (c === "\\") {
        this.#pos += 2;
      } else if (c === "'") {
        this.#fail("syntax", "single quotes are not allowed in arithmetic");
      } else if (c === '"') {
        collectCommands(this.#doubleQuoted(), commands);
      } else if (c === "$") {
        collectCommands([this.#dollar(true)], commands);
      } else if (c === "`") {
        collectCommands([this.#backtick(true)], commands);
      } else {
        this.#pos++;
      }
    }
    return { type: "arithmetic", raw: this.src.slice(start, this.#pos), quoted, commands };
  }

  #backtick(quoted: boolean): ShellWordPart {
    const start = this.#pos;
    this.#pos++;
    let inner = "";
    for (;;) {
      if (this.#pos >= this.src.length) {
        this.#fail("syntax", `unterminated backquote at offset ${start}`);
      }
      const c = this.#peek();
      if (c === "`") {
        this.#pos++;
        break;
      }
      if (c === "\\") {
        const next = this.#peek(1);
        if (next === "$" || next === "`" || next === "\\" || (quoted && next === '"')) {
          inner += next;
        } else {
          inner += c + next;
        }
        this.#pos += 2;
        continue;
      }
      inner += c;
      this.#pos++;
    }
    this.#enter();
    const body = new Parser(inner, this.command, this.maxDepth, this.#depth).parseScript();
    this.#leave();
    return {
      type: "command-substitution",
      raw: this.src.slice(start, this.#pos),
      quoted,
      backtick: true,
      body,
    };
  }
}

function isRedirectOp(op: string): op is ShellRedirectOp {
  return (
    op === "<" ||
    op === ">" ||
    op === ">>" ||
    op === ">|" ||
    op === "<>" ||
    op === "<&" ||
    op === ">&" ||
    op === "<<" ||
    op === "<<-"
  );
}

function collectCommands(parts: ShellWordPart[], into: ShellList[]): void {
  for (const part of parts) {
    if (part.type === "command-substitution") into.push(part.body);
    else if (part.type === "parameter" || part.type === "arithmetic") into.push(...part.commands);
  }
}

/** Joins adjacent text parts with the same quoting. */
function mergeText(parts: ShellWordPart[]): ShellWordPart[] {
  const out: ShellWordPart[] = [];
  for (const part of parts) {
    const last = out.at(-1);
    if (part.type === "text" && last?.type === "text" && last.quoted === part.quoted) {
      out[out.length - 1] = { type: "text", value: last.value + part.value, quoted: part.quoted };
    } else {
      out.push(part);
    }
  }
  return out;
}

/**
 * The value of a word that contains only text (after quote removal), or undefined when it
 * contains an expansion. Unquoted glob, tilde or brace characters are not interpreted here:
 * the binding decides what they mean.
 *
 * @example
 * ```ts
 * const tree = parseShell(`echo 'a b' $HOME`);
 * const echo = tree.items[0]!.command.first.commands[0] as ShellSimpleCommand;
 * literalOf(echo.words[1]!); // "a b"
 * literalOf(echo.words[2]!); // undefined
 * ```
 */
export function literalOf(word: ShellWord): string | undefined {
  let out = "";
  for (const part of word.parts) {
    if (part.type !== "text") return undefined;
    out += part.value;
  }
  return out;
}
