/**
 * The gateway's own log: a bounded ring of lines in memory that `logs.tail` reads with a byte
 * cursor (as if it were a file that only grows), and an optional sink (stderr in the CLI).
 */

/** Where log lines go besides the ring (the CLI passes one that writes to stderr). */
export type GatewayLogSink = (line: string) => void;

/** The `logs.tail` result shape. */
export interface LogsTail {
  file: string;
  cursor: number;
  size: number;
  lines: string[];
  truncated?: boolean;
  reset?: boolean;
  skippedBytes?: number;
}

/**
 * A bounded in-memory log. Each line has a byte offset in a virtual stream; lines that fell
 * out of the ring are reported as `skippedBytes` to a reader whose cursor points at them.
 */
export class GatewayLog {
  readonly #maxLines: number;
  readonly #sink: GatewayLogSink | undefined;
  readonly #lines: Array<{ offset: number; text: string }> = [];
  #size = 0;

  constructor(options: { maxLines?: number; sink?: GatewayLogSink } = {}) {
    this.#maxLines = options.maxLines ?? 2000;
    this.#sink = options.sink;
  }

  /** Appends one line: `<ISO time> <level> <message>`. */
  write(level: "debug" | "info" | "warn" | "error", message: string): void {
    const text = `${new Date().toISOString()} ${level} ${message.replace(/[\r\n]+/g, " ")}`;
    this.#keep(text);
    try {
      this.#sink?.(text);
    } catch {
      // A broken sink never breaks the gateway.
    }
  }

  /**
   * Takes in the lines `earlier` kept (written before this log existed, already sent to their
   * sink), ahead of its own, so that `tail` shows them too; they are not sent to the sink
   * again.
   */
  adopt(earlier: GatewayLog): void {
    const own = this.#lines.splice(0).map((line) => line.text);
    this.#size = 0;
    for (const line of earlier.#lines) this.#keep(line.text);
    for (const text of own) this.#keep(text);
  }

  #keep(text: string): void {
    this.#lines.push({ offset: this.#size, text });
    this.#size += Buffer.byteLength(text, "utf8") + 1;
    if (this.#lines.length > this.#maxLines) this.#lines.shift();
  }

  info(message: string): void {
    this.write("info", message);
  }

  warn(message: string): void {
    this.write("warn", message);
  }

  error(message: string): void {
    this.write("error", message);
  }

  /**
   * Lines from `cursor` on (the last `limit` lines when no cursor is given), at most
   * `maxBytes` of them. The returned `cursor` is where the next call continues.
   */
  tail(options: { cursor?: number; limit?: number; maxBytes?: number } = {}): LogsTail {
    const limit = Math.min(options.limit ?? 200, 5000);
    const maxBytes = options.maxBytes ?? 250_000;
    const first = this.#lines[0]?.offset ?? this.#size;
    let reset = false;
    let skippedBytes = 0;
    let start: number;
    if (options.cursor === undefined) {
      start = Math.max(0, this.#lines.length - limit);
    } else if (options.cursor > this.#size) {
      // The reader is ahead of us: the log was restarted.
      reset = true;
      start = Math.max(0, this.#lines.length - limit);
    } else {
      if (options.cursor < first) skippedBytes = first - options.cursor;
      start = this.#lines.findIndex((l) => l.offset >= options.cursor!);
      if (start === -1) start = this.#lines.length;
    }
    const lines: string[] = [];
    let bytes = 0;
    let truncated = false;
    let cursor = this.#lines[start]?.offset ?? this.#size;
    for (let i = start; i < this.#lines.length; i++) {
      const line = this.#lines[i]!;
      const size = Buffer.byteLength(line.text, "utf8") + 1;
      if (lines.length >= limit || bytes + size > maxBytes) {
        truncated = true;
        break;
      }
      lines.push(line.text);
      bytes += size;
      cursor = line.offset + size;
    }
    return {
      file: "memory:gateway.log",
      cursor,
      size: this.#size,
      lines,
      ...(truncated ? { truncated } : {}),
      ...(reset ? { reset } : {}),
      ...(skippedBytes > 0 ? { skippedBytes } : {}),
    };
  }
}
