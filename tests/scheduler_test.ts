/** Scheduler: budget order, chunking, admission, preemption and recompute. CPU only. */
import { test } from "./helpers/test.ts";
import { Scheduler, type SchedulerOptions } from "../src/scheduler/scheduler.ts";
import { Sequence, type SequenceParams } from "../src/scheduler/sequence.ts";
import { SAMPLING_DEFAULTS } from "../src/api/types.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const PARAMS: SequenceParams = { maxTokens: 4, sampling: SAMPLING_DEFAULTS, stopTokenIds: new Set([2]) };

function scheduler(o: Partial<SchedulerOptions> & Pick<SchedulerOptions, "numBlocks" | "blockSize" | "maxBatchTokens" | "maxSeqs">): Scheduler {
  return new Scheduler({ policy: "fifo", ...o });
}

let nextId = 0;
function seq(promptLen: number, maxTokens = 4): Sequence {
  const prompt = Array.from({ length: promptLen }, (_, i) => 10 + ((i * 7 + nextId) % 50));
  return new Sequence(nextId++, prompt, { ...PARAMS, maxTokens }, 0);
}

/** Plans a step (sampled chunks leave a pending token on the "GPU"). */
function run(s: Scheduler) {
  return s.schedule();
}

/** Reads back every pending token (id 5, never a stop token) through postprocess. */
function readBack(s: Scheduler, seqs: Sequence[]) {
  const rows = seqs.flatMap((q) =>
    Array.from({ length: q.pending }, (_, k) => ({ seq: q, outputIndex: q.outputIds.length + k, token: { id: 5, logprob: 0 } }))
  );
  s.postprocess(rows);
}

test("scheduler: decodes first, then prefill chunks split to the budget", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 8, maxSeqs: 8 });
  const a = seq(3);
  s.add(a);
  let plan = run(s);
  assertEquals(plan.chunks.map((c) => [c.seq.id, c.count, c.sample]), [[a.id, 3, true]]);
  const b = seq(20);
  s.add(b);
  plan = run(s);
  // a's decode (1) + 7 tokens of b's prompt, not sampled.
  assertEquals(plan.chunks.map((c) => [c.seq.id, c.start, c.count, c.sample]), [[a.id, 3, 1, true], [b.id, 0, 7, false]]);
  assertEquals([plan.decodeTokens, plan.prefillTokens], [1, 7]);
  plan = run(s);
  assertEquals(plan.chunks.map((c) => [c.seq.id, c.start, c.count, c.sample]), [[a.id, 4, 1, true], [b.id, 7, 7, false]]);
  plan = run(s);
  assertEquals(plan.chunks.map((c) => [c.seq.id, c.start, c.count, c.sample]), [[a.id, 5, 1, true], [b.id, 14, 6, true]]);
  // a has generated its 4 tokens (pending): nothing more for it until read back.
  plan = run(s);
  assertEquals(plan.chunks.map((c) => [c.seq.id, c.count]), [[b.id, 1]]);
});

test("scheduler: prefill_first puts prefill before decodes", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 6, maxSeqs: 8, policy: "prefill_first" });
  const a = seq(2);
  s.add(a);
  run(s);
  s.add(seq(10));
  const plan = run(s);
  assertEquals(plan.chunks.map((c) => c.count), [6]);
});

test("scheduler: the sequence cap and the block reserve gate admission", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 64, maxSeqs: 2 });
  const seqs = [seq(4), seq(4), seq(4)];
  seqs.forEach((q) => s.add(q));
  const plan = run(s);
  assertEquals(plan.chunks.length, 2);
  assertEquals(s.waiting.length, 1);
  readBack(s, seqs); // not finished yet (1 of 4 tokens)
  for (let i = 0; i < 3; i++) {
    run(s);
    readBack(s, seqs);
  }
  // The first two finished and freed their slots: the third is admitted.
  run(s);
  assertEquals(s.running.map((q) => q.id), [seqs[2].id]);
});

test("scheduler: out of blocks preempts the newest, which later recomputes prompt + outputs", () => {
  // 6 blocks of 4 tokens; three sequences of 7-token prompts need 2 blocks each, then grow.
  const s = scheduler({ numBlocks: 6, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const blocks = s.blocks;
  const seqs = [seq(7, 8), seq(7, 8), seq(7, 8)];
  seqs.forEach((q) => s.add(q));
  run(s); // admits two (the third would eat the reserve)
  assertEquals(s.running.length, 2);
  readBack(s, seqs);
  let preempted = 0;
  for (let step = 0; step < 40 && s.hasWork; step++) {
    const plan = run(s);
    preempted += plan.preempted.length;
    for (const q of plan.preempted) assertEquals(q.blockTable.length, 0);
    readBack(s, seqs);
    assert(blocks.usedCount <= 6);
  }
  assert(preempted > 0, "expected a preemption");
  assertEquals(s.preemptions, preempted);
  for (const q of seqs) assertEquals(q.outputIds.length, 8);
  assertEquals(blocks.usedCount, 0);
});

test("scheduler: prefix cache hits skip prefill tokens", () => {
  const s = scheduler({ numBlocks: 32, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const a = seq(10, 2);
  s.add(a);
  run(s);
  readBack(s, [a]);
  const b = new Sequence(99, a.promptIds, { ...PARAMS, maxTokens: 2 }, 0);
  s.add(b);
  const plan = run(s);
  const chunk = plan.chunks.find((c) => c.seq === b)!;
  assertEquals([chunk.start, chunk.count], [8, 2]);
  assertEquals(b.cachedTokens, 8);
});

test("scheduler: a sequence whose last token is scheduled leaves at the next step, before any readback", () => {
  const s = scheduler({ numBlocks: 16, blockSize: 4, maxBatchTokens: 64, maxSeqs: 1 });
  const a = seq(4, 2);
  const b = seq(4, 2);
  s.add(a);
  s.add(b);
  assertEquals(run(s).chunks.map((c) => c.seq.id), [a.id]); // a's prefill samples token 1
  assertEquals(run(s).chunks.map((c) => [c.seq.id, c.sample]), [[a.id, true]]); // token 2: a's last
  assertEquals(a.status, "running");
  // Nothing read back yet, and the one sequence slot is a's: b joins at the very next step.
  const plan = run(s);
  assertEquals(plan.admitted.map((q) => q.id), [b.id]);
  assertEquals(a.status, "draining");
  assertEquals([a.blockTable.length, a.slot], [0, -1]);
  assertEquals(s.blocks.usedCount, b.blockTable.length);
  assert(s.hasWork);
  // a's tokens still arrive and end it by length; b goes on.
  readBack(s, [a]);
  assertEquals([a.status, a.finishReason, a.outputIds.length], ["finished", "length", 2]);
  readBack(s, [b]);
  for (let i = 0; i < 4 && s.hasWork; i++) {
    run(s);
    readBack(s, [b]);
  }
  assertEquals([b.status, b.outputIds.length, s.blocks.usedCount], ["finished", 2, 0]);
});
