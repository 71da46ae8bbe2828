/**
 * An indexed binary min-heap: every entry knows its own position, so an entry can be moved
 * or removed in O(log n) when its job is rescheduled, disabled or deleted. The cron service
 * keeps one per agent and arms a single timer for its top.
 * @internal
 */

/** What the heap needs from an entry: its key and a slot for its position. */
export interface HeapEntry {
  /** The key: epoch ms the entry is due. */
  dueAt: number;
  /** Position in the heap, or -1 when not in it. Owned by the heap. */
  heapIndex: number;
}

/** @internal */
export class MinHeap<T extends HeapEntry> {
  readonly #items: T[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** The entry due first, without removing it. */
  peek(): T | undefined {
    return this.#items[0];
  }

  has(entry: T): boolean {
    return entry.heapIndex >= 0 && this.#items[entry.heapIndex] === entry;
  }

  /** Inserts `entry` with key `dueAt`, or moves it there if it is already in the heap. */
  set(entry: T, dueAt: number): void {
    if (this.has(entry)) {
      const before = entry.dueAt;
      entry.dueAt = dueAt;
      if (dueAt < before) this.#up(entry.heapIndex);
      else if (dueAt > before) this.#down(entry.heapIndex);
      return;
    }
    entry.dueAt = dueAt;
    entry.heapIndex = this.#items.length;
    this.#items.push(entry);
    this.#up(entry.heapIndex);
  }

  /** Removes and returns the entry due first. */
  pop(): T | undefined {
    const items = this.#items;
    const top = items[0];
    if (top === undefined) return undefined;
    this.#removeAt(0);
    return top;
  }

  /** Removes `entry` if it is in the heap. */
  delete(entry: T): boolean {
    if (!this.has(entry)) return false;
    this.#removeAt(entry.heapIndex);
    return true;
  }

  #removeAt(index: number): void {
    const items = this.#items;
    const removed = items[index]!;
    const last = items.pop()!;
    removed.heapIndex = -1;
    if (last === removed) return;
    items[index] = last;
    last.heapIndex = index;
    this.#down(index);
    this.#up(last.heapIndex);
  }

  #up(index: number): void {
    const items = this.#items;
    const entry = items[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = items[parentIndex]!;
      if (parent.dueAt <= entry.dueAt) break;
      items[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    items[index] = entry;
    entry.heapIndex = index;
  }

  #down(index: number): void {
    const items = this.#items;
    const length = items.length;
    const entry = items[index]!;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= length) break;
      const right = left + 1;
      const child = right < length && items[right]!.dueAt < items[left]!.dueAt ? right : left;
      const smaller = items[child]!;
      if (smaller.dueAt >= entry.dueAt) break;
      items[index] = smaller;
      smaller.heapIndex = index;
      index = child;
    }
    items[index] = entry;
    entry.heapIndex = index;
  }
}
