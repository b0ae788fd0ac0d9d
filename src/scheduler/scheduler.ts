/**
 * Chooses each step's work under a token budget and the KV-block budget.
 *
 * Order per step (policy "fifo"): running decodes, then continuing prefill chunks, then
 * waiting sequences in arrival order, the last one split to fit. "prefill_first" puts prefill
 * work before decodes (better time to first token, worse inter-token latency). When blocks
 * run out, the most recently admitted running sequence is preempted: its blocks are freed
 * and it goes back to the head of the queue to be recomputed later.
 *
 * Each running sequence also owns a sequence slot (its row of the sampler's tables and, for a
 * hybrid model, its recurrent-state slot for the linear-attention layers): admission needs a
 * free slot and the first chunk's blocks; finish, cancel and preemption free both. A hybrid
 * model's state cannot be rebuilt from KV blocks, so preemption recomputes from position 0
 * and prefix caching is off (`prefixCaching: false`: a cached prefix would need the state at
 * its end); chunked prefill carries the state from chunk to chunk in the slot.
 *
 * The scheduler owns the KV blocks and makes every finish decision: cancellations at the start
 * of a step, stop tokens and length when sampled tokens come back ({@link Scheduler.postprocess}).
 * Embedding requests are prefill-only sequences: admitted and chunked like prompts, never
 * sampled; their chunks output pooled hidden states, their blocks go back right after their
 * last chunk, and they finish when that chunk's pooled row is read back
 * ({@link Scheduler.postprocessPooled}). Plain CPU code: it never touches the GPU.
 * @module
 */
import type { FinishReason, SchedulerPolicy, TokenLogprob } from "../types/api.ts";
import { BlockManager } from "./block_manager.ts";
import type { Sequence } from "./sequence.ts";

/** Options for {@link Scheduler}. */
export interface SchedulerOptions {
  /** KV blocks in the pool. */
  numBlocks: number;
  /** Tokens per KV block. */
  blockSize: number;
  /** Token budget of one step. */
  maxBatchTokens: number;
  /** Most sequences running at once (also the most sampled rows per step). */
  maxSeqs: number;
  policy: SchedulerPolicy;
  /** Reuse and register cached prefix blocks (default true; off for hybrid models). */
  prefixCaching?: boolean;
  /**
   * Speculating sequences verify drafts made on the GPU (`gpuDraft` chunks, see
   * `runner/ngram_drafter.ts`) without waiting for their tokens; else drafts are made here
   * from the tokens read back (default false).
   */
  gpuDrafts?: boolean;
  /**
   * Positions a sequence's block table (and GPU token history) can hold: with `gpuDrafts`,
   * one-row steps may go on past the request's length at upper-bound positions up to here
   * while verifications are in flight (their real positions are lower), rather than wait for
   * the results (default: the request's length bounds them too).
   */
  maxContext?: number;
  /**
   * Hybrid models: a verification also advances the recurrent state over its rejected rows,
   * so a rejection rolls the sequence back to before the verification, and its next chunk
   * restores the state snapshot taken then and recomputes the accepted tokens.
   */
  recurrentState?: boolean;
  /**
   * Speculative decoding off above a batch size (vLLM's `disable_by_batch_size`): while this
   * many running sequences decode, no sequence starts a new verification (default: no limit).
   */
  disableSpeculationAt?: number;
}

/** One sequence's share of a step. */
export interface ScheduledChunk {
  seq: Sequence;
  /** First position computed. */
  start: number;
  /** Tokens computed. */
  count: number;
  /** Whether the chunk's last token is sampled. */
  sample: boolean;
  /**
   * A verification chunk (speculative decoding): the drafted tokens after the sequence's last
   * known token; every row of the chunk is sampled. A constrained sequence's draft is already
   * cut where its grammar stops it ({@link SequenceConstraint.walkDraft}); row i is then
   * masked with the grammar's state after draft tokens 0..i-1.
   */
  draft?: readonly number[];
  /**
   * A verification chunk whose drafts a draft model sampled (method "draft", sampled
   * requests): the row of each draft token's distribution q in the sampler's draft-distribution
   * buffer. Row i then accepts draft[i] with probability min(1, p/q) and else samples from
   * max(p - q, 0) (kernels/sample.wgsl), instead of sampling p and comparing.
   */
  draftProbs?: readonly number[];
  /**
   * The draft runner's steps: the chunk's sampled row also writes its processed distribution
   * into this row of the draft-distribution buffer.
   */
  probsRow?: number;
  /**
   * A verification chunk whose drafts the GPU makes (`gpuDrafts`): `count` = 1 + this many
   * drafts, every row sampled. `start` and the chunk's positions are upper bounds (its blocks
   * exist): the real ones follow from accepted counts still on the GPU.
   */
  gpuDraft?: number;
  /**
   * `gpuDrafts`, a sampled plain chunk of a speculating sequence: the GPU keeps its token
   * history, so the token sampled here is appended to it (and drafted after). "upload" when
   * it kept none until now (the sequence decoded plainly): the runner first writes the
   * history up to this chunk (known tokens, and tokens still on the GPU from their records).
   */
  gpuHistory?: "append" | "upload";
  /**
   * Hybrid models: restore the sequence's recurrent state from the snapshot taken before its
   * last verification (a draft was rejected) before this chunk runs.
   */
  restoreState?: boolean;
  /**
   * Embedding requests: the pooled hidden state this chunk outputs (its last token's on the
   * last chunk of last pooling, the sum over its tokens for mean pooling), else "none".
   */
  pool: "last" | "sum" | "none";
}

/** A step's plan. */
export interface StepPlan {
  chunks: ScheduledChunk[];
  /** Sequences admitted this step (need a fresh sampler slot). */
  admitted: Sequence[];
  /** Sequences preempted this step. */
  preempted: Sequence[];
  /** Sequences that ended at the start of this step (cancelled). */
  finished: Sequence[];
  prefillTokens: number;
  decodeTokens: number;
}

/** One sampled token read back from the GPU, for the step row that sampled it. */
export interface SampledRow {
  seq: Sequence;
  /** Index of the token in the sequence's output. */
  outputIndex: number;
  /** The token (with its logprob and alternatives when the sequence asked for them). */
  token: TokenLogprob;
  /** A row of a `gpuDraft` verification (its output index is not known yet: -1). */
  verifyRow?: boolean;
  /** The accepted count that follows a `gpuDraft` verification's rows (`token` unused). */
  verified?: { accepted: number; drafted: number };
}

/** One chunk's pooled hidden state read back from the GPU (embedding requests). */
export interface PooledRow {
  seq: Sequence;
  /** The last token's final hidden state, or the sum over the chunk's tokens (mean pooling). */
  values: Float32Array;
  /** Whether the chunk was the sequence's last. */
  final: boolean;
}

/** An embedding sequence that has finished: its pooled (not yet normalized) hidden state. */
export interface EmbeddingOutput {
  seq: Sequence;
  embedding: Float32Array;
}

/** What one readback did to a sequence. */
export interface SequenceOutput {
  seq: Sequence;
  /** New token ids, in order. */
  ids: number[];
  /** Their logprobs, when the sequence asked for them. */
  logprobs: TokenLogprob[];
  /** Set when the sequence ended here. */
  finishReason: FinishReason | null;
}

/** Waiting and running queues over a pool of KV blocks. */
export class Scheduler {
  readonly options: SchedulerOptions;
  /** The KV blocks (reference counts, prefix cache). */
  readonly blocks: BlockManager;
  readonly waiting: Sequence[] = [];
  /** In admission order: the last is the first preemption victim. */
  readonly running: Sequence[] = [];
  /** Sequences whose last token is scheduled and not yet read back (see "draining"). */
  readonly draining: Set<Sequence> = new Set();
  preemptions = 0;
  /** Speculative decoding: draft tokens verified, accepted, and accepted per draft position. */
  specDrafts = 0;
  specDraftTokens = 0;
  specAcceptedTokens = 0;
  specAcceptedPerPosition: number[] = [];
  /** Hybrid models: tokens recomputed after a rejected draft (state restored, then replayed). */
  specReplayTokens = 0;
  /** The batch-size limit holds speculation off for the current plan (see {@link limitSpeculation}). */
  #specPaused = false;
  #freeSlots: number[];
  /** Sequences whose last token the latest plan schedules; they drain at the next plan. */
  #completing: Sequence[] = [];

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.blocks = new BlockManager(options.numBlocks, options.blockSize);
    this.#freeSlots = Array.from({ length: options.maxSeqs }, (_, i) => options.maxSeqs - 1 - i);
  }

  /**
   * Queues a new sequence. A constrained sequence first takes the tokens its grammar forces
   * at the start as known outputs (they are prefilled with the prompt); those are returned
   * for delivery, with the finish when they already reach `maxTokens`.
   */
  add(seq: Sequence): SequenceOutput | null {
    seq.status = "waiting";
    const o: SequenceOutput = { seq, ids: [], logprobs: [], finishReason: null };
    if (seq.constraint) this.#appendForced(seq, o);
    if (o.finishReason) return o;
    this.waiting.push(seq);
    return o.ids.length ? o : null;
  }

  /** Sequence slots held (running sequences, plus draining ones until the next plan). */
  get slotsInUse(): number {
    return this.options.maxSeqs - this.#freeSlots.length;
  }

  /** Whether anything is queued, running or waiting for its last tokens. */
  get hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0 || this.draining.size > 0;
  }

  /** Asks a sequence to leave: it ends as "cancelled" at the next {@link schedule}. */
  cancel(seq: Sequence): void {
    seq.cancelled = true;
  }

  /** Ends a sequence now: frees its blocks and slot. */
  finish(seq: Sequence, reason: FinishReason): void {
    if (seq.status === "finished") return;
    this.#release(seq);
    remove(this.waiting, seq);
    remove(this.running, seq);
    this.draining.delete(seq);
    seq.status = "finished";
    seq.finishReason = reason;
    seq.constraint?.dispose();
  }

  /**
   * Applies tokens read back from the GPU, in step order: appends them, ends sequences that
   * sampled a stop token or reached their length, and commits newly full blocks to the prefix
   * cache. Tokens of sequences that already ended (sampled past a stop while the GPU ran
   * ahead, or cancelled) are dropped. A constrained sequence's grammar accepts each token
   * (it ends with "stop" once complete), then adds the tokens it forces next.
   */
  postprocess(rows: Iterable<SampledRow>): SequenceOutput[] {
    const out = new Map<Sequence, SequenceOutput>();
    for (const row of rows) {
      const seq = row.seq;
      if (row.verifyRow) {
        seq.speculation!.gpuRows.push(row.token);
        continue;
      }
      if (row.verified) {
        this.#endGpuVerification(seq, row.verified, out);
        continue;
      }
      seq.pending--;
      const verification = seq.speculation?.verification;
      if (!verification?.rejected) this.#apply(row, out);
      if (verification && seq.pending === 0) this.#endVerification(seq);
    }
    return [...out.values()];
  }

  /** Applies one sampled row (see {@link postprocess}). */
  #apply({ seq, outputIndex, token }: SampledRow, out: Map<Sequence, SequenceOutput>): void {
    if (seq.status === "finished" || seq.cancelled) return;
    if (outputIndex !== seq.outputIds.length) throw new Error(`sequence ${seq.id}: output ${outputIndex} out of order`);
    let o = out.get(seq);
    if (!o) out.set(seq, o = { seq, ids: [], logprobs: [], finishReason: null });
    const constraint = seq.constraint;
    if (constraint && !constraint.accept(token.id)) {
      // Only when every token was masked (a grammar with no way on): end rather than emit
      // a token the grammar forbids.
      this.finish(seq, "stop");
      o.finishReason = "stop";
      return;
    }
    seq.outputIds.push(token.id);
    o.ids.push(token.id);
    if (seq.sampling.logprobs) o.logprobs.push(token);
    const v = seq.speculation?.verification;
    if (v) {
      // Row i verified draft token i: a different sample ends the accepted prefix there.
      const i = outputIndex - v.base;
      if (i < v.draft.length) {
        if (token.id === v.draft[i]) v.accepted++;
        else v.rejected = true;
      }
    }
    const reason = seq.stopTokenIds.has(token.id) || constraint?.terminated
      ? "stop"
      : seq.outputIds.length >= seq.maxTokens
      ? "length"
      : null;
    if (reason) {
      this.finish(seq, reason);
      o.finishReason = reason;
      return;
    }
    if (constraint) {
      const known = seq.outputIds.length;
      this.#appendForced(seq, o);
      // Plain decoding appends the forced text here: the verification's later rows are void.
      if (v && seq.outputIds.length > known) v.rejected = true;
    }
    if (!o.finishReason && !v) this.commitBlocks(seq);
  }

  /**
   * A verification's rows are all back: counts the accepted drafts, rolls the sequence back
   * to its accepted tokens (the K/V of rejected rows is dropped, and blocks only they used
   * go back to the pool) and adapts its draft length.
   */
  #endVerification(seq: Sequence): void {
    const spec = seq.speculation!;
    const v = spec.verification!;
    spec.verification = null;
    this.specDrafts++;
    this.specDraftTokens += v.draft.length;
    this.specAcceptedTokens += v.accepted;
    for (let i = 0; i < v.accepted; i++) this.specAcceptedPerPosition[i] = (this.specAcceptedPerPosition[i] ?? 0) + 1;
    spec.observe(v.draft.length, v.accepted);
    if (seq.status !== "running") return;
    // The rows fed the last token then known and the accepted drafts: their K/V stand (the
    // newest token, sampled, and any forced tokens after it are not fed yet).
    seq.numComputed = seq.promptIds.length + v.base + v.accepted;
    if (this.options.recurrentState && v.accepted < v.draft.length) {
      // The state also took the rejected rows: back to before the verification (its first
      // row, the last token then known, is fed again); the next chunk restores the snapshot
      // and recomputes the accepted tokens plus the next one, sampling after them.
      const back = seq.promptIds.length + v.base - 1;
      this.specReplayTokens += seq.numComputed - back;
      seq.numComputed = back;
      spec.restoreState = true;
    }
    const keep = Math.ceil(seq.knownLength / this.blocks.blockSize);
    if (seq.blockTable.length > keep) this.blocks.release(seq.blockTable.splice(keep));
    this.commitBlocks(seq);
  }

  /**
   * A `gpuDraft` verification's rows and accepted count are back: its accepted drafts and the
   * next sample (rows 0..accepted) are the sequence's next tokens; its upper-bound length
   * drops by the rejected rows, blocks past it go back to the pool, and the draft length adapts.
   */
  #endGpuVerification(seq: Sequence, v: { accepted: number; drafted: number }, out: Map<Sequence, SequenceOutput>): void {
    const spec = seq.speculation!;
    const rows = spec.gpuRows.splice(0);
    const fed = spec.gpuInflight.shift()!;
    seq.pending--;
    // A verification the GPU found no draft for made one token, as a plain step: no draft
    // (nor does a one-row step, which verifies nothing and says nothing of the drafts).
    if (v.drafted > 0) this.specDrafts++;
    this.specDraftTokens += v.drafted;
    this.specAcceptedTokens += v.accepted;
    for (let i = 0; i < v.accepted; i++) this.specAcceptedPerPosition[i] = (this.specAcceptedPerPosition[i] ?? 0) + 1;
    if (fed > 0 && v.drafted === 0) spec.noDraft();
    else if (fed > 0) spec.observe(v.drafted, v.accepted);
    if (seq.status === "running") {
      seq.numComputed -= fed - v.accepted;
      const keep = Math.ceil((seq.numComputed + 1) / this.blocks.blockSize);
      if (seq.blockTable.length > keep) this.blocks.release(seq.blockTable.splice(keep));
    }
    for (let i = 0; i <= v.accepted && i < rows.length; i++) {
      if (seq.status === "finished" || seq.cancelled) break;
      this.#apply({ seq, outputIndex: seq.outputIds.length, token: rows[i] }, out);
    }
  }

  /**
   * Applies pooled rows read back from the GPU: adds each chunk's row to its sequence's sum;
   * a sequence whose last chunk came back finishes ("stop") with its pooled hidden state (the
   * last token's, or the mean over the input). Rows of sequences already ended are dropped.
   */
  postprocessPooled(rows: Iterable<PooledRow>): EmbeddingOutput[] {
    const out: EmbeddingOutput[] = [];
    for (const { seq, values, final } of rows) {
      seq.pendingPooled--;
      if (seq.status === "finished" || seq.cancelled) continue;
      const sum = (seq.pooledSum ??= new Float64Array(values.length));
      for (let i = 0; i < values.length; i++) sum[i] += values[i];
      if (!final) continue;
      const n = seq.pooling === "mean" ? seq.promptIds.length : 1;
      out.push({ seq, embedding: Float32Array.from(sum, (v) => v / n) });
      this.finish(seq, "stop");
    }
    return out;
  }

  /** Appends the tokens a constrained sequence's grammar forces (up to its length). */
  #appendForced(seq: Sequence, o: SequenceOutput): void {
    const forced = seq.constraint!.forced().slice(0, seq.maxTokens - seq.outputIds.length);
    seq.outputIds.push(...forced);
    o.ids.push(...forced);
    if (seq.outputIds.length >= seq.maxTokens) {
      this.finish(seq, "length");
      o.finishReason = "length";
    }
  }

  /** Registers full blocks whose tokens are all known in the prefix cache. */
  commitBlocks(seq: Sequence): void {
    if (seq.status !== "running" || this.options.prefixCaching === false) return;
    const bs = this.blocks.blockSize;
    const full = Math.floor(Math.min(seq.knownLength, seq.numComputed) / bs);
    if (seq.committedBlocks >= full) return;
    const tokens = seq.knownTokens();
    for (let b = seq.committedBlocks; b < full; b++) {
      seq.lastBlockKey = this.blocks.commitFull(seq.blockTable[b], seq.lastBlockKey, tokens.slice(b * bs, (b + 1) * bs));
    }
    seq.committedBlocks = full;
  }

  /**
   * The batch-size limit (`disableSpeculationAt`): whether as many running sequences decode
   * (past their prompt's prefill) as the limit. If so, every speculating sequence that can
   * stop now stops as one that backs off does: with GPU drafts at once (its verifications in
   * flight come back, one-row steps fill in until they have, then plain steps); with CPU
   * drafts once its verification in flight is back (it waits for that anyway). While it holds,
   * no plain sequence arms. {@link schedule} calls it; the engine also calls it before a draft
   * model drafts, so that no draft is made for a step that will not verify it.
   */
  limitSpeculation(): boolean {
    const at = this.options.disableSpeculationAt;
    if (at === undefined) return false;
    let decoding = 0;
    for (const seq of this.running) {
      // A hybrid model's replay after a rejection recomputes a few rows: still decoding.
      if (seq.status === "running" && !seq.pooling && (seq.totalLength - seq.numComputed <= 1 || seq.speculation?.restoreState)) decoding++;
    }
    this.#specPaused = decoding >= at;
    if (!this.#specPaused) return false;
    for (const seq of this.running) {
      const spec = seq.speculation;
      if (spec?.active && (this.options.gpuDrafts || !spec.verification)) spec.suspend();
    }
    return true;
  }

  /**
   * Plans the next step. First, sequences whose last token the previous plan scheduled give
   * back their blocks and slot (the runner has built that step), so that waiting requests
   * join at this step rather than after a readback; and sequences asked to leave end.
   */
  schedule(now = performance.now()): StepPlan {
    const plan: StepPlan = { chunks: [], admitted: [], preempted: [], finished: [], prefillTokens: 0, decodeTokens: 0 };
    for (const seq of this.#completing.splice(0)) {
      if (seq.status !== "running") continue;
      this.#release(seq);
      remove(this.running, seq);
      seq.status = "draining";
      this.draining.add(seq);
    }
    for (const seq of [...this.running, ...this.waiting, ...this.draining]) {
      if (!seq.cancelled) continue;
      this.finish(seq, "cancelled");
      plan.finished.push(seq);
    }
    const paused = this.limitSpeculation();
    let budget = this.options.maxBatchTokens;
    const decodes = () => {
      for (const seq of [...this.running]) {
        if (budget <= 0) break;
        if (seq.status !== "running" || this.#scheduled(plan, seq)) continue;
        // A constrained sequence drafts here: its verification rows need masks walked
        // through its grammar (see ScheduledChunk.draft).
        const gpu = this.options.gpuDrafts && seq.speculation && !seq.constraint;
        if (gpu) {
          const k = this.#gpuDraftLength(seq, budget);
          if (k >= 0) {
            if (!this.#ensureBlocks(seq, seq.numComputed + 1 + k, plan) || seq.status !== "running") continue;
            budget -= this.#takeGpuVerification(plan, seq, k);
            continue;
          }
        }
        if (!this.#wantsDecode(seq)) continue;
        // It starts speculating only with no GPU-completed chunk in flight: the history
        // upload takes every token in flight from a plain step's record.
        if (gpu) seq.speculation!.plainStep(() => seq.knownTokens(), seq.knownLength, seq.speculation!.gpuInflight.length === 0 && !paused);
        const draft = gpu ? [] : this.#draft(seq, budget);
        if (!this.#ensureBlocks(seq, seq.numComputed + 1 + draft.length, plan)) continue;
        budget -= this.#take(plan, seq, 1 + draft.length, true, draft);
      }
    };
    const prefills = () => {
      for (const seq of [...this.running]) {
        if (budget <= 0) break;
        // Chunked prefill (or recompute) still in progress: more than one token to compute
        // (an embedding's prompt is all prefill, down to its last token).
        if (seq.status !== "running" || this.#scheduled(plan, seq)) continue;
        const left = seq.totalLength - seq.numComputed;
        if (left < (seq.pooling ? 1 : 2) || (seq.constraint && seq.pending > 0)) continue;
        const n = Math.min(budget, seq.totalLength - seq.numComputed);
        if (!this.#ensureBlocks(seq, seq.numComputed + n, plan) || seq.status !== "running") continue;
        budget -= this.#take(plan, seq, n, false);
      }
    };
    const admit = () => {
      for (let i = 0; i < this.waiting.length && budget > 0;) {
        const seq = this.waiting[i];
        if (!this.#ready(seq, plan)) {
          i++;
          continue;
        }
        if (this.running.length >= this.options.maxSeqs || !this.#admit(seq, budget, now)) break;
        this.waiting.splice(i, 1);
        plan.admitted.push(seq);
        const n = Math.min(budget, seq.totalLength - seq.numComputed);
        budget -= this.#take(plan, seq, n, false);
      }
    };
    if (this.options.policy === "prefill_first") {
      prefills();
      admit();
      decodes();
    } else {
      decodes();
      prefills();
      admit();
    }
    // Blocks this step fills with known tokens can be shared from now on (their K/V are
    // written by this step, before any later step that reuses them).
    for (const c of plan.chunks) this.commitBlocks(c.seq);
    return plan;
  }

  /**
   * Decode wanted: a sampled token waits to be fed and the output is not complete. A
   * constrained sequence waits until that token is read back: its mask depends on it.
   */
  #wantsDecode(seq: Sequence): boolean {
    return seq.totalLength - seq.numComputed === 1 && seq.generated < seq.maxTokens &&
      !((seq.constraint || seq.speculation?.active) && seq.pending > 0);
  }

  /**
   * Drafts a `gpuDrafts` sequence verifies at its next decode, or -1 for a plain decode (or
   * none). While speculating it needs no known tokens: the GPU drafts after whatever its
   * earlier steps made. The step's rows stay within the budget and, at their upper-bound
   * positions, within the request's length (the last token is never fed). Past the
   * verifications the sequence may have in flight unconfirmed ({@link SpeculationState.window})
   * it drafts 0: a one-row step whose position the GPU completes too (its length is not known
   * here), so a run of drafts that stopped matching costs one row per step until the
   * results come back.
   */
  #gpuDraftLength(seq: Sequence, budget: number): number {
    const spec = seq.speculation!;
    // The GPU history starts with a plain step (see ScheduledChunk.gpuHistory).
    if (!spec.gpuHistory || seq.generated >= seq.maxTokens || budget < 1) return -1;
    const room = seq.promptIds.length + seq.maxTokens - 2 - seq.numComputed;
    const verifying = spec.gpuInflight.some((fed) => fed > 0);
    // Near the end the upper bound passes the request's length while the real position
    // may not: one-row steps go on within the context (see SchedulerOptions.maxContext).
    const limit = this.options.maxContext ?? seq.promptIds.length + seq.maxTokens;
    if (room < 0) return verifying && seq.numComputed + 2 <= limit ? 0 : -1;
    // Stopped speculating: one-row steps while verifications are in flight, rather than a
    // wait for them (a plain step needs its position known).
    if (!spec.active) return verifying ? 0 : -1;
    const unconfirmed = spec.gpuInflight.reduce((n, fed) => n + (fed > 0 ? 1 : 0), 0);
    const k = unconfirmed >= spec.window ? 0 : Math.min(spec.k, budget - 1, room);
    // With nothing in flight its length is known: a plain step (keeping the history) does.
    return k > 0 || spec.gpuInflight.length > 0 ? k : -1;
  }

  /** Adds a `gpuDraft` verification chunk of 1 + k rows (k may be 0); returns its token count. */
  #takeGpuVerification(plan: StepPlan, seq: Sequence, k: number): number {
    const n = k + 1;
    plan.chunks.push({ seq, start: seq.numComputed, count: n, sample: true, pool: "none", gpuDraft: k });
    seq.numComputed += n;
    seq.speculation!.gpuInflight.push(k);
    // One pending entry per verification: it makes at least one token.
    seq.pending++;
    plan.decodeTokens += n;
    return n;
  }

  /**
   * `gpuDrafts`: whether a sampled plain chunk keeps the sequence's GPU token history. Only a
   * speculating sequence keeps one, so plain decoding costs no n-gram dispatch; the first
   * chunk after it starts speculating uploads the history.
   */
  #gpuHistory(seq: Sequence): "append" | "upload" | undefined {
    const spec = seq.speculation;
    if (!this.options.gpuDrafts || !spec || seq.constraint) return undefined;
    const kept = spec.gpuHistory;
    spec.gpuHistory = spec.active;
    return spec.active ? (kept ? "append" : "upload") : undefined;
  }

  /** A speculating sequence's draft for its next decode (its tokens are all known), else []. */
  #draft(seq: Sequence, budget: number): number[] {
    const spec = seq.speculation;
    if (!spec) return [];
    if (!spec.active || seq.pending > 0) {
      spec.plainStep(() => seq.knownTokens(), seq.knownLength, !this.#specPaused);
      return [];
    }
    // The step makes at most draft + 1 tokens: within maxTokens and the token budget.
    const draft = spec.draft(seq.knownTokens(), Math.min(seq.maxTokens - seq.generated - 1, budget - 1));
    if (!seq.constraint || draft.length === 0) return draft;
    // The draft ends where the grammar rejects a token (or terminates, or forces text). A
    // draft sampled from q is verified by plain comparison here: cutting it where the grammar
    // rejects would bias the q rule's residual, while comparing a draw of p with any draft
    // independent of that draw is exact.
    spec.draftProbs = null;
    return draft.slice(0, seq.constraint.walkDraft!(draft));
  }

  #ready(seq: Sequence, plan: StepPlan): boolean {
    // A preempted sequence resumes only when all its tokens are known again; an n > 1
    // sibling waits for the first one's prefill to have run (not merely be scheduled in
    // this step), so that the prompt's blocks are in the prefix cache to share.
    if (seq.pending > 0 || seq.pendingPooled > 0 || seq.cancelled) return false;
    const gate = seq.gate;
    return !gate || gate.status === "finished" || gate.status === "draining" || (gate.prefilled && !this.#scheduled(plan, gate));
  }

  #scheduled(plan: StepPlan, seq: Sequence): boolean {
    return plan.chunks.some((c) => c.seq === seq);
  }

  /** Adds a chunk of n tokens; returns n. */
  #take(plan: StepPlan, seq: Sequence, n: number, decode: boolean, draft: readonly number[] = []): number {
    const start = seq.numComputed;
    seq.numComputed += n;
    if (seq.pooling) return this.#takePrefillOnly(plan, seq, start, n);
    if (draft.length > 0) {
      // Verification: every row sampled; the sequence ends (if it does) when they are back.
      const spec = seq.speculation!;
      spec.verification = { base: seq.outputIds.length, draft, accepted: 0, rejected: false };
      const draftProbs = spec.draftProbs?.slice(0, draft.length);
      plan.chunks.push({ seq, start, count: n, sample: true, pool: "none", draft, ...(draftProbs ? { draftProbs } : {}) });
      seq.pending += n;
      plan.decodeTokens += n;
      return n;
    }
    const sample = seq.numComputed === seq.totalLength && seq.generated < seq.maxTokens;
    // A prompt that already repeats itself arms speculation at its prefill, so the first
    // decode drafts (the tokens it would wait for are all known but the one sampled here).
    if (sample && !decode) seq.speculation?.plainStep(() => seq.knownTokens(), seq.knownLength, !this.#specPaused);
    const restoreState = seq.speculation?.restoreState === true;
    if (restoreState) seq.speculation!.restoreState = false;
    const gpuHistory = sample ? this.#gpuHistory(seq) : undefined;
    plan.chunks.push({
      seq,
      start,
      count: n,
      sample,
      pool: "none",
      ...(restoreState ? { restoreState } : {}),
      ...(gpuHistory ? { gpuHistory } : {}),
    });
    // The token sampled at the chunk's end stays on the GPU until a readback.
    if (sample) seq.pending++;
    if (sample && seq.generated >= seq.maxTokens) this.#completing.push(seq);
    if (decode) plan.decodeTokens += n;
    else plan.prefillTokens += n;
    return n;
  }

  /**
   * An embedding's chunk: pooled (every chunk for mean pooling, the last one for last
   * pooling), never sampled; after its last chunk the sequence gives back its blocks at the
   * next plan and waits only for its pooled rows.
   */
  #takePrefillOnly(plan: StepPlan, seq: Sequence, start: number, n: number): number {
    const final = seq.numComputed === seq.promptIds.length;
    const pool = seq.pooling === "mean" ? "sum" : final ? "last" : "none";
    plan.chunks.push({ seq, start, count: n, sample: false, pool });
    if (pool !== "none") seq.pendingPooled++;
    if (final) this.#completing.push(seq);
    plan.prefillTokens += n;
    return n;
  }

  /** Admits a waiting sequence if its first chunk's blocks fit, keeping a reserve. */
  #admit(seq: Sequence, budget: number, now: number): boolean {
    const tokens = seq.knownTokens();
    // Mean pooling needs every position's hidden state, and a hybrid model the recurrent state
    // at the prefix's end: no prefix-cache hits for either.
    const hit = seq.pooling === "mean" || this.options.prefixCaching === false
      ? { blocks: [], numTokens: 0, lastKey: null }
      : this.blocks.acquirePrefix(tokens);
    const first = Math.min(budget, tokens.length - hit.numTokens);
    const need = Math.ceil((hit.numTokens + first) / this.blocks.blockSize) - hit.blocks.length;
    // Keep one block per running sequence free so running decodes can go on.
    if (need + this.running.length > this.blocks.availableCount || this.#freeSlots.length === 0) {
      this.blocks.release(hit.blocks);
      return false;
    }
    seq.blockTable = [...hit.blocks, ...this.blocks.allocate(need)];
    seq.numComputed = hit.numTokens;
    // Usage reports prompt tokens served from the cache: a hit may run past the prompt into
    // output already known at admission (a grammar's forced opening, or a preempted row's).
    seq.cachedTokens = Math.min(hit.numTokens, seq.promptIds.length);
    seq.committedBlocks = hit.blocks.length;
    seq.lastBlockKey = hit.lastKey;
    seq.slot = this.#freeSlots.pop()!;
    // A new slot's GPU token history is empty (gpuDrafts).
    if (seq.speculation) seq.speculation.gpuHistory = false;
    // An embedding recomputed after a preemption pools from scratch (its old rows are all in).
    seq.pooledSum = null;
    seq.status = "running";
    seq.admittedAt = now;
    this.running.push(seq);
    return true;
  }

  /**
   * Grows `seq`'s block table to hold `tokens`, preempting the newest running sequences
   * while blocks are short. Returns false when `seq` itself had to be preempted.
   */
  #ensureBlocks(seq: Sequence, tokens: number, plan: StepPlan): boolean {
    const need = Math.ceil(tokens / this.blocks.blockSize) - seq.blockTable.length;
    if (need <= 0) return true;
    while (this.blocks.availableCount < need) {
      const victim = this.#victim(plan);
      this.#preempt(victim, plan);
      if (victim === seq) return false;
    }
    seq.blockTable.push(...this.blocks.allocate(need));
    return true;
  }

  /** The most recently admitted running sequence not already in this step. */
  #victim(plan: StepPlan): Sequence {
    for (let i = this.running.length - 1; i >= 0; i--) {
      if (!this.#scheduled(plan, this.running[i])) return this.running[i];
    }
    throw new Error("no preemption victim: the step alone exceeds the KV cache");
  }

  #preempt(seq: Sequence, plan: StepPlan): void {
    this.#release(seq);
    remove(this.running, seq);
    seq.status = "waiting";
    this.waiting.unshift(seq);
    plan.preempted.push(seq);
    this.preemptions++;
  }

  #release(seq: Sequence): void {
    if (seq.blockTable.length) this.blocks.release(seq.blockTable);
    seq.blockTable = [];
    seq.numComputed = 0;
    seq.committedBlocks = 0;
    seq.lastBlockKey = null;
    // Recomputed from position 0 (the state starts from zeros there): nothing to restore.
    if (seq.speculation) seq.speculation.restoreState = false;
    if (seq.slot >= 0) this.#freeSlots.push(seq.slot);
    seq.slot = -1;
  }
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}
