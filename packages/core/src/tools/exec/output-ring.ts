/**
 * A byte-capped ring of a process's output: stdout and stderr interleaved as they arrived,
 * oldest bytes dropped first once the cap is reached.
 */

import { jsonTextBytes } from "../output-cap.js";

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
   * next time. With `maxJsonBytes`, only the start of it that is at most that many bytes as
   * the content of a JSON string (escapes counted) is returned, cut between characters (but
   * at least one character, so that successive calls get through the output); `more` then
   * says whether output is left after `next`. A character whose last bytes are not written
   * yet is left for a later call, never split into two U+FFFD.
   */
  since(
    offset: number,
    maxJsonBytes = Number.POSITIVE_INFINITY,
  ): { text: string; next: number; skipped: number; more: boolean } {
    const from = Math.max(offset, this.start);
    const all = this.#bytes();
    let cut = from - this.start;
    while (cut < all.length && (all[cut]! & 0xc0) === 0x80) cut++;
    // A character whose last bytes are not written yet waits for the next call.
    const whole = Math.max(cut, completeLength(all));
    let end = whole;
    let text = all.subarray(cut, end).toString("utf8");
    // Each byte is at least one byte of JSON, but a control character is six and an invalid
    // byte (U+FFFD) three: shrink in proportion until it fits.
    for (let size = jsonTextBytes(text); size > maxJsonBytes; size = jsonTextBytes(text)) {
      const room = Math.min(end - cut - 1, Math.floor(((end - cut) * maxJsonBytes) / size));
      end = cut + Math.max(0, room);
      // `all[end]` is the first byte left out: while it continues a character, cut before it.
      while (end > cut && (all[end]! & 0xc0) === 0x80) end--;
      if (end === cut) {
        // A limit below one character's size still returns one, so that polls go on.
        end = cut + 1;
        while (end < whole && (all[end]! & 0xc0) === 0x80) end++;
        text = all.subarray(cut, end).toString("utf8");
        break;
      }
      text = all.subarray(cut, end).toString("utf8");
    }
    return {
      text,
      next: this.start + end,
      skipped: Math.max(0, this.start - offset),
      more: end < whole,
    };
  }

  #bytes(stream?: OutputStream): Buffer {
    const parts = this.#chunks.filter((c) => stream === undefined || c.stream === stream);
    return Buffer.concat(parts.map((c) => c.data));
  }
}

/**
 * How many bytes of `bytes` end on a whole UTF-8 character: all of them, unless the last
 * character's sequence is cut short (its lead byte announces more bytes than follow).
 */
function completeLength(bytes: Buffer): number {
  let lead = bytes.length - 1;
  while (lead >= 0 && bytes.length - lead < 4 && (bytes[lead]! & 0xc0) === 0x80) lead--;
  if (lead < 0) return bytes.length;
  const first = bytes[lead]!;
  // 0xC2–0xF4 start a sequence; any other byte here is one (invalid) byte on its own.
  const length = first >= 0xf5 ? 1 : first >= 0xf0 ? 4 : first >= 0xe0 ? 3 : first >= 0xc2 ? 2 : 1;
  return lead + length > bytes.length ? lead : bytes.length;
}
