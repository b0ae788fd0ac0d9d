/**
 * CPU bookkeeping of KV-cache blocks: a free list with reference counts. The GPU pool only
 * stores what this hands out.
 * @module
 */

/** Raised when a request for blocks cannot be met. */
export class OutOfBlocksError extends Error {
  constructor(wanted: number, free: number) {
    super(`wanted ${wanted} KV blocks, ${free} free`);
    this.name = "OutOfBlocksError";
  }
}

/** A pool of `numBlocks` block ids with reference counts. */
export class BlockPool {
  #free: number[];
  #refs: Uint32Array;

  constructor(readonly numBlocks: number) {
    // Hand out low ids first (pop from the end).
    this.#free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.#refs = new Uint32Array(numBlocks);
  }

  /** Blocks not held by anyone. */
  get freeCount(): number {
    return this.#free.length;
  }

  /** Takes `n` blocks, each with one reference. */
  allocate(n: number): number[] {
    if (n > this.#free.length) throw new OutOfBlocksError(n, this.#free.length);
    const ids = this.#free.splice(this.#free.length - n, n).reverse();
    for (const id of ids) this.#refs[id] = 1;
    return ids;
  }

  /** Adds a reference to a held block (sharing). */
  retain(id: number): void {
    if (this.#refs[id] === 0) throw new Error(`block ${id} is not allocated`);
    this.#refs[id]++;
  }

  /** Drops one reference from each block; blocks reaching zero return to the pool. */
  release(ids: Iterable<number>): void {
    for (const id of ids) {
      if (this.#refs[id] === 0) throw new Error(`block ${id} released twice`);
      if (--this.#refs[id] === 0) this.#free.push(id);
    }
  }

  /** References held on a block. */
  refCount(id: number): number {
    return this.#refs[id];
  }
}
