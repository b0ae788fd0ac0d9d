/**
 * Speculative decoding (n-gram drafts): the draft lookup, the adaptive state, the config
 * surface, and end to end that speculation changes no output (greedy and seeded sampling,
 * 8 concurrent streams with mixed lengths and stops), accepts drafts on a copying prompt and
 * leaves no KV block behind.
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type GenerateOptions, type SpeculativeConfig } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { ngramDraft, SpeculationState } from "../src/scheduler/speculation.ts";
import { parseSpeculativeConfig } from "../src/engine/speculative_config.ts";
import { LlmError, SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { Scheduler } from "../src/scheduler/scheduler.ts";
import { Sequence } from "../src/scheduler/sequence.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { parseArgs } from "../src/cli/main.ts";
import { post, testServer } from "./helpers/server.ts";
import { VLLM_METRICS, VLLM_SPEC_PER_POSITION } from "../src/server/vllm_metrics.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { writeRandomQwen35Moe } from "./helpers/qwen35_moe_checkpoint.ts";

const NGRAM: SpeculativeConfig = { method: "ngram", numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 2 };

test("ngramDraft: the tokens after the latest earlier occurrence of the longest matching suffix", () => {
  // Suffix [1,2,3] last occurred at 4..6, followed by 9, 1, 2.
  assertEquals(ngramDraft([1, 2, 3, 7, 1, 2, 3, 9, 1, 2, 3], 3, 4, 2), [9, 1, 2]);
  // Longer n wins over a later shorter match: [5,1,2] at 0..2 (then 8), [1,2] later (then 6).
  assertEquals(ngramDraft([5, 1, 2, 8, 1, 2, 6, 5, 1, 2], 2, 3, 2), [8, 1]);
  assertEquals(ngramDraft([5, 1, 2, 8, 1, 2, 6, 5, 1, 2], 2, 2, 2), [6, 5]);
  // Runs to the end of the tokens at most; none below promptLookupMin.
  assertEquals(ngramDraft([4, 4, 4], 5, 4, 2), [4]);
  assertEquals(ngramDraft([1, 2, 3, 4], 3, 4, 2), []);
  assertEquals(ngramDraft([1, 2, 3, 1], 3, 4, 2), []);
  assertEquals(ngramDraft([1, 2, 3, 1], 3, 4, 1), [2, 3, 1]);
});

test("SpeculationState: backs off to plain decoding where drafts fail, and grows k where they pass", () => {
  const s = new SpeculationState(NGRAM);
  assertEquals(s.draft([1, 2, 3], 4), []);
  assert(!s.active, "no draft found: backs off");
  for (let i = 0; i < 8; i++) s.plainStep(() => [1, 2, 3, 1, 2], 5);
  assert(!s.active, "still backing off");
  s.plainStep(() => [1, 2, 3, 4, 7, 8, 9, 10], 8);
  assert(!s.active, "no draft of the last few tokens would have predicted them: stays plain");
  s.plainStep(() => [5, 1, 2, 3, 9, 1, 2, 3, 9], 9);
  assert(s.active, "a draft after [.. 9 1 2] ([3 9]) would have predicted [3 9]: speculates again");
  s.observe(4, 0);
  assertEquals(s.k, 3);
  s.observe(3, 0);
  s.observe(2, 0);
  s.observe(1, 0);
  assert(!s.active, "k reached 0: plain decoding for a while");
  const repeat = (n: number) => () => Array.from({ length: n }, (_, i) => i % 2);
  for (let i = 0; i < 16; i++) s.plainStep(repeat(4 + i), 4 + i);
  assert(!s.active, "the second backoff is twice as long");
  s.plainStep(repeat(40), 40);
  assert(s.active, "speculates again after it");
  s.observe(1, 1);
  assertEquals(s.k, 2);
});

test("scheduler: a verification chunk drafts after the known tokens; a rejection rolls KV back and frees the emptied block", () => {
  const sched = new Scheduler({ numBlocks: 16, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo" });
  const seq = new Sequence(0, [1, 2, 3, 1, 2, 3, 1, 2], { maxTokens: 20, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
  seq.speculation = new SpeculationState(NGRAM);
  sched.add(seq);
  assertEquals(sched.schedule().chunks[0].count, 8);
  // The prompt repeats itself (a draft two tokens back would have been right): its prefill
  // arms speculation, so the first decode waits for the token the prefill sampled.
  assert(seq.speculation.active);
  assertEquals(sched.schedule().chunks, []);
  const row = (outputIndex: number, id: number) => ({ seq, outputIndex, token: { id, logprob: 0 } });
  sched.postprocess([row(0, 3)]);
  const plan = sched.schedule();
  // [.. 1 2 3 1 2 3]: the suffix [3 1 2 3] last occurred at 2..5, followed by [1 2 3].
  assertEquals(plan.chunks.map((c) => [c.start, c.count, c.draft]), [[8, 4, [1, 2, 3]]]);
  assertEquals(seq.blockTable.length, 6);
  const used = sched.blocks.usedCount;
  // Row 0 samples 7, not the draft's 1: only 7 is kept; rows 1-3 are dropped.
  const out = sched.postprocess([row(1, 7), row(2, 2), row(3, 3), row(4, 4)]);
  assertEquals(out[0].ids, [7]);
  assertEquals(seq.outputIds, [3, 7]);
  assertEquals(seq.numComputed, 9);
  assertEquals(seq.blockTable.length, 5);
  assertEquals(sched.blocks.usedCount, used - 1);
  assertEquals([sched.specDraftTokens, sched.specAcceptedTokens], [3, 0]);
  // A draft accepted in part, then a stop token inside the accepted tokens ends the sequence.
  seq.speculation.k = 4;
  sched.postprocess([]);
  let next = sched.schedule();
  while (next.chunks.length && !next.chunks[0].draft) {
    const c = next.chunks[0];
    sched.postprocess([row(seq.outputIds.length, 1)]);
    assert(c.count === 1);
    next = sched.schedule();
  }
  const draft = next.chunks[0].draft!;
  const base = seq.outputIds.length;
  const rows = [row(base, draft[0]), row(base + 1, 99), ...draft.slice(2).map((_, i) => row(base + 2 + i, 5)), row(base + draft.length, 5)];
  const end = sched.postprocess(rows.slice(0, draft.length + 1));
  assertEquals(end[0].ids, [draft[0], 99]);
  assertEquals(end[0].finishReason, "stop");
  assertEquals(sched.blocks.usedCount, 0);
});

test("scheduler (GPU drafts): verifications are scheduled without waiting; accepted counts set the tokens and roll KV back", () => {
  const sched = new Scheduler({ numBlocks: 16, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", gpuDrafts: true });
  const seq = new Sequence(0, [1, 2, 3, 1, 2, 3, 1, 2], { maxTokens: 20, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
  seq.speculation = new SpeculationState(NGRAM);
  sched.add(seq);
  const prefill = sched.schedule().chunks[0];
  assertEquals([prefill.count, prefill.gpuHistory], [8, "upload"]);
  assert(seq.speculation.active, "the prompt repeats itself: armed at its prefill, which uploads its GPU history");
  // Two verification steps back to back, while the prefill's token is still on the GPU: upper-
  // bound positions (every draft accepted), blocks for them.
  const v1 = sched.schedule().chunks;
  assertEquals(v1.map((c) => [c.start, c.count, c.gpuDraft]), [[8, 5, 4]]);
  const v2 = sched.schedule().chunks;
  assertEquals(v2.map((c) => [c.start, c.count, c.gpuDraft]), [[13, 5, 4]]);
  assertEquals([seq.pending, seq.numComputed, seq.blockTable.length], [3, 18, 9]);
  const tok = (id: number) => ({ id, logprob: 0 });
  const rows = (ids: number[], accepted: number) => [
    ...ids.map((id) => ({ seq, outputIndex: -1, token: tok(id), verifyRow: true })),
    { seq, outputIndex: -1, token: tok(-1), verified: { accepted, drafted: 4 } },
  ];
  // The prefill's token, then the first verification: 2 drafts accepted, so rows 0..2 count.
  let out = sched.postprocess([{ seq, outputIndex: 0, token: tok(3) }, ...rows([1, 2, 3, 7, 7], 2)]);
  assertEquals(out[0].ids, [3, 1, 2, 3]);
  assertEquals(seq.numComputed, 16, "the rejected rows' upper bound is dropped");
  assertEquals(seq.blockTable.length, 9);
  const used = sched.blocks.usedCount;
  // The second: nothing accepted, one token; every token known, the KV ends at the newest.
  out = sched.postprocess(rows([5, 6, 6, 6, 6], 0));
  assertEquals(out[0].ids, [5]);
  assertEquals([seq.pending, seq.numComputed, seq.knownLength], [0, 12, 13]);
  assertEquals(seq.blockTable.length, 7);
  assertEquals(sched.blocks.usedCount, used - 2);
  assertEquals([sched.specDrafts, sched.specDraftTokens, sched.specAcceptedTokens], [2, 8, 2]);
  // A stop token among accepted rows ends the sequence there; rows after it are dropped.
  seq.speculation.k = 4;
  const v3 = sched.schedule().chunks;
  assertEquals(v3.map((c) => [c.start, c.count, c.gpuDraft]), [[12, 5, 4]]);
  out = sched.postprocess(rows([4, 99, 4, 4, 4], 3));
  assertEquals(out[0].ids, [4, 99]);
  assertEquals(out[0].finishReason, "stop");
  assertEquals(sched.blocks.usedCount, 0);
});

test("SpeculationState (GPU drafts): a window of unconfirmed verifications that doubles on success; empty drafts back off", () => {
  const s = new SpeculationState(NGRAM);
  s.plainStep(() => [5, 1, 2, 3, 9, 1, 2, 3, 9], 9);
  assert(s.active);
  assertEquals(s.window, 2, "a probe of 2 after arming");
  s.observe(4, 4);
  s.observe(4, 4);
  assertEquals(s.window, 8, "doubles per fully accepted verification");
  s.observe(4, 2);
  assertEquals(s.window, 8, "a partial acceptance keeps it");
  s.noDraft();
  assertEquals(s.window, 2, "an empty draft shrinks it back");
  assert(s.active, "one empty draft after a success: still speculating");
  s.noDraft();
  assert(!s.active, "as many empty drafts in a row as the probe sends: back off");
  for (let i = 0; i < 8; i++) s.plainStep(() => [1, 2, 3], 3);
  const tokens = [5, 1, 2, 3, 9, 1, 2, 3, 9, 1];
  s.plainStep(() => tokens, 10, false);
  assert(!s.active, "not armed while it may not be (chunks in flight)");
  s.plainStep(() => tokens, 10);
  assert(s.active);
});

test("scheduler (GPU drafts): only a speculating sequence keeps a GPU history; unconfirmed verifications are capped and one-row steps fill in", () => {
  const sched = new Scheduler({ numBlocks: 32, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", gpuDrafts: true });
  const seq = new Sequence(0, [1, 2, 3, 1, 2], { maxTokens: 40, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
  seq.speculation = new SpeculationState(NGRAM);
  sched.add(seq);
  const tok = (id: number) => ({ id, logprob: 0 });
  const shape = () => sched.schedule().chunks.map((c) => [c.start, c.count, c.gpuDraft, c.gpuHistory]);
  const verified = (ids: number[], drafted: number, accepted = 0) => [
    ...ids.map((id) => ({ seq, outputIndex: -1, token: tok(id), verifyRow: true })),
    { seq, outputIndex: -1, token: tok(-1), verified: { accepted, drafted } },
  ];
  // Plain decoding keeps no history on the GPU (no n-gram dispatch).
  assertEquals(shape(), [[0, 5, undefined, undefined]]);
  assertEquals(shape(), [[5, 1, undefined, undefined]]);
  sched.postprocess([{ seq, outputIndex: 0, token: tok(3) }, { seq, outputIndex: 1, token: tok(1) }]);
  // [1 2 3 1 2 | 3 1]: a draft after [1 2] would have predicted [3 1]: it speculates, and
  // its next step uploads the history.
  assertEquals(shape(), [[6, 1, undefined, "upload"]]);
  assert(seq.speculation.active);
  // A probe of two verifications; then one-row steps (positions completed on the GPU).
  assertEquals(shape(), [[7, 5, 4, undefined]]);
  assertEquals(shape(), [[12, 5, 4, undefined]]);
  assertEquals(shape(), [[17, 1, 0, undefined]]);
  // The first verification found no draft: one token, room for one more verification.
  sched.postprocess([{ seq, outputIndex: 2, token: tok(2) }, ...verified([3, 9, 9, 9, 9], 0)]);
  assertEquals(seq.numComputed, 14);
  assertEquals(shape(), [[14, 5, 4, undefined]]);
  // The second found none either: it stops speculating, and fills in with one-row steps
  // while a verification is still in flight.
  sched.postprocess(verified([1, 9, 9, 9, 9], 0));
  assert(!seq.speculation.active);
  assertEquals(shape(), [[15, 1, 0, undefined]]);
  // The first one-row step and the third verification (drafted 4, none accepted) come back:
  // the length is known again (a one-row step still in flight makes one token), so plain
  // steps follow, with no GPU history.
  sched.postprocess([...verified([2], 0), ...verified([3, 9, 9, 9, 9], 4)]);
  assertEquals([seq.knownLength, seq.pending, seq.numComputed], [12, 1, 12]);
  assertEquals(shape(), [[12, 1, undefined, undefined]]);
  assertEquals([sched.specDrafts, sched.specDraftTokens, sched.specAcceptedTokens], [1, 4, 0]);
  assertEquals(seq.outputIds, [3, 1, 2, 3, 1, 2, 3]);
});

test("scheduler (GPU drafts): near the request's end, one-row steps go on within the context instead of waiting", () => {
  for (const maxContext of [undefined, 64]) {
    const sched = new Scheduler({ numBlocks: 64, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", gpuDrafts: true, maxContext });
    const seq = new Sequence(0, [1, 2, 3, 1, 2, 3, 1, 2], { maxTokens: 12, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
    seq.speculation = new SpeculationState(NGRAM);
    sched.add(seq);
    const shape = () => sched.schedule().chunks.map((c) => [c.start, c.count, c.gpuDraft]);
    assertEquals(shape(), [[0, 8, undefined]]);
    seq.speculation.observe(4, 4); // a wider window: three verifications in flight
    assertEquals(shape(), [[8, 5, 4]]);
    assertEquals(shape(), [[13, 5, 4]]);
    // Upper-bound positions reach the request's last fed position (8 + 12 - 2 = 18): no draft.
    assertEquals(shape(), [[18, 1, 0]]);
    // Past it, with 3 tokens counted of 12: without a context bound the sequence waits for
    // its results; with one it goes on with one-row steps (real positions are lower).
    assertEquals(shape(), maxContext ? [[19, 1, 0]] : []);
    assertEquals(shape(), maxContext ? [[20, 1, 0]] : []);
  }
});

test("scheduler (GPU drafts): at disableSpeculationAt decoding sequences no verification starts; those in flight end with one-row steps; it resumes below", () => {
  const sched = new Scheduler({ numBlocks: 64, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", gpuDrafts: true, disableSpeculationAt: 2 });
  const add = (id: number, prompt: number[]) => {
    const seq = new Sequence(id, prompt, { maxTokens: 40, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
    seq.speculation = new SpeculationState(NGRAM);
    sched.add(seq);
    return seq;
  };
  const tok = (id: number) => ({ id, logprob: 0 });
  const shape = () => sched.schedule().chunks.map((c) => [c.seq.id, c.start, c.count, c.gpuDraft, c.gpuHistory]);
  const verified = (seq: Sequence, ids: number[], drafted: number, accepted = 0) => [
    ...ids.map((id) => ({ seq, outputIndex: -1, token: tok(id), verifyRow: true })),
    { seq, outputIndex: -1, token: tok(-1), verified: { accepted, drafted } },
  ];
  // Alone, a repeating prompt arms at its prefill and verifies (a window of two).
  const a = add(0, [1, 2, 3, 1, 2, 3, 1, 2]);
  assertEquals(shape(), [[0, 0, 8, undefined, "upload"]]);
  assertEquals(shape(), [[0, 8, 5, 4, undefined]]);
  assertEquals(shape(), [[0, 13, 5, 4, undefined]]);
  // A second sequence is admitted (one decodes at this plan: under the limit).
  const b = add(1, [5, 6, 7]);
  assertEquals(shape(), [[0, 18, 1, 0, undefined], [1, 0, 3, undefined, undefined]]);
  // Two decode: `a` stops speculating; its verifications in flight go on, one-row steps fill in.
  assertEquals(shape(), [[0, 19, 1, 0, undefined], [1, 3, 1, undefined, undefined]]);
  assert(!a.speculation!.active);
  sched.postprocess([{ seq: a, outputIndex: 0, token: tok(3) }, ...verified(a, [1, 2, 3, 1, 2], 4, 4)]);
  // Its drafts were all accepted, yet no new verification starts while the limit holds.
  assertEquals(shape(), [[0, 20, 1, 0, undefined], [1, 4, 1, undefined, undefined]]);
  sched.postprocess([...verified(a, [3, 1, 2, 3, 1], 4, 4), ...verified(a, [2], 0), ...verified(a, [3], 0), ...verified(a, [1], 0)]);
  assertEquals([a.knownLength, a.pending, a.numComputed], [22, 0, 21]);
  sched.postprocess([{ seq: b, outputIndex: 0, token: tok(8) }, { seq: b, outputIndex: 1, token: tok(9) }]);
  // Everything it had in flight is back: plain steps, no GPU history (no n-gram dispatch).
  for (let i = 0; i < 3; i++) {
    assertEquals(shape(), [[0, 21 + i, 1, undefined, undefined], [1, 5 + i, 1, undefined, undefined]]);
  }
  sched.postprocess([2, 3, 1].map((id, i) => ({ seq: a, outputIndex: 14 + i, token: tok(id) })));
  assertEquals([sched.specDrafts, sched.specDraftTokens, sched.specAcceptedTokens], [2, 8, 8]);
  // `b` leaves: one sequence decodes, `a` finds its n-gram again in hindsight and verifies.
  sched.cancel(b);
  assertEquals(shape(), [[0, 24, 1, undefined, "upload"]]);
  assert(a.speculation!.active);
  assertEquals(shape(), [[0, 25, 5, 4, undefined]]);
});

test("scheduler (CPU drafts): no draft while disableSpeculationAt sequences decode; drafts again below", () => {
  const sched = new Scheduler({ numBlocks: 64, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", disableSpeculationAt: 2 });
  const seqs = [0, 1].map((id) => {
    const seq = new Sequence(id, [1, 2, 3, 1, 2, 3, 1, 2], { maxTokens: 40, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set([99]) }, 0);
    seq.speculation = new SpeculationState(NGRAM);
    sched.add(seq);
    return seq;
  });
  const tok = (id: number) => ({ id, logprob: 0 });
  // Both prefill in one plan (nobody decodes yet, so both arm), then both decode plainly and
  // pipelined: no draft, no wait for the sampled tokens.
  sched.schedule();
  for (let i = 0; i < 3; i++) {
    const chunks = sched.schedule().chunks;
    assertEquals(chunks.map((c) => [c.seq.id, c.start, c.count, c.draft]), [[0, 8 + i, 1, undefined], [1, 8 + i, 1, undefined]]);
  }
  for (const seq of seqs) sched.postprocess([3, 1, 2, 3].map((id, i) => ({ seq, outputIndex: i, token: tok(id) })));
  assertEquals(sched.specDrafts, 0);
  // One leaves: the other speculates again once the hindsight test passes, and drafts.
  sched.cancel(seqs[1]);
  assertEquals(sched.schedule().chunks.map((c) => [c.seq.id, c.start, c.count, c.draft]), [[0, 11, 1, undefined]]);
  assert(seqs[0].speculation!.active);
  sched.postprocess([{ seq: seqs[0], outputIndex: 4, token: tok(1) }]);
  const verify = sched.schedule().chunks;
  assertEquals(verify.map((c) => [c.start, c.draft]), [[12, [2, 3, 1]]]);
});

test("scheduler (hybrid): a rejection takes the sequence back to before its verification; the next chunk restores the state and replays the accepted tokens", () => {
  const sched = new Scheduler({ numBlocks: 16, blockSize: 2, maxBatchTokens: 64, maxSeqs: 4, policy: "fifo", prefixCaching: false, recurrentState: true });
  const seq = new Sequence(0, [1, 2, 3, 1, 2, 3, 1, 2], { maxTokens: 20, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set() }, 0);
  seq.speculation = new SpeculationState(NGRAM);
  sched.add(seq);
  sched.schedule();
  // The prompt repeats itself, so speculation is armed at its prefill: on the CPU path the
  // sequence waits for its sampled token before drafting.
  assertEquals(sched.schedule().chunks, []);
  const row = (outputIndex: number, id: number) => ({ seq, outputIndex, token: { id, logprob: 0 } });
  sched.postprocess([row(0, 3)]);
  const verify = sched.schedule().chunks;
  assertEquals(verify.map((c) => [c.start, c.count, c.restoreState]), [[8, 1 + verify[0].draft!.length, undefined]]);
  const draft = verify[0].draft!;
  assert(draft.length >= 3, `draft ${draft}`);
  // The first two drafts accepted, another token sampled instead of the third. The state took
  // every row: back to position 8 (the verification's first row), restored there, then 8..11
  // recomputed (the last known token 3, the accepted two, the new one), sampling after them.
  const other = draft[2] === 5 ? 6 : 5;
  sched.postprocess([row(1, draft[0]), row(2, draft[1]), row(3, other), ...draft.slice(2).map((_, i) => row(4 + i, 8))]);
  assertEquals(seq.outputIds, [3, draft[0], draft[1], other]);
  assertEquals(seq.numComputed, 8);
  assertEquals(sched.specReplayTokens, 3);
  const replay = sched.schedule().chunks;
  assertEquals(replay.map((c) => [c.start, c.count, c.sample, c.draft, c.restoreState]), [[8, 4, true, undefined, true]]);
  sched.postprocess([row(4, 6)]);
  // Drafts accepted in full leave the state right: no restore.
  const next = sched.schedule().chunks[0];
  assert(!next.restoreState);
  if (next.draft) {
    sched.postprocess(next.draft.map((d, i) => row(5 + i, d)).concat(row(5 + next.draft.length, 4)));
    assertEquals(sched.specReplayTokens, 3);
    assert(!sched.schedule().chunks[0]?.restoreState);
  }
});

test("speculative config: vLLM's JSON, errors naming the field, eagle and medusa not supported yet", () => {
  assertEquals(parseSpeculativeConfig('{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}'), NGRAM);
  const param = (json: string) => {
    const e = assertThrows(() => parseSpeculativeConfig(json), LlmError);
    assertEquals(e.code, "invalid_request");
    return { param: e.param, message: e.message };
  };
  assertEquals(param('{"method":"ngram","num_speculative_tokens":0}').param, "speculative.numSpeculativeTokens");
  assertEquals(param('{"method":"ngram","num_speculative_tokens":2,"prompt_lookup_max":2,"prompt_lookup_min":3}').param, "speculative.promptLookupMin");
  assertEquals(param('{"method":"ngram","num_speculative_tokens":2,"lookahead":1}').param, "speculative.lookahead");
  assertEquals(parseSpeculativeConfig('{"method":"ngram","num_speculative_tokens":4,"disable_by_batch_size":4}'), { ...NGRAM, disableByBatchSize: 4 });
  assertEquals(parseSpeculativeConfig('{"method":"mtp","num_speculative_tokens":2,"disable_by_batch_size":1}'), { method: "mtp", numSpeculativeTokens: 2, disableByBatchSize: 1 });
  for (const bad of ["0", "-2", "1.5", '"4"', "null"]) {
    assertEquals(param(`{"method":"ngram","num_speculative_tokens":2,"disable_by_batch_size":${bad}}`).param, "speculative.disableByBatchSize", bad);
  }
  assertEquals(param("[1]").param, "speculative.config");
  assertEquals(param("{").param, "speculative.config");
  for (const method of ["eagle", "medusa"]) {
    const e = param(`{"method":"${method}","num_speculative_tokens":2}`);
    assertEquals(e.param, "speculative.method");
    assert(/not supported yet/.test(e.message), e.message);
  }
});

test("--speculative-config: serve.ts and the CLI take vLLM's flag; a bad field is a usage error naming it", async () => {
  const json = '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}';
  assertEquals(parseServeArgs(["--speculative-config", json], () => undefined)!.tuning!.speculative, NGRAM);
  assertEquals(parseServeArgs([], () => undefined)!.tuning!.speculative, undefined);
  const e = assertThrows(() => parseServeArgs(["--speculative-config", '{"method":"ngram","num_speculative_tokens":-1}'], () => undefined), UsageError);
  assert(/num_speculative_tokens|numSpeculativeTokens/.test(e.message), e.message);
  const eagle = assertThrows(() => parseServeArgs(["--speculative-config", '{"method":"eagle","num_speculative_tokens":1}'], () => undefined), UsageError);
  assert(/not supported yet/.test(eagle.message), eagle.message);
  assertEquals(parseServeArgs(["--speculative-config", '{"method":"ngram","num_speculative_tokens":4,"disable_by_batch_size":8}'], () => undefined)!.tuning!.speculative, { ...NGRAM, disableByBatchSize: 8 });
  const limit = assertThrows(() => parseServeArgs(["--speculative-config", '{"method":"ngram","num_speculative_tokens":4,"disable_by_batch_size":0}'], () => undefined), UsageError);
  assert(/disable_by_batch_size|disableByBatchSize/.test(limit.message), limit.message);
  assertEquals(parseArgs(["generate", "--speculative-config", json]).flags.get("speculative-config"), json);
  // createEngine refuses a bad setting as the caller's error, before loading anything.
  const bad = await createEngine({ model: modelDir("stories260K"), speculative: { ...NGRAM, numSpeculativeTokens: 0 } }).catch((x) => x);
  assert(bad instanceof LlmError && bad.code === "invalid_request" && bad.param === "speculative.numSpeculativeTokens", String(bad));
  const badLimit = await createEngine({ model: modelDir("stories260K"), speculative: { ...NGRAM, disableByBatchSize: 0 } }).catch((x) => x);
  assert(badLimit instanceof LlmError && badLimit.param === "speculative.disableByBatchSize", String(badLimit));
});

/** A passage the greedy continuation copies from. */
const COPY = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat";

const PROMPTS = [
  "Once upon a time",
  "The little dog ran to the park and saw a",
  COPY,
  "A",
  "Tom had a big red ball. He liked to",
  "One day, a girl named Sue went to the store with her mom. She wanted to buy",
  "The sun was",
  "Ben",
];

/** 8 streams of mixed lengths; some cut by a stop string or a small max_tokens. */
function workload(extra: Partial<GenerateOptions> = {}): GenerateOptions[] {
  return PROMPTS.map((prompt, i) => ({
    prompt,
    maxTokens: 3 + ((i * 11) % 37),
    ignoreEos: true,
    ...(i === 5 ? { stop: ["the"] } : {}),
    ...(prompt === COPY ? { maxTokens: 60 } : {}),
    ...extra,
    ...(extra.seed !== undefined ? { seed: extra.seed + i } : {}),
  }));
}

async function idle(engine: EngineClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const kernelFamily of ["cpu", "gpu"] as const) {
  test(`speculative (${kernelFamily} kernels): outputs equal plain decoding; copying accepts drafts; no block left`, async () => {
    const opts = { model: modelDir("stories260K"), maxBatchTokens: 64, maxSeqs: 8, kernelFamily, blockSize: 8 };
    const plain = await createEngine(opts);
    // n from 4 down to 1: more drafts, so rejections and rollbacks happen too.
    const spec = await createEngine({ ...opts, speculative: { ...NGRAM, promptLookupMin: 1 } });
    try {
      for (const extra of [{}, { temperature: 1, seed: 7 }, { logprobs: 2 }] as Partial<GenerateOptions>[]) {
        const reqs = workload(extra);
        const want = await Promise.all(reqs.map((r) => plain.generate(r)));
        const got = await Promise.all(reqs.map((r) => spec.generate(r)));
        got.forEach((r, i) => {
          assertEquals(r.ids, want[i].ids, `${JSON.stringify(extra)} request ${i}`);
          assertEquals(r.text, want[i].text);
          assertEquals(r.finishReason, want[i].finishReason);
          if (extra.logprobs) {
            const lp = (x: typeof r) => x.logprobs!.map((t) => t.logprob);
            lp(r).forEach((v, j) => assert(Math.abs(v - lp(want[i])[j]) < 1e-3, `logprob ${j}: ${v} vs ${lp(want[i])[j]}`));
          }
        });
      }
      const s = spec.stats();
      assert(s.specDraftTokens > 0 && s.specAcceptedTokens > 0, `no accepted drafts: ${s.specDraftTokens}/${s.specAcceptedTokens}`);
      // Some drafts were rejected too: the rollback path ran.
      assert(s.specAcceptedTokens < s.specDraftTokens, `every draft accepted: ${s.specDraftTokens}/${s.specAcceptedTokens}`);
      assertEquals(s.specAcceptedPerPosition[0] <= s.specAcceptedTokens, true);
      // Speculation off for the request: no drafts.
      const before = s.specDraftTokens;
      const off = await spec.generate({ prompt: COPY, maxTokens: 30, ignoreEos: true, speculative: false });
      assertEquals(off.ids, (await plain.generate({ prompt: COPY, maxTokens: 30, ignoreEos: true })).ids);
      assertEquals(spec.stats().specDraftTokens, before);
      assertEquals(plain.stats().specDraftTokens, 0);
      await idle(spec);
      assertEquals(spec.stats().kvBlocksUsed, 0);
    } finally {
      await plain.close();
      await spec.close();
    }
  });
}

test("speculative, disableByBatchSize 4: 8 streams decode plainly (no verification while 8 run) with plain outputs; one stream at a time speculates", async () => {
  const opts = { model: modelDir("stories260K"), maxBatchTokens: 256, maxSeqs: 8, kernelFamily: "gpu" as const, blockSize: 8 };
  const plain = await createEngine(opts);
  const spec = await createEngine({ ...opts, speculative: NGRAM });
  const limited = await createEngine({ ...opts, speculative: { ...NGRAM, disableByBatchSize: 4 } });
  const same = async (reqs: GenerateOptions[], concurrent: boolean) => {
    const run = async (engine: EngineClient) => {
      if (concurrent) return await Promise.all(reqs.map((r) => engine.generate(r)));
      const out = [];
      for (const r of reqs) out.push(await engine.generate(r));
      return out;
    };
    const want = await run(plain);
    for (const engine of [spec, limited]) (await run(engine)).forEach((r, i) => assertEquals(r.ids, want[i].ids, `request ${i}`));
  };
  try {
    // Equal lengths: all 8 decode until the end. Without the limit the copying stream
    // verifies; with it, nothing does.
    const even = PROMPTS.map((prompt) => ({ prompt, maxTokens: 40, ignoreEos: true }));
    await same(even, true);
    assert(spec.stats().specDrafts > 0, "no verification without the limit");
    assertEquals(limited.stats().specDrafts, 0);
    // Mixed lengths and a stop string (the batch shrinks as they finish): plain outputs.
    await same(workload(), true);
    // One stream at a time (under the limit) speculates as without it.
    const before = [spec.stats().specDrafts, limited.stats().specDrafts];
    await same(even, false);
    const drafts = [spec.stats().specDrafts - before[0], limited.stats().specDrafts - before[1]];
    assert(drafts[1] > 0 && drafts[1] === drafts[0], `verifications of single streams without / with the limit: ${drafts}`);
    await idle(limited);
    assertEquals(limited.stats().kvBlocksUsed, 0);
  } finally {
    await plain.close();
    await spec.close();
    await limited.close();
  }
});

test("speculative server: per-request speculative field, and the spec_decode counters in /metrics", async () => {
  const s = await testServer("stories260K", { maxSeqs: 4, tuning: { speculative: NGRAM } });
  try {
    // 128 tokens: the model does not copy this prompt; its own repeats come later.
    const body = { model: "stories260K", prompt: COPY, max_tokens: 128, temperature: 0, ignore_eos: true };
    const on = await post(`${s.base}/v1/completions`, body);
    assertEquals(on.status, 200);
    const off = await post(`${s.base}/v1/completions`, { ...body, speculative: false });
    assertEquals(off.status, 200);
    assertEquals(off.json.choices[0].text, on.json.choices[0].text);
    const bad = await post(`${s.base}/v1/completions`, { ...body, speculative: "yes" });
    assertEquals(bad.status, 400);
    const text = await (await fetch(`${s.base}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
    assert(value(VLLM_METRICS.specDraftTokens) > 0, text.split("\n").filter((l) => l.includes("spec")).join("\n"));
    assert(value(VLLM_METRICS.specAcceptedTokens) > 0, "accepted tokens");
    assert(value(VLLM_METRICS.specDrafts) > 0 && value(VLLM_METRICS.specDrafts) <= value(VLLM_METRICS.specDraftTokens), "drafts");
    assert(value(VLLM_SPEC_PER_POSITION) > 0, "accepted at position 0");
  } finally {
    await s.close();
  }
});

for (const model of ["llama-tiny", "qwen3-tiny"]) {
  test(`speculative ${model}: 8 concurrent greedy streams equal plain decoding token for token`, async () => {
    const opts = { model: modelDir(model), maxBatchTokens: 64, maxSeqs: 8 };
    const plain = await createEngine(opts);
    const spec = await createEngine({ ...opts, speculative: { ...NGRAM, promptLookupMin: 1 } });
    try {
      // Random-weight models rarely copy: also feed them token ids that repeat, and one prompt
      // holding every id of the 512-token vocabulary, so its first decode always drafts (n = 1).
      const reqs: GenerateOptions[] = [
        ...workload().slice(0, 6),
        { prompt: [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6], maxTokens: 40, ignoreEos: true },
        { prompt: Array.from({ length: 512 }, (_, i) => i), maxTokens: 33, ignoreEos: true },
      ];
      const want = await Promise.all(reqs.map((r) => plain.generate(r)));
      const got = await Promise.all(reqs.map((r) => spec.generate(r)));
      got.forEach((r, i) => assertEquals(r.ids, want[i].ids, `request ${i}`));
      assert(spec.stats().specDraftTokens > 0, "no drafts");
      await idle(spec);
      assertEquals(spec.stats().kvBlocksUsed, 0);
    } finally {
      await plain.close();
      await spec.close();
    }
  });
}

/**
 * A hybrid model with n-gram speculation against without: 1 and 8 streams, greedy and seeded,
 * with drafts accepted for a while and then rejected mid-draft; nothing held afterwards.
 */
async function hybridSameOutputs(opts: { model: string; maxBatchTokens: number; maxSeqs: number; kernelFamily?: "cpu" | "gpu" }): Promise<void> {
  const plain = await createEngine(opts);
  const spec = await createEngine({ ...opts, speculative: { method: "ngram", numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 1 } });
  try {
    // The random-weight model copies only what it made itself: its continuation of P, then
    // of P + that + P (A), which it repeats after a later P + O + P. Its first tokens are
    // also in the prompt once, followed by other tokens: drafts accepted for a while, then
    // rejected mid-draft (the state snapshot restored and the accepted tokens replayed).
    const greedy = async (prompt: number[]) => (await plain.generate({ prompt, maxTokens: 40, ignoreEos: true })).ids;
    const P = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6];
    const O = await greedy(P);
    const A = await greedy([...P, ...O, ...P]);
    const copy: GenerateOptions = { prompt: [...P, ...O, ...P, ...A.slice(0, 5), 1, 2, 3, ...P, ...O, ...P], maxTokens: 40, ignoreEos: true };
    assertEquals((await spec.generate(copy)).ids, (await plain.generate(copy)).ids, "single stream");
    const one = spec.stats();
    assert(one.specAcceptedTokens > 0, `single stream: no accepted drafts (${one.specDraftTokens} drafted)`);
    assert(one.specAcceptedTokens < one.specDraftTokens && one.specReplayTokens > 0, `single stream: no rejection (${JSON.stringify([one.specDraftTokens, one.specAcceptedTokens, one.specReplayTokens])})`);
    const reqs: GenerateOptions[] = [
      ...workload().slice(0, 5),
      copy,
      { ...copy, maxTokens: 9 },
      { prompt: [...P, ...O, ...P, ...A.slice(0, 3), 9, ...P, ...O, ...P], maxTokens: 25, ignoreEos: true },
    ];
    const want = await Promise.all(reqs.map((r) => plain.generate(r)));
    const got = await Promise.all(reqs.map((r) => spec.generate(r)));
    got.forEach((r, i) => assertEquals(r.ids, want[i].ids, `request ${i}`));
    const s = spec.stats();
    assert(s.specAcceptedTokens > one.specAcceptedTokens && s.specReplayTokens > one.specReplayTokens, "8 streams: no accepted or no rejected drafts");
    // Seeded sampling: the sampler's draw depends on (seed, output index) only, so a
    // replayed row samples what plain decoding samples there.
    const seeded = reqs.map((r, i) => ({ ...r, temperature: 1, seed: 11 + i }));
    const wantSeeded = await Promise.all(seeded.map((r) => plain.generate(r)));
    const gotSeeded = await Promise.all(seeded.map((r) => spec.generate(r)));
    gotSeeded.forEach((r, i) => assertEquals(r.ids, wantSeeded[i].ids, `seeded request ${i}`));
    await idle(spec);
    const end = spec.stats();
    assertEquals([end.kvBlocksUsed, end.stateSlotsUsed, end.kvBytesUsed], [0, 0, 0]);
    assertEquals(plain.stats().specReplayTokens, 0);
  } finally {
    await plain.close();
    await spec.close();
  }
}

for (const kernelFamily of ["cpu", "gpu"] as const) {
  test(`speculative qwen35-tiny (hybrid, ${kernelFamily} kernels): rejected drafts restore the recurrent state; 1 and 8 streams equal plain decoding`, async () => {
    await hybridSameOutputs({ model: modelDir("qwen35-tiny"), maxBatchTokens: 64, maxSeqs: 8, kernelFamily });
  });
}

test("speculative qwen35-moe (hybrid MoE, random weights): rejected drafts restore the recurrent state; 1 and 8 streams equal plain decoding", async () => {
  await withTempDir(async (dir) => {
    await writeRandomQwen35Moe(dir);
    await hybridSameOutputs({ model: dir, maxBatchTokens: 64, maxSeqs: 8 });
  });
});
