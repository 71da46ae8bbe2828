/**
 * A byte-capped ring of a process's output: stdout and stderr interleaved as they arrived,
 * oldest bytes dropped first once the cap is reached.
 */

/** Which stream a chunk came from. */
export type OutputStream = "stdout" | "stderr";

interface Chunk {
  stream: OutputStream;
  data: Buffer;
}

/** Options of {@link OutputRing.tail}. */
export interface TailOptions {
  /** Last N lines. */
  lines?: number;
  /** Last N bytes (applied after `lines`). */
  bytes?: number;
  /** Only this stream. Default both, interleaved. */
  stream?: OutputStream;
}

/**
 * Output kept within `capacity` bytes.
 *
 * @example
 * ```ts
 * const ring = new OutputRing(8);
 * ring.append("stdout", Buffer.from("hello world\n"));
 * ring.text(); // "o world\n" (older bytes dropped)
 * ring.dropped; // 4
 * ```
 */
export class OutputRing {
  readonly #chunks: Chunk[] = [];
  #size = 0;
  #written = 0;
  #dropped = 0;

  constructor(readonly capacity: number) {}

  /** Bytes ever appended. */
  get written(): number {
    return this.#written;
  }

  /** Bytes dropped to stay within the capacity. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Offset (in bytes ever written) of the oldest byte still kept. */
  get start(): number {
    return this.#written - this.#size;
  }

  append(stream: OutputStream, data: Buffer): void {
    if (data.length === 0) return;
    this.#written += data.length;
    this.#chunks.push({ stream, data });
    this.#size += data.length;
    while (this.#size > this.capacity) {
      const first = this.#chunks[0]!;
      const excess = this.#size - this.capacity;
      if (first.data.length <= excess) {
        this.#chunks.shift();
        this.#size -= first.data.length;
        this.#dropped += first.data.length;
      } else {
        // Never start in the middle of a UTF-8 sequence.
        let cut = excess;
        while (cut < first.data.length && (first.data[cut]! & 0xc0) === 0x80) cut++;
        first.data = first.data.subarray(cut);
        this.#size -= cut;
        this.#dropped += cut;
      }
    }
  }

  /** Everything kept (of one stream, or both interleaved), decoded as UTF-8. */
  text(stream?: OutputStream): string {
    return this.#bytes(stream).toString("utf8");
  }

  /** The end of the output. */
  tail(options: TailOptions = {}): string {
    let text = this.text(options.stream);
    if (options.lines !== undefined) {
      const trailing = text.endsWith("\n");
      const lines = (trailing ? text.slice(0, -1) : text).split("\n");
      text = lines.slice(-Math.max(0, options.lines)).join("\n") + (trailing ? "\n" : "");
      if (options.lines <= 0) text = "";
    }
    if (options.bytes !== undefined) {
      const bytes = Buffer.from(text, "utf8");
      if (bytes.length > options.bytes) {
        let cut = bytes.length - Math.max(0, options.bytes);
        while (cut < bytes.length && (bytes[cut]! & 0xc0) === 0x80) cut++;
        text = bytes.subarray(cut).toString("utf8");
      }
    }
    return text;
  }

  /**
   * Output written at or after `offset` (bytes ever written), both streams interleaved.
   * `skipped` counts bytes dropped before they could be read; `next` is the offset to pass
   * next time.
   */
  since(offset: number): { text: string; next: number; skipped: number } {
    const from = Math.max(offset, this.start);
    const all = this.#bytes();
    let cut = from - this.start;
    while (cut < all.length && (all[cut]! & 0xc0) === 0x80) cut++;
    return {
      text: all.subarray(cut).toString("utf8"),
      next: this.#written,
      skipped: Math.max(0, this.start - offset),
    };
  }

  #bytes(stream?: OutputStream): Buffer {
    const parts = this.#chunks.filter((c) => stream === undefined || c.stream === stream);
    return Buffer.concat(parts.map((c) => c.data));
  }
}
