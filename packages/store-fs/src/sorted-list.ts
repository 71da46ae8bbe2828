/**
 * A sorted list in chunks of at most {@link MAX_CHUNK} items: insert and remove cost a binary
 * search and a move of at most one chunk (O(log n + √n)-ish), not of the whole list, so saving
 * a session among 100,000 stays cheap however its position in the order changes; reading a
 * page from any position is a binary search and a walk.
 */

/** Items per chunk before it is split. */
const MAX_CHUNK = 512;

/** A list kept sorted by `compare`; items must be distinct under it. */
export class SortedList<T> {
  readonly #compare: (a: T, b: T) => number;
  #chunks: T[][] = [];
  #size = 0;

  constructor(compare: (a: T, b: T) => number) {
    this.#compare = compare;
  }

  get size(): number {
    return this.#size;
  }

  /** Replaces the content with `items` (sorted here). */
  reset(items: T[]): void {
    items.sort(this.#compare);
    this.#chunks = [];
    for (let i = 0; i < items.length; i += MAX_CHUNK / 2) {
      this.#chunks.push(items.slice(i, i + MAX_CHUNK / 2));
    }
    this.#size = items.length;
  }

  insert(item: T): void {
    if (this.#chunks.length === 0) {
      this.#chunks.push([item]);
      this.#size = 1;
      return;
    }
    const c = Math.min(this.#chunkFor(item), this.#chunks.length - 1);
    const chunk = this.#chunks[c]!;
    chunk.splice(this.#indexIn(chunk, item), 0, item);
    this.#size++;
    if (chunk.length > MAX_CHUNK) {
      this.#chunks.splice(c + 1, 0, chunk.splice(chunk.length >> 1));
    }
  }

  /** Removes `item` (found by comparison). Returns whether it was there. */
  remove(item: T): boolean {
    const c = this.#chunkFor(item);
    const chunk = this.#chunks[c];
    if (chunk === undefined) return false;
    const at = this.#indexIn(chunk, item);
    if (at >= chunk.length || this.#compare(chunk[at]!, item) !== 0) return false;
    chunk.splice(at, 1);
    this.#size--;
    if (chunk.length === 0) this.#chunks.splice(c, 1);
    return true;
  }

  /**
   * The items from the first one not before `probe` (or after it, with `exclusive`), in
   * order; from the start when `probe` is undefined.
   */
  *from(probe: T | undefined, exclusive = false): Generator<T> {
    let c = 0;
    let i = 0;
    if (probe !== undefined) {
      c = this.#chunkFor(probe);
      const chunk = this.#chunks[c];
      if (chunk === undefined) return;
      i = this.#indexIn(chunk, probe);
      if (exclusive && i < chunk.length && this.#compare(chunk[i]!, probe) === 0) i++;
    }
    for (; c < this.#chunks.length; c++, i = 0) {
      const chunk = this.#chunks[c]!;
      for (; i < chunk.length; i++) yield chunk[i]!;
    }
  }

  /** Index of the first chunk whose last item is not before `item` (length if none). */
  #chunkFor(item: T): number {
    let lo = 0;
    let hi = this.#chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const chunk = this.#chunks[mid]!;
      if (this.#compare(chunk[chunk.length - 1]!, item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the first item of `chunk` not before `item`. */
  #indexIn(chunk: T[], item: T): number {
    let lo = 0;
    let hi = chunk.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compare(chunk[mid]!, item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
