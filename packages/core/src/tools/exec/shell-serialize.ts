/**
 * Writes a parsed, fully static command back out as POSIX sh in one canonical spelling:
 * every word single-quoted unless it is plainly safe, operators explicit, here-documents
 * with quoted delimiters. What runs is then exactly what was analysed, whatever quirks the
 * shell's own reader has. Only static trees (no expansions) can be serialized.
 */
import type {
  ShellAndOr,
  ShellCommand,
  ShellList,
  ShellPipeline,
  ShellRedirect,
  ShellSimpleCommand,
  ShellWord,
} from "./shell-parse.js";

const RESERVED = new Set([
  "!",
  "{",
  "}",
  "case",
  "do",
  "done",
  "elif",
  "else",
  "esac",
  "fi",
  "for",
  "if",
  "in",
  "then",
  "until",
  "while",
  "[[",
  "]]",
  "function",
  "select",
  "coproc",
  "time",
]);
const SAFE = /^[A-Za-z0-9_/.,:@%+-]+$/;

/**
 * Quotes one argument for POSIX sh: bare when it is made of plainly safe characters and is
 * not a reserved word, otherwise in single quotes.
 *
 * @example
 * ```ts
 * quoteShellWord("status"); // status
 * quoteShellWord("it's here"); // 'it'\''s here'
 * ```
 */
export function quoteShellWord(value: string): string {
  if (value !== "" && SAFE.test(value) && !RESERVED.has(value)) return value;
  return `'${value.replaceAll("'", "'\\''")}'`;
}

class Writer {
  out = "";
  #pending: Array<{ delimiter: string; body: string }> = [];

  text(s: string): void {
    this.out += s;
  }

  /** Ends a line; here-document bodies waiting for a newline follow it. */
  newline(): void {
    this.out += "\n";
    for (const doc of this.#pending) this.out += `${doc.body}${doc.delimiter}\n`;
    this.#pending = [];
  }

  hereDoc(body: string): string {
    const lines = new Set(body.split("\n"));
    let delimiter = "BEAMCLAW_EOF";
    for (let n = 1; lines.has(delimiter); n++) delimiter = `BEAMCLAW_EOF_${n}`;
    this.#pending.push({ delimiter, body });
    return delimiter;
  }
}

/**
 * Serializes a static tree. `programs` maps simple commands to the absolute path that
 * replaces their command name.
 *
 * @throws Error when the tree contains an expansion (a bug in the caller: only static
 *   bindings are serialized).
 *
 * @example
 * ```ts
 * serializeShell(parseShell(`ls "a b"|wc -l`)); // "ls 'a b' | wc -l\n"
 * ```
 */
export function serializeShell(
  list: ShellList,
  programs: ReadonlyMap<ShellSimpleCommand, string> = new Map(),
): string {
  const writer = new Writer();
  writeList(writer, list, programs);
  return writer.out;
}

function writeList(w: Writer, list: ShellList, programs: ReadonlyMap<ShellSimpleCommand, string>) {
  for (const item of list.items) {
    writeAndOr(w, item.command, programs);
    if (item.background) w.text(" &");
    w.newline();
  }
}

function writeAndOr(
  w: Writer,
  node: ShellAndOr,
  programs: ReadonlyMap<ShellSimpleCommand, string>,
) {
  writePipeline(w, node.first, programs);
  for (const { op, pipeline } of node.rest) {
    w.text(` ${op} `);
    writePipeline(w, pipeline, programs);
  }
}

function writePipeline(
  w: Writer,
  node: ShellPipeline,
  programs: ReadonlyMap<ShellSimpleCommand, string>,
) {
  if (node.negated) w.text("! ");
  node.commands.forEach((command, i) => {
    if (i > 0) w.text(" | ");
    writeCommand(w, command, programs);
  });
}

function writeCommand(
  w: Writer,
  node: ShellCommand,
  programs: ReadonlyMap<ShellSimpleCommand, string>,
): void {
  switch (node.type) {
    case "simple": {
      const parts: string[] = [];
      for (const a of node.assignments) parts.push(`${a.name}=${quoteShellWord(value(a.value))}`);
      node.words.forEach((word, i) => {
        const program = i === 0 ? programs.get(node) : undefined;
        parts.push(quoteShellWord(program ?? value(word)));
      });
      w.text(parts.join(" "));
      writeRedirects(w, node.redirects, parts.length > 0);
      return;
    }
    case "subshell":
      w.text("(");
      w.newline();
      writeList(w, node.body, programs);
      w.text(")");
      writeRedirects(w, node.redirects, true);
      return;
    case "group":
      w.text("{");
      w.newline();
      writeList(w, node.body, programs);
      w.text("}");
      writeRedirects(w, node.redirects, true);
      return;
    case "if":
      node.clauses.forEach((clause, i) => {
        w.text(i === 0 ? "if" : "elif");
        w.newline();
        writeList(w, clause.condition, programs);
        w.text("then");
        w.newline();
        writeList(w, clause.body, programs);
      });
      if (node.elseBody !== undefined) {
        w.text("else");
        w.newline();
        writeList(w, node.elseBody, programs);
      }
      w.text("fi");
      writeRedirects(w, node.redirects, true);
      return;
    case "while":
    case "until":
      w.text(node.type);
      w.newline();
      writeList(w, node.condition, programs);
      w.text("do");
      w.newline();
      writeList(w, node.body, programs);
      w.text("done");
      writeRedirects(w, node.redirects, true);
      return;
    case "for":
      w.text(`for ${node.name}`);
      if (node.items !== undefined) {
        w.text(" in");
        for (const item of node.items) w.text(` ${quoteShellWord(value(item))}`);
      }
      w.newline();
      w.text("do");
      w.newline();
      writeList(w, node.body, programs);
      w.text("done");
      writeRedirects(w, node.redirects, true);
      return;
    case "case":
      w.text(`case ${quoteShellWord(value(node.subject))} in`);
      w.newline();
      for (const clause of node.clauses) {
        w.text(`${clause.patterns.map(pattern).join("|")})`);
        w.newline();
        writeList(w, clause.body, programs);
        w.text(";;");
        w.newline();
      }
      w.text("esac");
      writeRedirects(w, node.redirects, true);
      return;
    case "function":
      throw new Error("function definitions are dynamic and never serialized");
  }
}

function writeRedirects(w: Writer, redirects: ShellRedirect[], afterSomething: boolean): void {
  let first = true;
  for (const r of redirects) {
    if (afterSomething || !first) w.text(" ");
    first = false;
    const fd = r.fd === undefined ? "" : String(r.fd);
    if (r.heredoc !== undefined) {
      const delimiter = w.hereDoc(value({ raw: "", parts: r.heredoc.parts }));
      w.text(`${fd}<<'${delimiter}'`);
      continue;
    }
    const target = value(r.target);
    const dup = (r.op === ">&" || r.op === "<&") && /^([0-9]+|-)$/.test(target);
    w.text(`${fd}${r.op}${dup ? target : quoteShellWord(target)}`);
  }
}

function value(word: ShellWord): string {
  let out = "";
  for (const part of word.parts) {
    if (part.type !== "text") throw new Error(`cannot serialize the expansion ${part.raw}`);
    out += part.value;
  }
  return out;
}

/** A case pattern: unquoted glob characters keep their meaning, everything else is escaped. */
function pattern(word: ShellWord): string {
  let out = "";
  for (const part of word.parts) {
    if (part.type !== "text") throw new Error(`cannot serialize the expansion ${part.raw}`);
    if (part.quoted) {
      out += part.value === "" ? "''" : `'${part.value.replaceAll("'", "'\\''")}'`;
      continue;
    }
    for (const c of part.value) out += /[A-Za-z0-9*?[\]!^_.,/:@%+-]/.test(c) ? c : `\\${c}`;
  }
  return out;
}
