/** Scheduler: budget order, chunking, admission, preemption and recompute. CPU only. */
import { test } from "./helpers/test.ts";
import { Scheduler, type SchedulerOptions } from "../src/scheduler/scheduler.ts";
import { Sequence, type SequenceConstraint, type SequenceParams } from "../src/scheduler/sequence.ts";
import { SAMPLING_DEFAULTS } from "../src/types/api.ts";
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

test("scheduler: cachedTokens counts prompt tokens only, when the hit runs into outputs known at admission", () => {
  const s = scheduler({ numBlocks: 32, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const a = seq(6, 4);
  s.add(a);
  for (let i = 0; i < 3; i++) {
    run(s);
    readBack(s, [a]);
  }
  // b's prompt is a's, and a's first outputs are already b's outputs at admission (as a
  // grammar's forced opening is): the cache holds 8 of its 9 known tokens, 6 of them prompt.
  const b = new Sequence(99, a.promptIds, { ...PARAMS, maxTokens: 4 }, 0);
  b.outputIds.push(...a.outputIds.slice(0, 3));
  s.add(b);
  const chunk = run(s).chunks.find((c) => c.seq === b)!;
  assertEquals([chunk.start, chunk.count], [8, 1]);
  assertEquals(b.cachedTokens, 6);
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

/**
 * A scripted grammar: it accepts the ids in `allowed` (any when absent), terminates on a stop
 * id, and forces `script[k]` after its k-th accepted token (`script.start` before any).
 */
class FakeConstraint implements SequenceConstraint {
  accepted: number[] = [];
  terminated = false;
  disposed = false;
  masks = 0;
  constructor(readonly script: { start?: number[]; after?: Record<number, number[]>; allowed?: Set<number> } = {}) {}
  accept(id: number): boolean {
    if (this.script.allowed && !this.script.allowed.has(id)) return false;
    this.accepted.push(id);
    if (id === 2) this.terminated = true;
    return true;
  }
  forced(): number[] {
    const f = this.accepted.length === 0 ? this.script.start ?? [] : this.script.after?.[this.accepted.length] ?? [];
    this.accepted.push(...f);
    return [...f];
  }
  fillMask(): void {
    this.masks++;
  }
  dispose(): void {
    this.disposed = true;
  }
}

/** Reads back each pending token of `seqs` with the given id. */
function readBackId(s: Scheduler, seqs: Sequence[], id: number) {
  return s.postprocess(seqs.flatMap((q) =>
    Array.from({ length: q.pending }, (_, k) => ({ seq: q, outputIndex: q.outputIds.length + k, token: { id, logprob: 0 } }))
  ));
}

test("scheduler: a constrained sequence samples only once its last token is read back; others run on", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const c = seq(3, 6);
  const g = new FakeConstraint();
  c.constraint = g;
  const u = seq(3, 6);
  s.add(c);
  s.add(u);
  assertEquals(run(s).chunks.map((k) => [k.seq.id, k.sample]), [[c.id, true], [u.id, true]]);
  // u decodes on tokens still on the GPU; c waits for its token.
  for (let i = 0; i < 3; i++) assertEquals(run(s).chunks.map((k) => k.seq.id), [u.id]);
  readBackId(s, [c], 7);
  assertEquals(g.accepted, [7]);
  assertEquals(run(s).chunks.map((k) => [k.seq.id, k.count, k.sample]), [[c.id, 1, true], [u.id, 1, true]]);
});

test("scheduler: forced tokens are outputs prefilled without sampling; the grammar's end is a stop", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const c = seq(3, 20);
  const g = new FakeConstraint({ start: [40, 41], after: { 3: [50, 51, 52] } });
  c.constraint = g;
  // The opening forced tokens are outputs before any step, prefilled with the prompt.
  const opening = s.add(c)!;
  assertEquals([opening.ids, opening.finishReason], [[40, 41], null]);
  assertEquals(run(s).chunks.map((k) => [k.start, k.count, k.sample]), [[0, 5, true]]);
  const out = readBackId(s, [c], 9);
  // The sampled token, then what the grammar forces after it, delivered together.
  assertEquals(out.map((o) => o.ids), [[9, 50, 51, 52]]);
  assertEquals(run(s).chunks.map((k) => [k.start, k.count, k.sample]), [[5, 4, true]]);
  const end = readBackId(s, [c], 2);
  assertEquals([end[0].ids, end[0].finishReason, c.status], [[2], "stop", "finished"]);
  assert(g.disposed, "a finished sequence frees its matcher");
});

test("scheduler: a grammar that ends is a stop even past ignored EOS; forced text stops at maxTokens", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const c = new Sequence(500, [1, 2, 3], { maxTokens: 6, sampling: SAMPLING_DEFAULTS, stopTokenIds: new Set() }, 0);
  c.constraint = new FakeConstraint();
  s.add(c);
  run(s);
  assertEquals(readBackId(s, [c], 2)[0].finishReason, "stop");
  // Forced text longer than what is left ends the sequence by length.
  const d = seq(3, 4);
  d.constraint = new FakeConstraint({ after: { 1: [60, 61, 62, 63, 64] } });
  s.add(d);
  run(s);
  const out = readBackId(s, [d], 8);
  assertEquals([out[0].ids, out[0].finishReason], [[8, 60, 61, 62], "length"]);
  // Opening text alone may reach it.
  const e = seq(3, 2);
  e.constraint = new FakeConstraint({ start: [70, 71, 72] });
  const opening = s.add(e)!;
  assertEquals([opening.ids, opening.finishReason, s.waiting.includes(e)], [[70, 71], "length", false]);
});

test("scheduler: a token the grammar rejects is not emitted; the sequence stops", () => {
  const s = scheduler({ numBlocks: 64, blockSize: 4, maxBatchTokens: 64, maxSeqs: 8 });
  const c = seq(3, 6);
  c.constraint = new FakeConstraint({ allowed: new Set([5]) });
  s.add(c);
  run(s);
  const out = readBackId(s, [c], 9);
  assertEquals([out[0].ids, out[0].finishReason, c.outputIds], [[], "stop", []]);
});
