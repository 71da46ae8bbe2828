/**
 * Reading JSONL files written by this store, with the one repair a crash can call for: the
 * last line of an append-only file may be torn (the process died mid-write), so a final
 * line with no newline, or a final line that is not valid JSON, is cut off. Any other bad
 * line is corruption, reported as `STORE_CORRUPT` with the file and line number.
 */
import { StoreError } from "@beamclaw/core";

const NEWLINE = 0x0a;

/** One line of a JSONL file: its parsed value and where it starts. */
export interface JsonlLine {
  value: unknown;
  /** Byte offset of the line's first byte. */
  offset: number;
  /** The line's text without its newline. */
  text: string;
}

/** A JSONL file's content after the tail repair. */
export interface ParsedJsonl {
  lines: JsonlLine[];
  /** Length of the valid prefix; the file is truncated to this when `dropped` is set. */
  validLength: number;
  /** What was cut from the end, if anything. */
  dropped?: { bytes: number; reason: string };
}

/**
 * Parses every line of `content` (the whole file). Blank lines are skipped (a person may
 * leave one while editing). `file` names the file in errors.
 *
 * @throws StoreError `STORE_CORRUPT` when a line other than the last is not JSON.
 */
export function parseJsonl(content: Buffer, file: string): ParsedJsonl {
  const lines: JsonlLine[] = [];
  let start = 0;
  let lineNumber = 0;
  let validLength = 0;
  while (start < content.length) {
    const end = content.indexOf(NEWLINE, start);
    lineNumber++;
    if (end === -1) {
      return {
        lines,
        validLength,
        dropped: {
          bytes: content.length - validLength,
          reason: `line ${lineNumber} has no newline (torn write)`,
        },
      };
    }
    const text = content.toString("utf8", start, end);
    if (text.trim().length > 0) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        if (end + 1 >= content.length) {
          return {
            lines,
            validLength,
            dropped: {
              bytes: content.length - validLength,
              reason: `last line ${lineNumber} is not valid JSON (torn write)`,
            },
          };
        }
        throw new StoreError(
          "STORE_CORRUPT",
          `${file}:${lineNumber} is not valid JSON and is not the last line, so it is not a torn write: ${(error as Error).message}`,
          { cause: error },
        );
      }
      lines.push({ value, offset: start, text });
    }
    start = end + 1;
    validLength = start;
  }
  return { lines, validLength };
}

/** A `STORE_CORRUPT` error for a line whose JSON does not have the expected shape. */
export function badLine(file: string, line: JsonlLine, expected: string): StoreError {
  const preview = line.text.length > 120 ? `${line.text.slice(0, 120)}…` : line.text;
  return new StoreError(
    "STORE_CORRUPT",
    `${file} at byte ${line.offset}: expected ${expected}, found ${preview}`,
  );
}
