/**
 * KV-block bookkeeping with prefix caching (plain CPU code, nano-vllm style).
 *
 * Every full block is keyed by a hash chained from its parent block's key and its own token
 * ids. A later sequence with the same prefix reuses those blocks (reference counted) and
 * skips their prefill. Blocks nobody references stay cached until memory is needed, then the
 * least recently used is evicted.
 * @module
 */

/** Raised when a request for blocks cannot be met even after eviction (the scheduler never lets it). */
export class OutOfBlocksError extends Error {
  constructor(wanted: number, available: number) {
    super(`wanted ${wanted} KV blocks, ${available} available`);
    this.name = "OutOfBlocksError";
  }
}

/** A prefix-cache hit: blocks to reuse (already retained) and the tokens they hold. */
export interface PrefixHit {
  blocks: number[];
  numTokens: number;
  /** Key of the last reused block, the parent for the next full block's key. */
  lastKey: string | null;
}

/** Counters for metrics. */
export interface PrefixCacheCounters {
  /** Tokens looked up in the prefix cache. */
  queriedTokens: number;
  /** Tokens found there (prefill skipped). */
  hitTokens: number;
}

/** FNV-1a over 32-bit words with a seed, as an unsigned 32-bit value. */
function fnv(seed: number, parent: string | null, tokens: ArrayLike<number>): number {
  let h = (2166136261 ^ seed) >>> 0;
  const mix = (v: number) => {
    for (let s = 0; s < 32; s += 8) {
      h ^= (v >>> s) & 0xff;
      h = Math.imul(h, 16777619) >>> 0;
    }
  };
  if (parent) for (let i = 0; i < parent.length; i++) mix(parent.charCodeAt(i));
  for (let i = 0; i < tokens.length; i++) mix(tokens[i]);
  return h;
}

/** The key of a full block: two independent 32-bit hashes of (parent key, token ids). */
export function blockKey(parent: string | null, tokens: ArrayLike<number>): string {
  return `${fnv(0, parent, tokens).toString(36)}.${fnv(0x9e3779b9, parent, tokens).toString(36)}`;
}

/** Free list, reference counts and the prefix cache over `numBlocks` blocks. */
export class BlockManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly counters: PrefixCacheCounters = { queriedTokens: 0, hitTokens: 0 };
  #free: number[];
  #refs: Uint32Array;
  /** key -> block, and what each cached block holds (to rule out hash collisions). */
  #byKey = new Map<string, number>();
  #keyOf = new Map<number, { key: string; tokens: number[] }>();
  /** Cached blocks with no references, least recently used first (Map keeps insertion order). */
  #evictable = new Map<number, true>();

  constructor(numBlocks: number, blockSize: number) {
    this.numBlocks = numBlocks;
    this.blockSize = blockSize;
    this.#free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
    this.#refs = new Uint32Array(numBlocks);
  }

  /** Blocks that can be handed out now (free plus evictable cached ones). */
  get availableCount(): number {
    return this.#free.length + this.#evictable.size;
  }

  /** Blocks referenced by live sequences. */
  get usedCount(): number {
    return this.numBlocks - this.availableCount;
  }

  /** Blocks held in the prefix cache without references. */
  get cachedIdleCount(): number {
    return this.#evictable.size;
  }

  /** References held on a block. */
  refCount(id: number): number {
    return this.#refs[id];
  }

  /**
   * Finds the longest run of cached full blocks that prefixes `tokens`, leaving at least one
   * token to compute (its logits are needed), and retains them.
   */
  acquirePrefix(tokens: ArrayLike<number>): PrefixHit {
    const bs = this.blockSize;
    const maxBlocks = Math.floor((tokens.length - 1) / bs);
    const blocks: number[] = [];
    let parent: string | null = null;
    for (let b = 0; b < maxBlocks; b++) {
      const chunk = Array.prototype.slice.call(tokens, b * bs, (b + 1) * bs) as number[];
      const key = blockKey(parent, chunk);
      const id = this.#byKey.get(key);
      if (id === undefined || !sameTokens(this.#keyOf.get(id)!.tokens, chunk)) break;
      blocks.push(id);
      parent = key;
    }
    for (const id of blocks) this.#retain(id);
    this.counters.queriedTokens += tokens.length;
    this.counters.hitTokens += blocks.length * bs;
    return { blocks, numTokens: blocks.length * bs, lastKey: parent };
  }

  /** Takes `n` fresh blocks (evicting idle cached ones, LRU first), each with one reference. */
  allocate(n: number): number[] {
    if (n > this.availableCount) throw new OutOfBlocksError(n, this.availableCount);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      let id = this.#free.pop();
      if (id === undefined) {
        id = this.#evictable.keys().next().value as number;
        this.#evictable.delete(id);
        this.#byKey.delete(this.#keyOf.get(id)!.key);
        this.#keyOf.delete(id);
      }
      this.#refs[id] = 1;
      ids.push(id);
    }
    return ids;
  }

  /** Adds a reference (a fork sharing the block). */
  retain(id: number): void {
    if (this.#refs[id] === 0) throw new Error(`block ${id} is not held`);
    this.#refs[id]++;
  }

  /**
   * Records that `block` is full with `tokens` after parent key `parent`, so later prefixes
   * can reuse it. Returns the block's key (the parent of the next one).
   */
  commitFull(block: number, parent: string | null, tokens: readonly number[]): string {
    const key = blockKey(parent, tokens);
    if (!this.#keyOf.has(block) && !this.#byKey.has(key)) {
      this.#byKey.set(key, block);
      this.#keyOf.set(block, { key, tokens: tokens.slice() });
    }
    return key;
  }

  /** Drops one reference from each block; unreferenced cached blocks stay reusable. */
  release(ids: Iterable<number>): void {
    for (const id of ids) {
      if (this.#refs[id] === 0) throw new Error(`block ${id} released twice`);
      if (--this.#refs[id] > 0) continue;
      if (this.#keyOf.has(id)) this.#evictable.set(id, true);
      else this.#free.push(id);
    }
  }

  #retain(id: number): void {
    if (this.#refs[id]++ === 0) this.#evictable.delete(id);
  }
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
