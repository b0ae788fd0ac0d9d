/** Scheduler: embedding requests as prefill-only sequences (chunks, pooled rows, blocks, preemption). CPU only. */
import { test } from "./helpers/test.ts";
import { Scheduler } from "../src/scheduler/scheduler.ts";
import { Sequence } from "../src/scheduler/sequence.ts";
import { type Pooling, SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { assertEquals } from "./helpers/assert.ts";

let nextId = 0;
function embedding(len: number, pooling: Pooling): Sequence {
  const ids = Array.from({ length: len }, (_, i) => 10 + ((i * 7 + nextId) % 50));
  return new Sequence(nextId++, ids, { maxTokens: 0, sampling: SAMPLING_DEFAULTS, stopTokenIds: new Set(), pooling }, 0);
}

/** A pooled row per pooled chunk of `plan`: each token's hidden state is [1, position]. */
function rows(plan: ReturnType<Scheduler["schedule"]>) {
  return plan.chunks.filter((c) => c.pool !== "none").map((c) => {
    const values = new Float32Array(2);
    const first = c.pool === "last" ? c.start + c.count - 1 : c.start;
    for (let p = first; p < c.start + c.count; p++) {
      values[0] += 1;
      values[1] += p;
    }
    return { seq: c.seq, values, final: c.start + c.count === c.seq.promptIds.length };
  });
}

test("scheduler: embeddings are chunked, never sampled, pooled (last chunk / every chunk), and free their blocks after the last chunk", () => {
  const s = new Scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 4, maxSeqs: 8, policy: "fifo" });
  const last = embedding(9, "last");
  const mean = embedding(5, "mean");
  s.add(last);
  s.add(mean);
  const plans = [];
  const outs = [];
  while (s.hasWork) {
    const plan = s.schedule();
    plans.push(plan.chunks.map((c) => [c.seq.id, c.start, c.count, c.sample, c.pool]));
    outs.push(...s.postprocessPooled(rows(plan)));
  }
  assertEquals(plans, [
    [[last.id, 0, 4, false, "none"]],
    [[last.id, 4, 4, false, "none"]],
    // One token left is still prefill (an embedding has no decode).
    [[last.id, 8, 1, false, "last"], [mean.id, 0, 3, false, "sum"]],
    [[mean.id, 3, 2, false, "sum"]],
  ]);
  assertEquals(outs.map((o) => [o.seq.id, Array.from(o.embedding)]), [[last.id, [1, 8]], [mean.id, [1, 2]]]);
  assertEquals([last.status, last.finishReason, mean.status, s.blocks.usedCount], ["finished", "stop", "finished", 0]);
});

test("scheduler: a preempted mean-pooled embedding recomputes and pools from scratch; a cancelled one drops its rows", () => {
  // 3 blocks of 4: the generating sequence grows and preempts the embedding (admitted last).
  const s = new Scheduler({ numBlocks: 3, blockSize: 4, maxBatchTokens: 4, maxSeqs: 4, policy: "fifo" });
  const gen = new Sequence(nextId++, [1, 2, 3], { maxTokens: 8, sampling: SAMPLING_DEFAULTS, stopTokenIds: new Set() }, 0);
  const mean = embedding(8, "mean");
  s.add(gen);
  s.add(mean);
  const outs = [];
  let preempted = 0;
  let pending: ReturnType<typeof rows> = [];
  for (let step = 0; s.hasWork && step < 60; step++) {
    const plan = s.schedule();
    preempted += plan.preempted.length;
    // Pooled rows come back one step late, as from the GPU.
    outs.push(...s.postprocessPooled(pending));
    pending = rows(plan);
    s.postprocess(plan.chunks.filter((c) => c.sample).map((c) => ({
      seq: c.seq,
      outputIndex: c.seq.outputIds.length,
      token: { id: 7, logprob: 0 },
    })));
  }
  assertEquals(preempted > 0, true);
  assertEquals(outs.map((o) => Array.from(o.embedding)), [[1, 3.5]]);
  assertEquals(gen.outputIds.length, 8);

  const cancelled = embedding(6, "mean");
  s.add(cancelled);
  const plan = s.schedule();
  s.cancel(cancelled);
  assertEquals(s.schedule().finished, [cancelled]);
  assertEquals(s.postprocessPooled(rows(plan)), []);
  assertEquals([cancelled.finishReason, cancelled.pendingPooled, s.blocks.usedCount], ["cancelled", 0, 0]);
});
