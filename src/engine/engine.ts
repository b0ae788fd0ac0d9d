/**
 * The engine: a model runner, the scheduler and the GPU-resident step loop.
 *
 * Each step is scheduled on the CPU, encoded into one command buffer and submitted without
 * waiting. Sampling happens on the GPU; a decode token that was sampled by an earlier step
 * still in flight is fed by reference to that step's output record, so the loop never waits
 * for a token. Output records are copied into a staging buffer and read back once per
 * `stepsPerSync` steps (each GPU->CPU wait costs ~11 ms in Deno); stop conditions, joins and
 * leaves are applied at those sync points, and tokens generated past a stop are dropped.
 * @module
 */
import { ModelRunner } from "../model/model_runner.ts";
import { buildStepBatch, type SequenceChunk } from "../model/step_batch.ts";
import type { AttentionImpl } from "../model/forward.ts";
import type { RowSampling } from "./gpu_sampler.ts";
import { Scheduler, type SchedulerPolicy, type StepPlan } from "./scheduler.ts";
import { type FinishReason, Sequence, type SequenceParams } from "./sequence.ts";
import { EngineMetrics, type EngineStats } from "./metrics.ts";
import type { EngineRequest } from "./request.ts";
import type { EngineInfo, TokenLogprob } from "./protocol.ts";

/** Options of {@link Engine.load} (and `createEngine`). */
export interface EngineOptions {
  /** A Hugging Face checkpoint directory. */
  model: string;
  /** Token budget of one step (default 256). */
  maxBatchTokens?: number;
  /** KV blocks; sized from `kvCacheBytes` when absent. */
  numBlocks?: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** KV-cache memory budget when `numBlocks` is absent (default 256 MiB). */
  kvCacheBytes?: number;
  /** Attention implementation (default "paged"). */
  attn?: AttentionImpl;
  /** Scheduling policy (default "fifo"). */
  policy?: SchedulerPolicy;
  /** Most sequences running at once (default 32). */
  maxSeqs?: number;
  /** Steps between GPU->CPU readbacks (default 8). */
  stepsPerSync?: number;
  /** Longest sequence in tokens (default: the model's max_position_embeddings). */
  maxContext?: number;
  /** Matrix storage on the GPU. */
  weightDType?: "auto" | "f32" | "f16";
}

/** Where a request's results go. */
export interface RequestSink {
  tokens(index: number, ids: number[], logprobs: TokenLogprob[] | undefined): void;
  done(index: number, finishReason: FinishReason, promptTokens: number, cachedTokens: number): void;
  /** The engine failed; the request ends with this error (called once per completion). */
  fail(index: number, error: Error): void;
}

/** A submitted request. */
export interface RequestHandle {
  /** Cancels one completion, or all of them. */
  cancel(index?: number): void;
}

const MAX_TOP_LOGPROBS = 20;
const MAX_N = 16;

interface StepRecord {
  rows: { seq: Sequence; outputIndex: number }[];
  /** First record of this step in the staging buffer. */
  stagingRecord: number;
}

interface ReadBatch {
  staging: GPUBuffer;
  steps: StepRecord[];
  records: number;
  mapped: Promise<void> | null;
}

interface Member {
  seq: Sequence;
  sink: RequestSink;
  index: number;
}

/** The continuous-batching engine over one model. */
export class Engine {
  readonly runner: ModelRunner;
  readonly scheduler: Scheduler;
  readonly metrics = new EngineMetrics();
  readonly info: EngineInfo;
  #options: Required<Pick<EngineOptions, "maxBatchTokens" | "stepsPerSync">>;
  #members = new Map<Sequence, Member>();
  #nextSeqId = 0;
  #stepIndex = 0;
  #ringSteps: number;
  #stagingPool: GPUBuffer[] = [];
  #current: ReadBatch;
  #inflight: ReadBatch[] = [];
  #wake: (() => void) | null = null;
  #closing = false;
  #loop: Promise<void>;
  #failure: Error | null = null;
  /** Called after every readback and when idle (the Worker posts stats from here). */
  onProgress: (() => void) | null = null;

  private constructor(runner: ModelRunner, options: EngineOptions) {
    this.runner = runner;
    const maxBatchTokens = runner.capacity.maxTokens;
    this.#options = { maxBatchTokens, stepsPerSync: options.stepsPerSync ?? 8 };
    this.scheduler = new Scheduler(runner.blocks, {
      maxBatchTokens,
      maxSeqs: runner.capacity.maxSeqs,
      policy: options.policy ?? "fifo",
      maxContext: runner.maxContext,
    });
    this.#ringSteps = runner.recordRingSteps;
    if (this.#ringSteps < 4 * this.#options.stepsPerSync + 2) {
      throw new RangeError("record ring too small for stepsPerSync");
    }
    this.info = {
      vocabSize: runner.spec.vocabSize,
      maxContext: runner.maxContext,
      maxTopLogprobs: MAX_TOP_LOGPROBS,
      maxN: MAX_N,
      eosTokenIds: [...runner.spec.eosTokenIds],
      architecture: runner.spec.architecture,
      device: runner.gpu.description,
      kvBlocksTotal: runner.blocks.numBlocks,
      blockSize: runner.cache.options.blockSize,
      maxSeqs: runner.capacity.maxSeqs,
    };
    this.#current = this.#newBatch();
    this.#loop = this.#run();
  }

  /** Loads the model and starts the step loop. */
  static async load(options: EngineOptions, onLoadProgress?: (done: number, total: number) => void): Promise<Engine> {
    const maxSeqs = options.maxSeqs ?? 32;
    const stepsPerSync = options.stepsPerSync ?? 8;
    const runner = await ModelRunner.load(options.model, {
      attn: options.attn,
      maxTokens: options.maxBatchTokens ?? 256,
      maxSeqs,
      maxLogitRows: maxSeqs,
      blockSize: options.blockSize,
      numBlocks: options.numBlocks,
      kvCacheBytes: options.kvCacheBytes,
      maxContext: options.maxContext,
      weightDType: options.weightDType,
      metaSlots: 2 * stepsPerSync + 2,
      recordRingSteps: 4 * stepsPerSync + 4,
      maxTopLogprobs: MAX_TOP_LOGPROBS,
      onProgress: onLoadProgress,
    });
    return new Engine(runner, { ...options, stepsPerSync });
  }

  /** Submits a validated request; results go to `sink`. */
  submit(request: EngineRequest, sink: RequestSink): RequestHandle {
    if (this.#closing) throw new Error("engine is closing");
    if (this.#failure) throw this.#failure;
    this.scheduler.checkFits(request.promptIds.length, request.maxTokens);
    const stop = new Set(request.stopTokenIds);
    if (!request.ignoreEos) for (const id of this.runner.spec.eosTokenIds) stop.add(id);
    const now = performance.now();
    const seqs: Sequence[] = [];
    const baseSeed = request.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
    for (let i = 0; i < request.n; i++) {
      const params: SequenceParams = {
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        topK: request.topK,
        topP: request.topP,
        minP: request.minP,
        repetitionPenalty: request.repetitionPenalty,
        presencePenalty: request.presencePenalty,
        frequencyPenalty: request.frequencyPenalty,
        seed: (baseSeed + i) >>> 0,
        stopTokenIds: stop,
        logprobs: request.logprobs,
        topLogprobs: request.topLogprobs,
      };
      const seq = new Sequence(this.#nextSeqId++, request.promptIds, params, now);
      // Siblings wait for the first one's prefill and then share its prompt blocks.
      if (i > 0) seq.gate = seqs[0];
      seqs.push(seq);
      this.#members.set(seq, { seq, sink, index: i });
      this.scheduler.add(seq);
      this.metrics.promptTokens += request.promptIds.length;
    }
    this.#wakeUp();
    return {
      cancel: (index?: number) => {
        for (const [i, seq] of seqs.entries()) {
          if (index === undefined || index === i) seq.cancelled = true;
        }
        this.#wakeUp();
      },
    };
  }

  /** Current metrics. */
  stats(): EngineStats {
    const blocks = this.runner.blocks;
    const m = this.metrics;
    const now = performance.now();
    const blockBytes = this.runner.cache.bytes / blocks.numBlocks;
    return {
      kvBlocksUsed: blocks.usedCount,
      kvBlocksTotal: blocks.numBlocks,
      kvBlocksCached: blocks.cachedIdleCount,
      kvBytesTotal: this.runner.cache.bytes,
      kvBytesUsed: blocks.usedCount * blockBytes,
      kvUsage: blocks.usedCount / blocks.numBlocks,
      running: this.scheduler.running.length,
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
      prefixCacheQueries: blocks.counters.queriedTokens,
      prefixCacheHits: blocks.counters.hitTokens,
      requestsFinished: { ...m.finished },
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
      for (const seq of this.#members.keys()) seq.cancelled = true;
      this.#wakeUp();
    }
    await this.#loop;
    for (const b of [...this.#stagingPool, this.#current.staging, ...this.#inflight.map((i) => i.staging)]) b.destroy();
    this.runner.close();
  }

  async #run(): Promise<void> {
    try {
      while (true) {
        this.#reapCancelled();
        const plan = this.scheduler.hasWork ? this.scheduler.schedule() : null;
        if (plan && plan.chunks.length > 0) {
          this.#submit(plan);
          if (this.#current.steps.length >= this.#options.stepsPerSync) this.#flush();
          if (this.#inflight.length >= 2) await this.#drainOldest();
          continue;
        }
        // Nothing to schedule now: read back what is in flight, or sleep until work comes.
        if (this.#current.steps.length > 0) this.#flush();
        if (this.#inflight.length > 0) {
          await this.#drainOldest();
          continue;
        }
        this.onProgress?.();
        if (this.#closing && !this.scheduler.hasWork) return;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = null;
      }
    } catch (e) {
      this.#failure = e instanceof Error ? e : new Error(String(e));
      console.error("engine step loop failed:", this.#failure);
      for (const member of [...this.#members.values()]) {
        this.scheduler.finish(member.seq);
        this.#members.delete(member.seq);
        member.sink.fail(member.index, this.#failure);
      }
      this.onProgress?.();
    }
  }

  #wakeUp(): void {
    this.#wake?.();
  }

  #reapCancelled(): void {
    for (const member of this.#members.values()) {
      if (member.seq.cancelled && member.seq.status !== "finished") this.#finish(member, "cancelled");
    }
  }

  #submit(plan: StepPlan): void {
    const runner = this.runner;
    const device = runner.gpu.device;
    const now = performance.now();
    const bs = runner.cache.options.blockSize;
    const encoder = device.createCommandEncoder();
    for (const seq of plan.admitted) {
      this.metrics.queueTime.observe((now - seq.arrival) / 1000);
      runner.sampler.admit(seq.seqSlot, seq.promptIds, seq.outputIds);
    }
    const ringSlot = this.#stepIndex++ % this.#ringSteps;
    const recordBase = ringSlot * runner.capacity.maxLogitRows;
    const chunks: SequenceChunk[] = [];
    const rows: RowSampling[] = [];
    const step: StepRecord = { rows: [], stagingRecord: this.#current.records };
    for (const c of plan.chunks) {
      const seq = c.seq;
      chunks.push({
        tokens: seq.tokensFor(c.start, c.start + c.count),
        start: c.start,
        blockTable: seq.blockTable,
        logits: c.sample ? "last" : "none",
      });
      if (!c.sample) continue;
      const p = seq.params;
      rows.push({
        temperature: p.temperature,
        topK: p.topK,
        topP: p.topP,
        minP: p.minP,
        repetitionPenalty: p.repetitionPenalty,
        presencePenalty: p.presencePenalty,
        frequencyPenalty: p.frequencyPenalty,
        seed: p.seed,
        outputIndex: seq.generated,
        seqSlot: seq.seqSlot,
        topLogprobs: p.topLogprobs,
        logprobs: p.logprobs,
      });
      step.rows.push({ seq, outputIndex: seq.generated });
      seq.pending++;
      seq.lastRecord = recordBase + rows.length - 1;
    }
    const batch = buildStepBatch(chunks, bs);
    const offset = runner.writeStep(batch, { rows, recordBase });
    let maxContext = 0;
    for (const c of batch.contextLens) maxContext = Math.max(maxContext, c);
    const pass = encoder.beginComputePass();
    runner.forward.encode(pass, offset, { tokens: batch.tokenIds.length, logitRows: rows.length, maxContext });
    if (rows.length) runner.sampler.encode(pass, offset, rows.length);
    pass.end();
    if (rows.length) {
      const recordBytes = runner.sampler.recordWords * 4;
      encoder.copyBufferToBuffer(
        runner.sampler.records,
        recordBase * recordBytes,
        this.#current.staging,
        this.#current.records * recordBytes,
        rows.length * recordBytes,
      );
      this.#current.records += rows.length;
    }
    device.queue.submit([encoder.finish()]);
    this.#current.steps.push(step);
    for (const c of plan.chunks) this.scheduler.commitBlocks(c.seq);
    this.metrics.step(batch.tokenIds.length, this.#options.maxBatchTokens, plan.prefillTokens, plan.decodeTokens, now);
  }

  #newBatch(): ReadBatch {
    const runner = this.runner;
    const staging = this.#stagingPool.pop() ?? runner.gpu.device.createBuffer({
      label: "sample_readback",
      size: this.#options.stepsPerSync * runner.capacity.maxLogitRows * runner.sampler.recordWords * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    return { staging, steps: [], records: 0, mapped: null };
  }

  /** Starts the readback of the current batch and opens a new one. */
  #flush(): void {
    const batch = this.#current;
    const bytes = batch.records * this.runner.sampler.recordWords * 4;
    batch.mapped = bytes > 0
      ? batch.staging.mapAsync(GPUMapMode.READ, 0, bytes)
      : this.runner.gpu.device.queue.onSubmittedWorkDone();
    this.#inflight.push(batch);
    this.#current = this.#newBatch();
  }

  /** Waits for the oldest readback and routes its tokens. */
  async #drainOldest(): Promise<void> {
    const batch = this.#inflight.shift()!;
    await batch.mapped;
    this.metrics.syncs++;
    const recordWords = this.runner.sampler.recordWords;
    let words = new Uint32Array(0);
    if (batch.records > 0) {
      words = new Uint32Array(batch.staging.getMappedRange(0, batch.records * recordWords * 4).slice(0));
      batch.staging.unmap();
    }
    this.#stagingPool.push(batch.staging);
    const records = this.runner.sampler.view(words);
    const now = performance.now();
    const out = new Map<Sequence, { ids: number[]; logprobs: TokenLogprob[] }>();
    let delivered = 0;
    for (const step of batch.steps) {
      step.rows.forEach(({ seq, outputIndex }, r) => {
        seq.pending--;
        if (seq.status === "finished" || seq.cancelled) return;
        if (outputIndex !== seq.outputIds.length) throw new Error(`sequence ${seq.id}: output ${outputIndex} out of order`);
        const rec = records.at(step.stagingRecord + r, seq.params.topLogprobs);
        seq.outputIds.push(rec.id);
        let o = out.get(seq);
        if (!o) out.set(seq, o = { ids: [], logprobs: [] });
        o.ids.push(rec.id);
        if (seq.params.logprobs) {
          o.logprobs.push(seq.params.topLogprobs ? { id: rec.id, logprob: rec.logprob, top: rec.top } : { id: rec.id, logprob: rec.logprob });
        }
        delivered++;
        if (seq.params.stopTokenIds.has(rec.id)) seq.finishReason = "stop";
        else if (seq.outputIds.length >= seq.params.maxTokens) seq.finishReason = "length";
        if (seq.finishReason) this.scheduler.finish(seq);
        else this.scheduler.commitBlocks(seq);
      });
    }
    this.metrics.delivered(delivered, now);
    for (const [seq, o] of out) {
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
      member.sink.tokens(member.index, o.ids, seq.params.logprobs ? o.logprobs : undefined);
      if (seq.status === "finished") this.#finish(member, seq.finishReason!);
    }
    this.onProgress?.();
  }

  #finish(member: Member, reason: FinishReason): void {
    const seq = member.seq;
    this.scheduler.finish(seq);
    seq.finishReason = reason;
    this.#members.delete(seq);
    this.metrics.finished[reason]++;
    this.metrics.e2e.observe((performance.now() - seq.arrival) / 1000);
    member.sink.done(member.index, reason, seq.promptIds.length, seq.cachedTokens);
  }
}
