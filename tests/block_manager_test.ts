/** Block manager: reference counts, prefix-cache reuse, LRU eviction. Plain CPU tests. */
import { test } from "./helpers/test.ts";
import { BlockManager, OutOfBlocksError } from "../src/scheduler/block_manager.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

/** Allocates and commits a sequence's full blocks as the engine does after prefill. */
function prefill(m: BlockManager, tokens: number[]): number[] {
  const hit = m.acquirePrefix(tokens);
  const need = Math.ceil(tokens.length / m.blockSize) - hit.blocks.length;
  const table = [...hit.blocks, ...m.allocate(need)];
  let parent: string | null = null;
  for (let b = 0; b < Math.floor(tokens.length / m.blockSize); b++) {
    parent = m.commitFull(table[b], parent, tokens.slice(b * m.blockSize, (b + 1) * m.blockSize));
  }
  return table;
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

test("block manager: allocate and release return blocks; double release throws", () => {
  const m = new BlockManager(4, 4);
  const a = m.allocate(3);
  assertEquals(m.usedCount, 3);
  assertThrows(() => m.allocate(2), OutOfBlocksError);
  m.release(a);
  assertEquals(m.usedCount, 0);
  assertThrows(() => m.release([a[0]]), Error, "released twice");
});

test("block manager: a shared prefix reuses full blocks and leaves one token to compute", () => {
  const m = new BlockManager(16, 4);
  const first = prefill(m, range(10)); // blocks: [0..3] [4..7] partial [8, 9]
  const hit = m.acquirePrefix([...range(8), 100, 101]);
  assertEquals(hit.blocks, first.slice(0, 2));
  assertEquals(hit.numTokens, 8);
  assertEquals(m.refCount(first[0]), 2);
  // A prompt that is exactly two full blocks reuses only one: the last token needs logits.
  const exact = m.acquirePrefix(range(8));
  assertEquals(exact.numTokens, 4);
  // A different first block breaks the chain even if later blocks match.
  assertEquals(m.acquirePrefix([99, ...range(9, 1)]).numTokens, 0);
  assert(m.counters.hitTokens === 12 && m.counters.queriedTokens === 38, JSON.stringify(m.counters));
});

test("block manager: released cached blocks stay reusable, then are evicted LRU first", () => {
  const m = new BlockManager(4, 2);
  const a = prefill(m, [1, 2, 3, 4, 5]); // 3 blocks, 2 full (cached)
  m.release(a);
  assertEquals(m.usedCount, 0);
  assertEquals(m.cachedIdleCount, 2);
  const again = m.acquirePrefix([1, 2, 3, 4, 9]);
  assertEquals(again.blocks, a.slice(0, 2));
  m.release(again.blocks);
  // Needing all 4 blocks evicts both cached ones; the prefix is gone afterwards.
  const all = m.allocate(4);
  assertEquals(all.length, 4);
  assertEquals(m.cachedIdleCount, 0);
  m.release(all);
  assertEquals(m.acquirePrefix([1, 2, 3, 4, 9]).numTokens, 0);
});

test("block manager: eviction takes the least recently used cached block", () => {
  const m = new BlockManager(4, 2);
  const x = prefill(m, [1, 2, 7]);
  const y = prefill(m, [3, 4, 7]);
  m.release(x); // x's full block becomes idle first
  m.release(y);
  // Touch x's prefix again so y's block is now the least recently used.
  m.release(m.acquirePrefix([1, 2, 8]).blocks);
  m.allocate(3); // two free + one evicted
  assertEquals(m.acquirePrefix([1, 2, 8]).numTokens, 2);
  assertEquals(m.acquirePrefix([3, 4, 8]).numTokens, 0);
});
