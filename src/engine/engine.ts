/**
 * The engine: one model runner, the scheduler, and the loop
 * `step() = scheduler.schedule() -> runner.step(plan) -> scheduler.postprocess(rows)`.
 *
 * Steps are submitted without waiting; sampled tokens come back in batches (see
 * `runner/model_runner.ts`). The scheduler decides every finish (cancel, stop token, length);
 * the engine routes tokens and finishes to each request's sink and keeps the metrics.
 * Embedding requests join the same batch as prefill-only sequences
 * (`step() = schedule -> run -> postprocess + postprocessPooled`).
 * @module
 */
import {
  type EmbedRequest,
  type EngineInfo,
  EngineError,
  type EngineOptions,
  type EngineRequest,
  type EngineStats,
  type FinishReason,
  type Pooling,
  SAMPLING_DEFAULTS,
  type TokenLogprob,
} from "../types/api.ts";
import type { Gpu } from "../gpu/device.ts";
import { ModelRunner, type RunnerMemory } from "../runner/model_runner.ts";
import { linearWeightDTypes } from "../model/weights.ts";
import { type EmbeddingOutput, Scheduler, type SequenceOutput, type StepPlan } from "../scheduler/scheduler.ts";
import { resolvePooling } from "../model/pooling_config.ts";
import { parameterCount } from "../model/parameters.ts";
import { Sequence } from "../scheduler/sequence.ts";
import { SpeculationState, speculationAllowed } from "../scheduler/speculation.ts";
import { checkSpeculativeConfig } from "./speculative_config.ts";
import { checkDraftTokenizer, DraftModel } from "./draft_model.ts";
import type { Drafter } from "./draft_rounds.ts";
import { MtpDrafter } from "./mtp_drafter.ts";
import { openMtpTensors } from "../model/mtp_source.ts";
import { EngineGrammar } from "./constraints.ts";
import { EngineMetrics } from "./metrics.ts";

/** Most logprob alternatives a request may ask for. */
export const MAX_TOP_LOGPROBS = 20;
/** Most completions per request. */
export const MAX_N = 16;

/** Options of {@link Engine.load}: the public options, plus an existing device (tests). */
export interface EngineLoadOptions extends EngineOptions {
  gpu?: Gpu;
  /** Weight upload progress. */
  onLoadProgress?: (done: number, total: number) => void;
}

/** Where a request's results go. */
export interface RequestSink {
  tokens(index: number, ids: number[], logprobs: TokenLogprob[] | undefined): void;
  done(index: number, finishReason: FinishReason, promptTokens: number, cachedTokens: number): void;
  /** The engine failed; the request ends with this error (called once per completion). */
  fail(index: number, error: Error): void;
}

/** Where an embedding request's results go. */
export interface EmbeddingSink {
  /**
   * Input `index` is done: its pooled final hidden state (not normalized), or null when it
   * was cancelled; `promptTokens` is its length.
   */
  embedding(index: number, embedding: Float32Array | null, promptTokens: number): void;
  /** The engine failed; the request ends with this error (called once per input). */
  fail(index: number, error: Error): void;
}

/** A submitted request. */
export interface RequestHandle {
  /** Cancels one completion, or all of them. */
  cancel(index?: number): void;
}

interface Member {
  sink: RequestSink;
  index: number;
}

interface Embedder {
  sink: EmbeddingSink;
  index: number;
}

/** Engine options of {@link Engine.start} and the constructor. */
type StartOptions = Pick<EngineOptions, "policy" | "grammarHostCompileMs" | "speculative"> & {
  model?: string;
  pooling?: Pooling | null;
  /** Speculative methods "draft" and "mtp": the loaded draft model or MTP head (the engine then owns it). */
  draft?: Drafter | null;
};

/** The runner's memory as engine info reports it. */
function memoryInfo(m: RunnerMemory): NonNullable<EngineInfo["memory"]> {
  return {
    weightBytes: m.weightBytes,
    expertBytes: m.expertBytes,
    kvCacheBytes: m.kvCacheBytes,
    kvBudget: m.kvBudget?.source ?? "num_blocks",
    ...(m.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: m.gpuMemoryBytes } : {}),
  };
}

/** The continuous-batching engine over one model. */
export class Engine {
  readonly runner: ModelRunner;
  readonly scheduler: Scheduler;
  readonly metrics: EngineMetrics = new EngineMetrics();
  readonly info: EngineInfo;
  #maxBatchTokens: number;
  #members = new Map<Sequence, Member>();
  /** Sequences of embedding requests, and where their results go. */
  #embedders = new Map<Sequence, Embedder>();
  #nextSeqId = 0;
  #wake: (() => void) | null = null;
  /** Set by submit/cancel: there may be new work since the loop last looked. */
  #kicked = false;
  #closing = false;
  #loop: Promise<void>;
  #failure: Error | null = null;
  /** Grammar constraints for this model (null without a checkpoint directory). */
  #grammar: EngineGrammar | null;
  /** Constrained sequences whose matcher is being made (not yet in the scheduler). */
  #preparing = new Set<Sequence>();
  /** Speculative decoding, or null (off). */
  #speculative: EngineOptions["speculative"] | null;
  /** Hybrid models with speculation: bytes of the recurrent-state snapshots (0 otherwise). */
  #stateSnapshotBytes = 0;
  /** Speculative methods "draft" and "mtp": the draft model or MTP head, else null. */
  #draft: Drafter | null;
  /** Called after every readback and when idle (the Worker posts stats from here). */
  onProgress: (() => void) | null = null;

  private constructor(runner: ModelRunner, options: StartOptions) {
    this.runner = runner;
    this.#grammar = options.model
      ? new EngineGrammar({
        model: options.model,
        vocabSize: runner.spec.vocabSize,
        architecture: runner.spec.architecture,
        hostCompileMs: options.grammarHostCompileMs,
      })
      : null;
    this.#maxBatchTokens = runner.capacity.maxTokens;
    this.#speculative = options.speculative ? checkSpeculativeConfig(options.speculative) : null;
    // A hybrid model's verification advances the recurrent state over every row: each slot
    // gets a snapshot to restore after a rejection (see gpu/state_snapshots.ts).
    this.#stateSnapshotBytes = this.#speculative && runner.state ? runner.enableStateSnapshots() : 0;
    const modelDrafts = this.#speculative?.method === "draft" || this.#speculative?.method === "mtp";
    this.#draft = modelDrafts ? options.draft ?? null : null;
    if (options.draft && !this.#draft) options.draft.close();
    if (modelDrafts && !this.#draft) {
      throw new EngineError("engine_start_failed", `speculative method "${this.#speculative!.method}" needs its drafter loaded (Engine.load does it)`);
    }
    if (this.#speculative && runner.capacity.maxLogitRows < runner.capacity.maxSeqs * (1 + this.#speculative.numSpeculativeTokens)) {
      throw new EngineError("engine_start_failed", "speculative decoding needs maxLogitRows >= maxSeqs * (1 + numSpeculativeTokens)");
    }
    this.scheduler = new Scheduler({
      numBlocks: runner.cache.options.numBlocks,
      blockSize: runner.cache.options.blockSize,
      maxBatchTokens: this.#maxBatchTokens,
      maxSeqs: runner.capacity.maxSeqs,
      policy: options.policy ?? "fifo",
      // A cached prefix of a hybrid model would need the recurrent state at its end too.
      prefixCaching: runner.state === null,
      // n-gram drafts made on the GPU keep the multi-step pipeline (runner/ngram_drafter.ts);
      // hybrid models draft on the CPU (a rejection restores a state snapshot, below).
      gpuDrafts: this.#speculative !== null && runner.gpuDrafts,
      maxContext: runner.maxContext,
      recurrentState: runner.state !== null,
      disableSpeculationAt: this.#speculative?.disableByBatchSize,
    });
    if (runner.state) {
      console.error(
        `[engine] ${runner.spec.architecture}: prefix caching off (linear-attention layers keep a recurrent state that KV blocks cannot restore); ${runner.state.slots} state slots of ${runner.state.bytes / runner.state.slots} bytes`,
      );
    }
    if (this.#speculative) this.scheduler.specAcceptedPerPosition = new Array(this.#speculative.numSpeculativeTokens).fill(0);
    this.info = {
      vocabSize: runner.spec.vocabSize,
      maxContext: runner.maxContext,
      maxTopLogprobs: MAX_TOP_LOGPROBS,
      maxN: MAX_N,
      eosTokenIds: [...runner.spec.eosTokenIds],
      architecture: runner.spec.architecture,
      device: runner.gpu.description,
      kvBlocksTotal: runner.cache.options.numBlocks,
      blockSize: runner.cache.options.blockSize,
      maxSeqs: runner.capacity.maxSeqs,
      kernelFamily: runner.forward.family,
      kvDtype: runner.cache.dtype,
      linearWeights: linearWeightDTypes(runner.weights),
      hiddenSize: runner.spec.hiddenSize,
      pooling: options.pooling === undefined ? "last" : options.pooling,
      parameters: parameterCount(runner.spec),
      ...(runner.memory ? { memory: memoryInfo(runner.memory) } : {}),
    };
    this.#loop = this.#run();
  }

  /** Loads the model and starts the step loop. */
  static async load(options: EngineLoadOptions): Promise<Engine> {
    const maxSeqs = options.maxSeqs ?? 32;
    const speculative = options.speculative ? checkSpeculativeConfig(options.speculative) : undefined;
    const pooling = await resolvePooling(options.model, options.pooling);
    // A draft model with another tokenizer is refused before any weight is loaded.
    if (speculative?.method === "draft") await checkDraftTokenizer(options.model, speculative.model);
    // So is "mtp" on a checkpoint without a head (its tensor list is read, no weight).
    if (speculative?.method === "mtp") (await openMtpTensors(options.model)).close();
    const runner = await ModelRunner.load(options.model, {
      attn: options.attn,
      maxTokens: options.maxBatchTokens ?? 256,
      maxSeqs,
      // Each speculating sequence samples every row of its verification chunk.
      maxLogitRows: speculative ? maxSeqs * (1 + speculative.numSpeculativeTokens) : undefined,
      blockSize: options.blockSize,
      numBlocks: options.numBlocks,
      kvCacheBytes: options.kvCacheBytes,
      gpuMemoryBytes: options.gpuMemoryBytes,
      maxContext: options.maxContext,
      weightDType: options.weightDType,
      quantization: options.quantization,
      quantizedActivations: options.quantizedActivations,
      kernelFamily: options.kernelFamily,
      kvDtype: options.kvDtype,
      allowFallbackAdapter: options.allowFallbackAdapter,
      stepsPerSync: options.stepsPerSync,
      constrainedStepsPerSync: options.constrainedStepsPerSync,
      maxTopLogprobs: MAX_TOP_LOGPROBS,
      gpu: options.gpu,
      onProgress: options.onLoadProgress,
      speculative,
      // The MTP head drafts from the target's hidden rows.
      hiddenStore: speculative?.method === "mtp",
    });
    let draft: Drafter | null = null;
    try {
      if (speculative?.method === "draft") draft = await DraftModel.load(runner, speculative, options);
      if (speculative?.method === "mtp") draft = await MtpDrafter.load(runner, options.model, speculative.numSpeculativeTokens, options);
      return new Engine(runner, { ...options, pooling, draft });
    } catch (e) {
      draft?.close();
      runner.close();
      throw e;
    }
  }

  /**
   * Starts the step loop over an already loaded runner (which the engine then owns). Without
   * `model` (the checkpoint directory, for its tokenizer) requests with a grammar are refused.
   */
  static start(runner: ModelRunner, options: StartOptions = {}): Engine {
    return new Engine(runner, options);
  }

  /** Submits a validated request (see `api/validate.ts`); results go to `sink`. */
  submit(request: EngineRequest, sink: RequestSink): RequestHandle {
    if (this.#closing) throw new EngineError("engine_closed", "the engine is closing");
    if (this.#failure) throw new EngineError("engine_failed", `the engine has failed: ${this.#failure.message}`);
    const grammar = request.grammar;
    if (grammar && !this.#grammar) throw new EngineError("engine_failed", "this engine has no checkpoint directory to build grammars from");
    const now = performance.now();
    const stopTokenIds = new Set(request.stopTokenIds);
    const seqs: Sequence[] = [];
    for (let i = 0; i < request.n; i++) {
      const sampling = { ...request.sampling, seed: (request.sampling.seed + i) >>> 0 };
      const seq = new Sequence(this.#nextSeqId++, request.promptIds, { maxTokens: request.maxTokens, sampling, stopTokenIds }, now);
      // Siblings wait for the first one's prefill and then share its prompt blocks.
      if (i > 0) seq.gate = seqs[0];
      // A constrained sequence keeps it only where its matcher can roll back (#addConstrained).
      if (this.#speculative && request.speculative !== false && speculationAllowed(sampling)) {
        seq.speculation = new SpeculationState(this.#speculative);
      }
      seqs.push(seq);
      this.#members.set(seq, { sink, index: i });
      this.metrics.promptTokens += request.promptIds.length;
    }
    if (grammar) this.#addConstrained(seqs, grammar, !request.sampling.logprobs, request.grammarCompileMs, request.reasoning);
    else for (const seq of seqs) this.scheduler.add(seq);
    this.#wakeUp();
    return this.#handleOf(seqs);
  }

  /**
   * Submits a validated embedding request: one prefill-only sequence per input, in the same
   * batch as generation. Each input's pooled hidden state goes to `sink` when its last chunk
   * is read back.
   */
  submitEmbedding(request: EmbedRequest, sink: EmbeddingSink): RequestHandle {
    if (this.#closing) throw new EngineError("engine_closed", "the engine is closing");
    if (this.#failure) throw new EngineError("engine_failed", `the engine has failed: ${this.#failure.message}`);
    const now = performance.now();
    const params = { maxTokens: 0, sampling: { ...SAMPLING_DEFAULTS }, stopTokenIds: new Set<number>(), pooling: request.pooling };
    const seqs = request.inputs.map((ids, index) => {
      const seq = new Sequence(this.#nextSeqId++, ids, params, now);
      this.#embedders.set(seq, { sink, index });
      this.metrics.promptTokens += ids.length;
      this.scheduler.add(seq);
      return seq;
    });
    this.#wakeUp();
    return this.#handleOf(seqs);
  }

  /** The handle of a request's sequences: cancel one (by index) or all of them. */
  #handleOf(seqs: Sequence[]): RequestHandle {
    return {
      cancel: (index?: number) => {
        for (const [i, seq] of seqs.entries()) {
          if (index === undefined || index === i) this.scheduler.cancel(seq);
        }
        this.#wakeUp();
      },
    };
  }

  /**
   * Gives each sequence its own matcher of the (cached) compiled grammar, then queues them in
   * order. The grammar's opening forced text, if any, is delivered at once.
   */
  #addConstrained(
    seqs: Sequence[],
    spec: NonNullable<EngineRequest["grammar"]>,
    jumpForward: boolean,
    compileMs: number | undefined,
    reasoning: EngineRequest["reasoning"],
  ): void {
    for (const seq of seqs) this.#preparing.add(seq);
    (async () => {
      for (const seq of seqs) {
        const constraint = await this.#grammar!.constraint(spec, jumpForward, { compileMs, reasoning });
        if (!this.#preparing.delete(seq) || !this.#members.has(seq)) {
          constraint.dispose();
          continue;
        }
        if (seq.cancelled) {
          seq.status = "finished";
          seq.finishReason = "cancelled";
          constraint.dispose();
          this.#done(seq);
          continue;
        }
        seq.constraint = constraint;
        // Its drafts are walked through the grammar, which must roll back after the walk.
        if (!constraint.walkDraft) seq.speculation = null;
        const opening = this.scheduler.add(seq);
        if (opening) {
          // Known before any step ran: not a first token for TTFT.
          const member = this.#members.get(seq)!;
          this.metrics.delivered(opening.ids.length, performance.now());
          member.sink.tokens(member.index, opening.ids, seq.sampling.logprobs ? [] : undefined);
          if (opening.finishReason) this.#done(seq);
        }
      }
      this.#wakeUp();
    })().catch((e) => {
      const error = e instanceof Error ? e : new Error(String(e));
      for (const seq of seqs) {
        if (!this.#preparing.delete(seq)) continue;
        const member = this.#members.get(seq);
        this.#members.delete(seq);
        member?.sink.fail(member.index, error);
      }
    });
  }

  /** Current metrics. */
  stats(): EngineStats {
    const blocks = this.scheduler.blocks;
    const m = this.metrics;
    const now = performance.now();
    const bytes = this.runner.cache.bytes;
    // A hybrid model's recurrent-state slots count in the cache's bytes and usage too.
    const state = this.runner.state;
    const slotsUsed = state ? this.scheduler.slotsInUse : 0;
    // A slot's snapshot (speculation) is held with the slot.
    const stateBytes = (state?.bytes ?? 0) + this.#stateSnapshotBytes;
    // MTP: the hidden-row stores hold a row per KV slot, the target's indexed by its blocks,
    // the head's (with the head's KV layer) by the head's own blocks.
    const targetRows = this.runner.hiddenStore?.size ?? 0;
    const head = this.#draft instanceof MtpDrafter ? this.#draft : null;
    const headRows = head ? (head.runner.hiddenStore?.size ?? 0) + head.runner.cache.bytes : 0;
    const rowBytes = targetRows + headRows;
    const bytesUsed = blocks.usedCount * ((bytes + targetRows) / blocks.numBlocks) +
      (head ? head.blocks.usedCount * (headRows / head.blocks.numBlocks) : 0) +
      (state ? slotsUsed * (stateBytes / state.slots) : 0);
    return {
      kvBlocksUsed: blocks.usedCount,
      kvBlocksTotal: blocks.numBlocks,
      kvBlocksCached: blocks.cachedIdleCount,
      kvBytesTotal: bytes + stateBytes + rowBytes,
      kvBytesUsed: bytesUsed,
      kvUsage: bytesUsed / (bytes + stateBytes + rowBytes),
      stateSlotsUsed: slotsUsed,
      stateSlotsTotal: state?.slots ?? 0,
      // Draining sequences (every token scheduled, some not read back) still count as running.
      running: this.scheduler.running.length + this.scheduler.draining.size,
      waiting: this.scheduler.waiting.length,
      steps: m.steps,
      syncs: m.syncs,
      stepsPerSync: m.syncs ? m.decodeSteps / m.syncs : 0,
      prefillTokens: m.prefillTokens,
      decodeTokens: m.decodeTokens,
      decodePrefillRatio: m.prefillTokens ? m.decodeTokens / m.prefillTokens : 0,
      promptTokens: m.promptTokens,
      generationTokens: m.generationTokens,
      preemptions: this.scheduler.preemptions,
      specDrafts: this.scheduler.specDrafts,
      specDraftTokens: this.scheduler.specDraftTokens,
      specAcceptedTokens: this.scheduler.specAcceptedTokens,
      specAcceptedPerPosition: [...this.scheduler.specAcceptedPerPosition],
      specDraftKvBlocksUsed: this.#draft?.blocks.usedCount ?? 0,
      specDraftKvBlocksTotal: this.#draft?.blocks.numBlocks ?? 0,
      specReplayTokens: this.scheduler.specReplayTokens,
      prefixCacheQueries: blocks.counters.queriedTokens,
      prefixCacheHits: blocks.counters.hitTokens,
      requestsFinished: { ...m.finished },
      embeddingsFinished: m.embeddingsFinished,
      batchFill: m.batchFill.snapshot(),
      stepTokens: m.stepTokens.snapshot(),
      ttft: m.ttft.snapshot(),
      interTokenLatency: m.itl.snapshot(),
      e2eLatency: m.e2e.snapshot(),
      queueTime: m.queueTime.snapshot(),
      tokensPerSecond: m.tokensPerSecond(now),
      lastStepAt: m.lastStepAt,
      at: now,
      error: this.#failure ? `${this.#failure.name}: ${this.#failure.message}` : null,
      uptimeSeconds: m.uptimeSeconds,
    };
  }

  /** Whether the loop has died on an error. */
  get failure(): Error | null {
    return this.#failure;
  }

  /** Cancels everything, stops the loop and frees the GPU. */
  async close(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      for (const seq of [...this.#members.keys(), ...this.#embedders.keys()]) this.scheduler.cancel(seq);
      // Sequences still waiting for their matcher never reach the scheduler: end them here.
      for (const seq of [...this.#preparing]) {
        this.#preparing.delete(seq);
        seq.status = "finished";
        seq.finishReason = "cancelled";
        this.#done(seq);
      }
      this.#wakeUp();
    }
    await this.#loop;
    this.#grammar?.close();
    this.#draft?.close();
    this.runner.close();
  }

  /** One step of the loop; false when there was nothing to do (idle). */
  async step(): Promise<boolean> {
    // A draft model drafts before the plan that verifies its tokens.
    if (this.#draft) {
      // Not for a step the batch-size limit keeps from verifying.
      this.scheduler.limitSpeculation();
      await this.#draft.propose(this.scheduler.running);
    }
    const plan = this.scheduler.schedule();
    for (const seq of plan.preempted) this.#draft?.release(seq);
    for (const seq of plan.finished) this.#done(seq);
    if (plan.chunks.length) this.#record(plan);
    const out = await this.runner.step(plan);
    if (out) {
      this.metrics.syncs = this.runner.syncs;
      this.#deliver(this.scheduler.postprocess(out.tokens));
      this.#deliverEmbeddings(this.scheduler.postprocessPooled(out.pooled));
      this.onProgress?.();
    }
    return out !== null || plan.chunks.length > 0 || plan.finished.length > 0;
  }

  async #run(): Promise<void> {
    try {
      while (true) {
        this.#kicked = false;
        if (await this.step()) continue;
        this.onProgress?.();
        if (this.#closing && !this.scheduler.hasWork) return;
        // Work may have arrived while the step awaited the runner: only sleep when none did.
        if (this.#kicked) continue;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = null;
      }
    } catch (e) {
      this.#failure = e instanceof Error ? e : new Error(String(e));
      console.error("engine step loop failed:", this.#failure);
      for (const [seq, member] of [...this.#members]) {
        this.scheduler.finish(seq, "cancelled");
        this.#members.delete(seq);
        member.sink.fail(member.index, this.#failure);
      }
      for (const [seq, embedder] of [...this.#embedders]) {
        this.scheduler.finish(seq, "cancelled");
        this.#embedders.delete(seq);
        embedder.sink.fail(embedder.index, this.#failure);
      }
      this.onProgress?.();
    }
  }

  #wakeUp(): void {
    this.#kicked = true;
    this.#wake?.();
  }

  /** Metrics of a submitted step. */
  #record(plan: StepPlan): void {
    const now = performance.now();
    for (const seq of plan.admitted) this.metrics.queueTime.observe((now - seq.arrival) / 1000);
    const tokens = plan.prefillTokens + plan.decodeTokens;
    this.metrics.step(tokens, this.#maxBatchTokens, plan.prefillTokens, plan.decodeTokens, now);
  }

  /** Routes a readback's tokens and finishes to the requests. */
  #deliver(outputs: SequenceOutput[]): void {
    const now = performance.now();
    // Counted first: the stats a finishing request carries include its own tokens.
    this.metrics.delivered(outputs.reduce((n, o) => n + o.ids.length, 0), now);
    for (const o of outputs) {
      const seq = o.seq;
      const member = this.#members.get(seq)!;
      if (seq.firstTokenAt === 0) {
        seq.firstTokenAt = now;
        this.metrics.ttft.observe((now - seq.arrival) / 1000);
        for (let i = 1; i < o.ids.length; i++) this.metrics.itl.observe(0);
      } else {
        const gap = (now - seq.lastTokenAt) / 1000 / o.ids.length;
        for (let i = 0; i < o.ids.length; i++) this.metrics.itl.observe(gap);
      }
      seq.lastTokenAt = now;
      member.sink.tokens(member.index, o.ids, seq.sampling.logprobs ? o.logprobs : undefined);
      if (o.finishReason) this.#done(seq);
    }
  }

  /** Hands finished embeddings to their requests. */
  #deliverEmbeddings(outputs: EmbeddingOutput[]): void {
    const now = performance.now();
    for (const { seq, embedding } of outputs) {
      const embedder = this.#embedders.get(seq)!;
      this.#embedders.delete(seq);
      this.metrics.embeddingsFinished++;
      this.metrics.e2e.observe((now - seq.arrival) / 1000);
      embedder.sink.embedding(embedder.index, embedding, seq.promptIds.length);
    }
  }

  /** Reports a sequence the scheduler has ended. */
  #done(seq: Sequence): void {
    this.#draft?.release(seq);
    const embedder = this.#embedders.get(seq);
    if (embedder) {
      // Only cancellation ends an embedding here (a finished one is delivered with its vector).
      this.#embedders.delete(seq);
      embedder.sink.embedding(embedder.index, null, seq.promptIds.length);
      return;
    }
    const member = this.#members.get(seq);
    if (!member) return;
    const reason = seq.finishReason!;
    this.#members.delete(seq);
    this.metrics.finished[reason]++;
    this.metrics.e2e.observe((performance.now() - seq.arrival) / 1000);
    member.sink.done(member.index, reason, seq.promptIds.length, seq.cachedTokens);
  }
}
