/**
 * A loaded model that runs scheduled steps: weights, KV cache, the recorded forward pass,
 * its metadata slots, the GPU sampler and the readback ring.
 *
 * {@link ModelRunner.step} writes a step's flat metadata with one `writeBuffer`, encodes the
 * forward pass and the sampler into one compute pass, submits without waiting, and copies the
 * step's output records into the current readback batch. A decode token sampled by a step
 * still in flight is fed by reference to its output record, so the loop never waits for a
 * token; records come back every `stepsPerSync` steps. Embedding chunks add pooled
 * hidden-state rows (only those rows: one per chunk, `hidden` floats each), read back on
 * their own right after their step. With n-gram speculation, verification chunks get their
 * positions, tokens and output indices on the GPU and their accepted counts come back with
 * the step's records (`ngram_drafter.ts`), so they keep the pipeline too.
 * @module
 */
import { type AttentionImpl, type KernelFamily, type KvDtype, LlmError, MtpHeadMissingError, type Quantization, type SpeculativeConfig } from "../types/api.ts";
import { createGpu, type Gpu } from "../gpu/device.ts";
import { type KvBudget, kvCacheBudget, stepScratchBytes } from "./kv_budget.ts";
import { KvCache } from "../gpu/kv_cache.ts";
import { RecurrentState } from "../gpu/recurrent_state.ts";
import { StateSnapshots } from "../gpu/state_snapshots.ts";
import { type PipelineCache, sharedPipelineCache } from "../kernels/registry.ts";
import { KERNEL_FILES } from "../kernels/descriptors.ts";
import { QUANT_KERNEL_FILES } from "../kernels/quant_matmul.ts";
import { MOE_KERNEL_FILES } from "../kernels/moe_descriptors.ts";
import { SPEC_KERNEL_FILES } from "../kernels/spec_descriptors.ts";
import { kernelFamilyFor } from "../kernels/family.ts";
import { RECORD_REF } from "../kernels/layout.ts";
import { attentionLayers, type ModelSpec } from "../model/config.ts";
import { openModel } from "../model/model_source.ts";
import { mtpHeadBytes, mtpSpec, openMtpTensors } from "../model/mtp_source.ts";
import { quantizeSource } from "../model/quant/quantized_source.ts";
import { type ModelWeights, uploadWeights } from "../model/weights.ts";
import type { PooledRow, SampledRow, StepPlan } from "../scheduler/scheduler.ts";
import type { Sequence } from "../scheduler/sequence.ts";
import { type DeltaRuleForm, ForwardPass } from "./forward.ts";
import { GpuSampler } from "./sampler.ts";
import { type ReadBatch, ReadbackRing, type RecordOwner, RowReadback } from "./readback.ts";
import { TokenMaskPass } from "./token_mask.ts";
import { type DraftRequest, GpuNgramDrafter } from "./ngram_drafter.ts";
import { type PatchRequest, VerifyPatch } from "./verify_patch.ts";
import {
  buildStepBatch,
  metaSlotWords,
  shapeOf,
  packStepMeta,
  type RowSampling,
  type SequenceChunk,
  type StepBatch,
  type StepCapacity,
  type StepSampling,
} from "./step_meta.ts";

/** Options for {@link ModelRunner.load}. */
export interface ModelRunnerOptions {
  /** Attention implementation: the fast paged kernel or the eager reference. */
  attn?: AttentionImpl;
  /** Kernel family (default: by adapter, see `kernels/family.ts`). */
  kernelFamily?: KernelFamily;
  /** Hybrid models: how prefill chunks run the delta rule (default: the chunkwise form, see `forward.ts`). */
  deltaRuleForm?: DeltaRuleForm;
  /** KV-cache element type (default f16 where the adapter has `shader-f16` and head_dim % 8 == 0). */
  kvDtype?: KvDtype;
  /** Use an OpenGL or software fallback adapter (see `createGpu`); ignored when `gpu` is given. */
  allowFallbackAdapter?: boolean;
  /** Keys per attention split (default: the family's; tests use small ones to exercise the combine). */
  attentionSplit?: number;
  /** Most tokens in one step (the batch token budget). */
  maxTokens?: number;
  /** Most sequences in one step (and rows of the sampler's per-sequence tables). */
  maxSeqs?: number;
  /** Most rows of logits one step computes (defaults to maxSeqs). */
  maxLogitRows?: number;
  /** Tokens per KV block. */
  blockSize?: number;
  /** KV blocks in the pool; sized from `kvCacheBytes` when absent. */
  numBlocks?: number;
  /** Memory budget for the KV cache when `numBlocks` is absent (default 256 MiB; see kv_budget.ts). */
  kvCacheBytes?: number;
  /**
   * Memory the engine may use in all: the KV cache gets what the weights (all experts) and
   * the step's buffers leave (when `numBlocks` is absent; see kv_budget.ts).
   */
  gpuMemoryBytes?: number;
  /** Longest sequence, in tokens (defaults to the model's max_position_embeddings). */
  maxContext?: number;
  /** Matrix storage on the GPU. */
  weightDType?: "auto" | "f32" | "f16";
  /** Load-time quantization of the decoder's linear weights (default "none"). */
  quantization?: Quantization;
  /** Quantized weights: the fast path on Q8-quantized activations (default false: exact). */
  quantizedActivations?: boolean;
  /** Steps between readbacks (default 8). */
  stepsPerSync?: number;
  /**
   * Steps between readbacks while a constrained sequence waits for its token (default 2, at
   * most `stepsPerSync`): its rows come back on their own, but the engine only takes them when
   * it passes by a readback, so shorter batches while one waits get it its tokens sooner.
   */
  constrainedStepsPerSync?: number;
  /** Most logprob alternatives a row may ask for. */
  maxTopLogprobs?: number;
  /**
   * n-gram speculation with drafts made on the GPU: chunks with `gpuDraft` verify the slot's
   * GPU draft without waiting for earlier steps (see `ngram_drafter.ts`).
   */
  speculative?: SpeculativeConfig;
  /**
   * MTP speculation: keep every computed row's final hidden state at its KV slot
   * ({@link ModelRunner.hiddenStore}) for the MTP head to draft from.
   */
  hiddenStore?: boolean;
  /** An existing device to use. */
  gpu?: Gpu;
  /** Weight upload progress. */
  onProgress?: (done: number, total: number) => void;
}

/** What a readback brought back: sampled tokens and embeddings' pooled rows, in step order. */
export interface StepOutput {
  tokens: SampledRow[];
  pooled: PooledRow[];
}

/** Who a pooled row belongs to. */
interface PooledOwner {
  seq: Sequence;
  final: boolean;
}

/** Where the runner's memory went (engine info and the startup log). */
export interface RunnerMemory {
  /** Weights as uploaded, every expert included. */
  weightBytes: number;
  /** Of those, the experts' (all E of every sparse layer). */
  expertBytes: number;
  kvCacheBytes: number;
  /** The budget the cache was sized from (null when `numBlocks` was given). */
  kvBudget: KvBudget | null;
  gpuMemoryBytes?: number;
}

/** A model on the GPU that runs steps. */
export class ModelRunner {
  /** Where the memory went (set once loaded). */
  memory: RunnerMemory | null = null;
  readonly gpu: Gpu;
  readonly spec: ModelSpec;
  readonly weights: ModelWeights;
  readonly cache: KvCache;
  /** Hybrid models' recurrent state (one slot per running sequence), else null. */
  readonly state: RecurrentState | null;
  /** Speculative decoding on a hybrid model: the state snapshots taken before verifications. */
  #snapshots: StateSnapshots | null = null;
  readonly forward: ForwardPass;
  readonly capacity: StepCapacity;
  readonly pipelines: PipelineCache;
  /** Samples every logit row on the GPU into a ring of output records. */
  readonly sampler: GpuSampler;
  /** Applies constrained rows' token bitmasks to their logits before sampling. */
  readonly masks: TokenMaskPass;
  #meta: GPUBuffer;
  #slotStride: number;
  #slots: number;
  #nextSlot = 0;
  #ringSteps: number;
  #stepIndex = 0;
  #readback: ReadbackRing<Sequence>;
  /** Records of constrained rows, read back right after their step. */
  #rowReadback: RowReadback<Sequence>;
  /** Embedding chunks' pooled hidden states, read back right after their step. */
  #pooledReadback: RowReadback<PooledOwner>;
  #constrainedSync: number;
  #syncs = 0;
  /** The output record holding each sequence's newest sampled token. */
  #lastRecord = new WeakMap<Sequence, number>();
  /** n-gram speculation: records of tokens sampled by plain steps and not yet read back. */
  #sampledRecords = new WeakMap<Sequence, { position: number; record: number }[]>();
  #logitsRead: GPUBuffer | null = null;
  /** n-gram speculation on the GPU (with `speculative`), else null. */
  #drafter: GpuNgramDrafter | null = null;
  #patch: VerifyPatch | null = null;
  /**
   * MTP speculation: each computed row's final hidden state at its KV slot, [KV slots,
   * hidden] f32 (the target's, with `hiddenStore`; an MTP head's own output rows), else null.
   */
  readonly hiddenStore: GPUBuffer | null;
  /**
   * An MTP head's runner: where each scheduled token's input hidden row is (a target KV slot,
   * or its own slot with the top bit set), set by its drafter.
   */
  hiddenSource: ((seq: Sequence, position: number) => number) | null = null;

  private constructor(init: {
    gpu: Gpu;
    spec: ModelSpec;
    weights: ModelWeights;
    cache: KvCache;
    state: RecurrentState | null;
    capacity: StepCapacity;
    pipelines: PipelineCache;
    attn: AttentionImpl;
    family: KernelFamily;
    attentionSplit?: number;
    deltaRuleForm?: DeltaRuleForm;
    quantizedActivations?: boolean;
    stepsPerSync: number;
    constrainedStepsPerSync: number;
    maxTopLogprobs: number;
    speculative?: SpeculativeConfig;
    maxContext: number;
    hiddenStore?: GPUBuffer;
    mtpInput?: { targetHidden: GPUBuffer };
  }) {
    const device = init.gpu.device;
    this.hiddenStore = init.hiddenStore ?? null;
    this.gpu = init.gpu;
    this.spec = init.spec;
    this.weights = init.weights;
    this.cache = init.cache;
    this.state = init.state;
    this.capacity = init.capacity;
    this.pipelines = init.pipelines;
    // Up to two readback batches of stepsPerSync steps in flight, plus the one filling: each
    // needs its own metadata slot (writeBuffer lands before any later submit) and its
    // records must stay in the ring until read back and fed to the next step.
    const sync = init.stepsPerSync;
    this.#constrainedSync = Math.max(1, Math.min(sync, init.constrainedStepsPerSync));
    this.#slots = 2 * sync + 2;
    this.#ringSteps = 4 * sync + 4;
    const slotBytes = metaSlotWords(init.capacity) * 4;
    const align = device.limits.minStorageBufferOffsetAlignment;
    this.#slotStride = Math.ceil(slotBytes / align) * align;
    this.#meta = device.createBuffer({
      label: "step_meta",
      size: this.#slotStride * this.#slots,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    const rows = init.capacity.maxLogitRows;
    this.sampler = new GpuSampler(device, init.pipelines, {
      vocab: init.spec.vocabSize,
      maxSeqs: init.capacity.maxSeqs,
      maxTopLogprobs: init.maxTopLogprobs,
      outRecords: this.#ringSteps * rows,
    });
    this.forward = new ForwardPass(device, init.pipelines, init.spec, init.weights, init.cache, this.#meta, {
      attn: init.attn,
      family: init.family,
      splitLen: init.attentionSplit,
      capacity: init.capacity,
      metaSlotBytes: slotBytes,
      maxBindingBytes: init.gpu.limits.maxStorageBufferBindingSize,
      maxWorkgroupBytes: init.gpu.limits.maxComputeWorkgroupStorageSize,
      tokenRecords: { buffer: this.sampler.records, recordWords: this.sampler.recordWords },
      quantizedActivations: init.quantizedActivations,
      packed4x8: init.gpu.hasPacked4x8,
      state: init.state ?? undefined,
      deltaRuleForm: init.deltaRuleForm,
      hiddenStore: init.hiddenStore,
      mtpInput: init.mtpInput,
    });
    this.sampler.bind(this.#meta, slotBytes, this.forward.logits);
    this.masks = new TokenMaskPass(device, init.pipelines, { vocab: init.spec.vocabSize, maxRows: rows });
    this.masks.bind(this.#meta, slotBytes, this.forward.logits);
    const spec = init.speculative;
    // Hybrid models do not speculate (their recurrent state cannot roll back).
    if (spec?.method === "ngram" && !init.state) {
      this.#drafter = new GpuNgramDrafter(device, init.pipelines, {
        family: init.family,
        maxSeqs: init.capacity.maxSeqs,
        // Every position a block table holds (one-row steps may run there, see the scheduler).
        maxContext: init.capacity.maxBlocksPerSeq * init.cache.options.blockSize,
        maxDraft: spec.numSpeculativeTokens,
        promptLookupMax: spec.promptLookupMax ?? 4,
        promptLookupMin: spec.promptLookupMin ?? 2,
        recordWords: this.sampler.recordWords,
      });
      this.#drafter.bind(this.sampler.records);
      this.#patch = new VerifyPatch(device, init.pipelines, {
        drafter: this.#drafter,
        blockSize: init.cache.options.blockSize,
        meta: this.#meta,
        metaSlotBytes: slotBytes,
      });
    }
    const recordBytes = this.sampler.recordWords * 4;
    // With GPU drafts a step also reads back one accepted count per verifying sequence.
    const countRows = this.#drafter ? init.capacity.maxSeqs : 0;
    this.#readback = new ReadbackRing(device, { stepsPerSync: sync, maxRowsPerStep: rows + countRows, recordBytes });
    this.#rowReadback = new RowReadback(device, { maxRowsPerStep: rows, recordBytes });
    this.#pooledReadback = new RowReadback(device, { maxRowsPerStep: init.capacity.maxSeqs, recordBytes: init.spec.hiddenSize * 4 });
  }

  /** Loads a Hugging Face checkpoint directory or a GGUF file onto the GPU. */
  static async load(dir: string, options: ModelRunnerOptions = {}): Promise<ModelRunner> {
    // A checkpoint directory or a .gguf file; quantized decoder weights upload as blocks for
    // the quantized matmuls (Q8_0/Q4_0 as stored, Q4_K transcoded to Q4X, Q6_K and mixed
    // types to Q8X).
    const { spec, tensors } = await openModel(dir, { quantization: options.quantization });
    try {
      const gpu = options.gpu ?? await createGpu({ allowFallbackAdapter: options.allowFallbackAdapter });
      const device = gpu.device;
      const pipelines = await sharedPipelineCache(device, [...KERNEL_FILES, ...QUANT_KERNEL_FILES, ...MOE_KERNEL_FILES, ...SPEC_KERNEL_FILES]);
      const blockSize = options.blockSize ?? 16;
      const maxSeqs = options.maxSeqs ?? 16;
      const maxTokens = options.maxTokens ?? 256;
      const family = kernelFamilyFor(gpu, options.kernelFamily);
      const kvDtype = kvDtypeFor(spec, gpu, options.kvDtype);
      // Only attention layers hold KV entries (a hybrid model's linear layers keep a state).
      const cacheShape = { numLayers: attentionLayers(spec).length, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize, dtype: kvDtype };
      const maxLogitRows = options.maxLogitRows ?? maxSeqs;
      device.pushErrorScope("validation");
      // The weights go first: the KV budget is what they (every expert) leave of gpuMemoryBytes.
      const weights = await uploadWeights(device, spec, tensors, {
        weightDType: options.weightDType,
        layout: family === "cpu" ? "column_blocks" : "padded_rows",
        onProgress: options.onProgress,
        maxBindingBytes: gpu.limits.maxStorageBufferBindingSize,
      });
      let budget: KvBudget;
      try {
        // MTP: the head's weights are uploaded after the cache is sized (they share the
        // target's embedding): leave room for them, estimated from the head's tensor list.
        const headBytes = options.hiddenStore && options.gpuMemoryBytes !== undefined
          ? await mtpHeadBytes(dir, spec, { weightDType: options.weightDType, quantization: options.quantization })
          : 0;
        budget = kvCacheBudget({
          kvCacheBytes: options.kvCacheBytes,
          gpuMemoryBytes: options.gpuMemoryBytes,
          weightBytes: weights.bytes,
          headBytes,
          scratchBytes: stepScratchBytes(spec, { maxTokens, maxLogitRows }),
        });
      } catch (e) {
        weights.destroy();
        await device.popErrorScope();
        throw e;
      }
      const bindingLimit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
      const numBlocks = options.numBlocks ?? (options.hiddenStore
        ? mtpNumBlocks(cacheShape, spec.hiddenSize, budget.bytes, bindingLimit)
        : defaultNumBlocks(cacheShape, budget.bytes, bindingLimit));
      const maxContext = Math.min(options.maxContext ?? spec.maxPositionEmbeddings, numBlocks * blockSize);
      const capacity: StepCapacity = {
        maxTokens,
        maxSeqs,
        maxLogitRows,
        maxBlocksPerSeq: Math.ceil(maxContext / blockSize),
      };
      const cache = new KvCache(device, { ...cacheShape, numBlocks }, gpu.limits.maxStorageBufferBindingSize);
      // One recurrent-state slot per sequence slot (the scheduler's running sequences).
      const state = spec.linearAttention
        ? new RecurrentState(device, spec.linearAttention, maxSeqs, Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize))
        : null;
      const runner = new ModelRunner({
        gpu,
        spec,
        weights,
        cache,
        state,
        capacity,
        pipelines,
        attn: options.attn ?? "paged",
        family,
        attentionSplit: options.attentionSplit,
        deltaRuleForm: options.deltaRuleForm,
        quantizedActivations: options.quantizedActivations,
        stepsPerSync: options.stepsPerSync ?? 8,
        constrainedStepsPerSync: options.constrainedStepsPerSync ?? 2,
        maxTopLogprobs: options.maxTopLogprobs ?? 0,
        speculative: options.speculative,
        maxContext,
        hiddenStore: options.hiddenStore ? createHiddenStore(gpu, numBlocks * blockSize, spec.hiddenSize) : undefined,
      });
      const error = await device.popErrorScope();
      if (error) throw new Error(`GPU setup failed: ${error.message}`);
      runner.memory = {
        weightBytes: weights.bytes,
        expertBytes: weights.layers.reduce((n, l) => n + (l.moe ? l.moe.expertBytes * spec.moe!.numExperts : 0), 0),
        kvCacheBytes: numBlocks * KvCache.blockBytes(cacheShape),
        kvBudget: options.numBlocks === undefined ? budget : null,
        ...(options.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: options.gpuMemoryBytes } : {}),
      };
      return runner;
    } finally {
      tensors.close();
    }
  }

  /**
   * Loads the MTP head of the target's checkpoint `dir` as a runner of its own (one
   * full-attention layer, its own KV cache of the target's shape and block count, the
   * target's embedding and LM head shared) whose rows take their input from the target's
   * {@link hiddenStore}. Throws `MtpHeadMissingError` when the checkpoint has no head.
   */
  static async loadMtp(
    target: ModelRunner,
    dir: string,
    options: Pick<ModelRunnerOptions, "attn" | "weightDType" | "quantization" | "quantizedActivations" | "stepsPerSync"> = {},
  ): Promise<ModelRunner> {
    if (!target.hiddenStore) throw new Error("the MTP head needs a target loaded with hiddenStore");
    if (target.spec.architecture !== "qwen35" && target.spec.architecture !== "qwen35_moe") {
      throw new MtpHeadMissingError(`"mtp" runs Qwen3.5's head (qwen35, qwen35_moe); this model is ${target.spec.architecture}`);
    }
    const tensors = quantizeSource(await openMtpTensors(dir), options.quantization ?? "none");
    const gpu = target.gpu;
    const device = gpu.device;
    const spec = mtpSpec(target.spec);
    const family = target.forward.family;
    try {
      device.pushErrorScope("validation");
      const weights = await uploadWeights(device, spec, tensors, {
        weightDType: options.weightDType,
        layout: family === "cpu" ? "column_blocks" : "padded_rows",
        maxBindingBytes: gpu.limits.maxStorageBufferBindingSize,
        shared: target.weights,
        mtpInput: true,
      });
      const { blockSize, numBlocks } = target.cache.options;
      const cache = new KvCache(
        device,
        { numLayers: 1, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize, dtype: target.cache.dtype, numBlocks },
        gpu.limits.maxStorageBufferBindingSize,
      );
      const runner = new ModelRunner({
        gpu,
        spec,
        weights,
        cache,
        state: null,
        capacity: target.capacity,
        pipelines: target.pipelines,
        attn: options.attn ?? "paged",
        family,
        quantizedActivations: options.quantizedActivations,
        stepsPerSync: options.stepsPerSync ?? 8,
        constrainedStepsPerSync: 2,
        maxTopLogprobs: 0,
        maxContext: target.maxContext,
        hiddenStore: createHiddenStore(gpu, numBlocks * blockSize, spec.hiddenSize),
        mtpInput: { targetHidden: target.hiddenStore },
      });
      const error = await device.popErrorScope();
      if (error) throw new Error(`GPU setup failed: ${error.message}`);
      runner.memory = {
        weightBytes: weights.bytes,
        expertBytes: weights.layers.reduce((n, l) => n + (l.moe ? l.moe.expertBytes * spec.moe!.numExperts : 0), 0),
        kvCacheBytes: numBlocks * KvCache.blockBytes({ numLayers: 1, numKvHeads: spec.numKvHeads, headDim: spec.headDim, blockSize, dtype: target.cache.dtype }),
        kvBudget: null,
      };
      return runner;
    } finally {
      tensors.close();
    }
  }

  /** Longest sequence this runner can hold, in tokens. */
  get maxContext(): number {
    return this.capacity.maxBlocksPerSeq * this.cache.options.blockSize;
  }

  /** Whether verification chunks may take their drafts from the GPU (`gpuDraft`). */
  get gpuDrafts(): boolean {
    return this.#drafter !== null;
  }

  /** Steps between readbacks. */
  get stepsPerSync(): number {
    return this.#readback.stepsPerSync;
  }

  /** Whether submitted steps still have records to read back. */
  get busy(): boolean {
    return this.#readback.pendingSteps > 0 || this.#readback.inflight > 0 || this.#rowReadback.pending > 0 ||
      this.#pooledReadback.pending > 0;
  }

  /** Batched readbacks completed (GPU->CPU waits of the ring; constrained rows' own not counted). */
  get syncs(): number {
    return this.#syncs;
  }

  /**
   * Runs a scheduled step (when it has work) and returns the tokens of a readback when one
   * completed, else null. Readbacks complete after every `stepsPerSync` steps (the GPU stays
   * up to two batches ahead) and, when there is nothing to schedule, for whatever is in
   * flight: an empty plan with nothing in flight returns null (idle).
   *
   * Constrained rows come back on their own ({@link RowReadback}): whatever of theirs is
   * mapped is returned with any step's result, never waited for while the plan has work;
   * with an empty plan their oldest readback is waited for first (their sequences are what
   * the next step waits for). While one is pending, batches close every
   * `constrainedStepsPerSync` steps. Embeddings' pooled rows come back the same way as
   * constrained rows.
   */
  async step(plan: StepPlan): Promise<StepOutput | null> {
    const ring = this.#readback;
    const own = this.#rowReadback;
    const pooled = this.#pooledReadback;
    const batches: ReadBatch<Sequence>[] = [];
    if (plan.chunks.length > 0) {
      this.#submit(plan);
      if (ring.full || (own.pending > 0 && ring.pendingSteps >= this.#constrainedSync)) ring.flush();
      if (ring.inflight >= ring.maxInflight) batches.push(await ring.drainOldest());
    } else if (own.pending > 0 || pooled.pending > 0) {
      // Start mapping what the ring holds (when a batch may still be added), then wait for
      // the constrained (or pooled) rows.
      if (ring.pendingSteps > 0 && ring.inflight < ring.maxInflight - 1) ring.flush();
      await (own.pending > 0 ? own.waitOldest() : pooled.waitOldest());
      if (ring.oldestReady) batches.push(await ring.drainOldest());
    } else {
      if (ring.pendingSteps > 0) ring.flush();
      if (ring.inflight > 0) batches.push(await ring.drainOldest());
    }
    this.#syncs += batches.length;
    batches.push(...own.takeMapped());
    const pooledRows = pooled.pending > 0 ? pooled.takeMapped().flatMap((b) => this.#readPooled(b)) : [];
    if (batches.length === 0 && pooledRows.length === 0) return null;
    return { tokens: batches.flatMap((b) => this.#read(b)), pooled: pooledRows };
  }

  /**
   * Hybrid models with speculative decoding: allocates one recurrent-state snapshot per
   * sequence slot (idempotent); returns their bytes.
   */
  enableStateSnapshots(): number {
    if (!this.state) return 0;
    this.#snapshots ??= new StateSnapshots(this.gpu.device, this.state);
    return this.#snapshots.bytes;
  }

  /** Before the step's kernels: restore rolled-back slots, snapshot verified ones. */
  #encodeStateCopies(encoder: GPUCommandEncoder, plan: StepPlan): void {
    for (const c of plan.chunks) {
      if (!c.restoreState && !c.draft) continue;
      const snaps = this.#snapshots;
      if (!snaps) {
        if (c.restoreState) throw new Error("a chunk restores a recurrent state, but no snapshots were enabled");
        if (this.state) throw new Error("a verification on a hybrid model needs enableStateSnapshots()");
        continue;
      }
      if (c.restoreState) snaps.restore(encoder, c.seq.slot);
      if (c.draft) snaps.save(encoder, c.seq.slot);
    }
  }

  #submit(plan: StepPlan): void {
    const device = this.gpu.device;
    const drafter = this.#drafter;
    for (const seq of plan.admitted) {
      if (seq.pooling) continue;
      this.sampler.admit(seq.slot, seq.promptIds, seq.outputIds);
      this.#sampledRecords.delete(seq);
    }
    const ringSlot = this.#stepIndex++ % this.#ringSteps;
    const recordBase = ringSlot * this.capacity.maxLogitRows;
    const chunks: SequenceChunk[] = [];
    const rows: RowSampling[] = [];
    const owners: RecordOwner<Sequence>[] = [];
    /** Rows read back on their own (constrained, verification): row index and owner, in row order. */
    const own: { row: number; owner: Sequence; outputIndex: number }[] = [];
    let maskRows = 0;
    const maskWords = this.masks.maskWords;
    /** Pooled rows (embedding chunks), in row order. */
    const pooled: PooledOwner[] = [];
    // GPU speculation: verification chunks completed on the GPU, and the n-gram step after
    // sampling (acceptances first: their counts are read back in request order).
    const patches: PatchRequest[] = [];
    const accepts: DraftRequest[] = [];
    const appends: DraftRequest[] = [];
    const counts: { owner: Sequence; outputIndex: number; kind: "verify_count" }[] = [];
    // History uploads copy records into the drafter's history before the step's pass.
    const encoder = device.createCommandEncoder();
    let tokenCount = 0;
    const hiddenSource = this.hiddenSource;
    const hiddenSrc: number[] = [];
    for (const c of plan.chunks) {
      const seq = c.seq;
      if (hiddenSource) for (let i = c.start; i < c.start + c.count; i++) hiddenSrc.push(hiddenSource(seq, i));
      if (c.gpuDraft !== undefined && drafter) {
        // Placeholders: positions and slots are upper bounds (blocks exist for them), the
        // rest is set by the patch.
        chunks.push({ tokens: new Array(c.count).fill(0), start: c.start, blockTable: seq.blockTable, logits: "all", stateSlot: seq.slot });
        patches.push({ seqIndex: chunks.length - 1, slot: seq.slot, firstToken: tokenCount, firstRow: rows.length, rows: c.count, promptLength: seq.promptIds.length });
        // Drafts again only while the sequence speculates (it may finish its chunks in flight
        // with one-row steps after it stopped).
        const k = seq.speculation!.active ? drafter.options.maxDraft : 0;
        accepts.push({ mode: "accept", slot: seq.slot, fed: c.count - 1, firstRecord: recordBase + rows.length, k });
        counts.push({ owner: seq, outputIndex: -1, kind: "verify_count" });
        for (let i = 0; i < c.count; i++) {
          rows.push({ sampling: seq.sampling, outputIndex: 0, seqSlot: seq.slot });
          owners.push({ owner: seq, outputIndex: -1, kind: "verify_row" });
        }
        // A one-row chunk's token is the newest: a plain step may follow it once every
        // verification is back.
        if (c.count === 1) this.#lastRecord.set(seq, recordBase + rows.length - 1);
        tokenCount += c.count;
        continue;
      }
      tokenCount += c.count;
      const tokens: number[] = [];
      for (let i = c.start; i < c.start + c.count; i++) {
        // A position not known on the CPU holds the token sampled by an earlier step still
        // on the GPU (refer to its output record), or a drafted token being verified.
        tokens.push(seq.tokenAt(i) ?? (c.draft ? c.draft[i - c.start - 1] : (RECORD_REF | this.#lastRecord.get(seq)!) >>> 0));
      }
      chunks.push({
        tokens,
        start: c.start,
        blockTable: seq.blockTable,
        logits: c.draft ? "all" : c.sample ? "last" : "none",
        pool: c.pool,
        stateSlot: seq.slot,
      });
      if (c.pool !== "none") pooled.push({ seq, final: c.start + c.count === seq.promptIds.length });
      if (c.draft) {
        // Verification rows: read back right after their step (the scheduler waits for them).
        const base = seq.outputIds.length;
        // A constrained sequence: row i's mask is its grammar's state after draft tokens
        // 0..i-1 (the scheduler cut the draft where the grammar stops it).
        let maskRow = -1;
        if (seq.constraint) {
          maskRow = maskRows;
          const kept = seq.constraint.walkDraft!(c.draft, this.masks.staging, maskRow * maskWords);
          if (kept !== c.draft.length) throw new Error(`sequence ${seq.id}: the grammar keeps ${kept} of ${c.draft.length} drafts`);
          maskRows += c.count;
        }
        for (let i = 0; i < c.count; i++) {
          own.push({ row: rows.length, owner: seq, outputIndex: base + i });
          // A draft sampled from q: this row verifies it against q (rejection sampling).
          const q = c.draftProbs?.[i];
          rows.push({
            sampling: seq.sampling,
            outputIndex: base + i,
            seqSlot: seq.slot,
            ...(q !== undefined ? { qRow: q, draftToken: c.draft[i] } : {}),
            ...(maskRow >= 0 ? { maskRow: maskRow + i } : {}),
          });
        }
        continue;
      }
      if (!c.sample) continue;
      // The scheduler counted this token as pending already.
      const outputIndex = seq.generated - 1;
      if (seq.constraint) {
        // Its state is known on the CPU (the scheduler waited for its last token).
        const maskRow = maskRows++;
        seq.constraint.fillMask(this.masks.staging, maskRow * maskWords);
        own.push({ row: rows.length, owner: seq, outputIndex });
        rows.push({ sampling: seq.sampling, outputIndex, seqSlot: seq.slot, maskRow });
      } else {
        rows.push({ sampling: seq.sampling, outputIndex, seqSlot: seq.slot, qRow: c.probsRow });
        owners.push({ owner: seq, outputIndex });
        if (drafter && seq.speculation) {
          const record = recordBase + rows.length - 1;
          const length = c.start + c.count + 1;
          // A speculating sequence's GPU history takes the token sampled here, and a draft
          // follows it (its next step may verify it); a plain one keeps no history.
          if (c.gpuHistory === "upload") this.#uploadHistory(encoder, seq, length - 1);
          if (c.gpuHistory) appends.push({ mode: "append", slot: seq.slot, length, newest: (RECORD_REF | record) >>> 0, k: drafter.options.maxDraft });
          this.#trackSampled(seq, length - 1, record);
        }
      }
      this.#lastRecord.set(seq, recordBase + rows.length - 1);
    }
    const batch = buildStepBatch(chunks, this.cache.options.blockSize);
    if (hiddenSource) batch.hiddenSrc = Uint32Array.from(hiddenSrc);
    const offset = this.writeStep(batch, { rows, recordBase });
    this.masks.upload(maskRows);
    const ngram = [...accepts, ...appends];
    if (patches.length) this.#patch!.upload(patches);
    if (ngram.length) drafter!.upload(ngram);
    this.#encodeStateCopies(encoder, plan);
    const pass = encoder.beginComputePass();
    if (patches.length) this.#patch!.encode(pass, offset, patches.length);
    this.forward.encode(pass, offset, shapeOf(batch));
    if (maskRows) this.masks.encode(pass, offset, rows.length);
    this.sampler.encode(pass, offset, rows.length);
    if (ngram.length) drafter!.encode(pass, ngram.length);
    pass.end();
    // Unconstrained rows' records are contiguous only when no constrained row sits between
    // them: copy each run of them, so the ring keeps one record per owner in order.
    if (own.length === 0) {
      this.#readback.addRecords(encoder, this.sampler.records, recordBase, owners);
    } else {
      this.#addMixedStep(encoder, recordBase, rows.length, own, owners);
    }
    // Verification steps' accepted counts follow the step's records (one record-sized entry each).
    if (counts.length) this.#readback.addRecords(encoder, drafter!.accepted, 0, counts);
    this.#readback.endStep();
    pooled.forEach((owner, r) => this.#pooledReadback.add(encoder, this.forward.hidden, r, { owner, outputIndex: 0 }));
    device.queue.submit([encoder.finish()]);
    this.#rowReadback.flush();
    this.#pooledReadback.flush();
  }

  /**
   * n-gram speculation on the GPU: remembers the output record of a speculation-capable
   * sequence's token sampled at `position` until the token is read back, so that its GPU
   * history can be uploaded while tokens are still in flight.
   */
  #trackSampled(seq: Sequence, position: number, record: number): void {
    let list = this.#sampledRecords.get(seq);
    if (!list) this.#sampledRecords.set(seq, list = []);
    const known = seq.knownLength;
    let drop = 0;
    while (drop < list.length && list[drop].position < known) drop++;
    if (drop) list.splice(0, drop);
    list.push({ position, record });
  }

  /**
   * Writes a sequence's GPU token history, positions [0, end): the tokens known on the CPU,
   * then those still on the GPU, copied from their output records (the records of in-flight
   * steps stay in the ring until read back; the scheduler only uploads after plain steps, so
   * every in-flight token has one).
   */
  #uploadHistory(encoder: GPUCommandEncoder, seq: Sequence, end: number): void {
    const drafter = this.#drafter!;
    const known = Math.min(seq.knownLength, end);
    drafter.write(seq.slot, seq.knownTokens().slice(0, known));
    const list = this.#sampledRecords.get(seq) ?? [];
    for (let position = known; position < end; position++) {
      const entry = list.find((e) => e.position === position);
      if (!entry) throw new Error(`sequence ${seq.id}: no output record for position ${position} of its GPU history`);
      drafter.copyRecord(encoder, this.sampler.records, entry.record, seq.slot, position);
    }
  }

  /** Copies a step's records where some rows are constrained: those to their own readback. */
  #addMixedStep(
    encoder: GPUCommandEncoder,
    recordBase: number,
    rowCount: number,
    constrained: { row: number; owner: Sequence; outputIndex: number }[],
    owners: RecordOwner<Sequence>[],
  ): void {
    let next = 0; // next unconstrained owner
    let runStart = 0;
    const records = this.sampler.records;
    const flushRun = (end: number) => {
      const n = end - runStart;
      if (n > 0) this.#readback.addRecords(encoder, records, recordBase + runStart, owners.slice(next, next + n));
      next += n;
    };
    for (const c of constrained) {
      flushRun(c.row);
      this.#rowReadback.add(encoder, records, recordBase + c.row, c);
      runStart = c.row + 1;
    }
    flushRun(rowCount);
  }

  #read(batch: { words: Uint32Array; rows: RecordOwner<Sequence>[] }): SampledRow[] {
    const records = this.sampler.view(batch.words);
    const words = this.sampler.recordWords;
    return batch.rows.map(({ owner: seq, outputIndex, kind }, r) => {
      if (kind === "verify_count") {
        const verified = { accepted: batch.words[r * words], drafted: batch.words[r * words + 1] };
        return { seq, outputIndex, token: { id: -1, logprob: 0 }, verified };
      }
      const token = records.at(r, seq.sampling.logprobs ? seq.sampling.topLogprobs : 0);
      return kind === "verify_row" ? { seq, outputIndex, token, verifyRow: true } : { seq, outputIndex, token };
    });
  }

  #readPooled(batch: ReadBatch<PooledOwner>): PooledRow[] {
    const H = this.spec.hiddenSize;
    const values = new Float32Array(batch.words.buffer, batch.words.byteOffset, batch.rows.length * H);
    return batch.rows.map(({ owner }, r) => ({ seq: owner.seq, final: owner.final, values: values.subarray(r * H, (r + 1) * H) }));
  }

  /**
   * Writes a step's metadata (and its rows' sampling) into the next metadata slot with one
   * `writeBuffer`; returns the slot's offset for the dynamic binding. Slots rotate, so
   * several steps may be in flight. (Public for profilers that encode the forward pass.)
   */
  writeStep(batch: StepBatch, sampling?: StepSampling): number {
    const offset = this.#nextSlot * this.#slotStride;
    this.#nextSlot = (this.#nextSlot + 1) % this.#slots;
    this.gpu.device.queue.writeBuffer(this.#meta, offset, packStepMeta(batch, this.capacity, sampling));
    return offset;
  }

  /**
   * Runs the forward pass of one batch on its own and reads back the logits of its logit
   * rows, [rows, vocab] (teacher-forced checks and `cli logits`; not the serving path).
   */
  async logits(batch: StepBatch): Promise<Float32Array> {
    if (this.busy) throw new Error("logits() while steps are in flight");
    const device = this.gpu.device;
    const rows = batch.logitTokens.length;
    const bytes = rows * this.spec.vocabSize * 4;
    this.#logitsRead ??= device.createBuffer({
      label: "logits_readback",
      size: Math.max(16, this.capacity.maxLogitRows * this.spec.vocabSize * 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const offset = this.writeStep(batch);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    this.forward.encode(pass, offset, shapeOf(batch));
    pass.end();
    if (rows > 0) encoder.copyBufferToBuffer(this.forward.logits, 0, this.#logitsRead, 0, bytes);
    device.queue.submit([encoder.finish()]);
    if (rows === 0) {
      await device.queue.onSubmittedWorkDone();
      return new Float32Array(0);
    }
    await this.#logitsRead.mapAsync(GPUMapMode.READ, 0, bytes);
    const out = new Float32Array(this.#logitsRead.getMappedRange(0, bytes).slice(0));
    this.#logitsRead.unmap();
    return out;
  }

  /** Frees every GPU resource this runner created. */
  close(): void {
    this.#readback.destroy();
    this.#rowReadback.destroy();
    this.#pooledReadback.destroy();
    this.masks.destroy();
    this.#patch?.destroy();
    this.#drafter?.destroy();
    this.sampler.destroy();
    this.forward.destroy();
    this.cache.destroy();
    this.state?.destroy();
    this.#snapshots?.destroy();
    this.weights.destroy();
    this.hiddenStore?.destroy();
    this.#meta.destroy();
    this.#logitsRead?.destroy();
  }
}

/**
 * Blocks for a target with MTP speculation: each block also costs its hidden rows in the
 * target's and the head's stores (f32) and the head's one KV layer, all taken from the same
 * budget, and a store must fit one binding.
 */
function mtpNumBlocks(
  shape: { numLayers: number; numKvHeads: number; headDim: number; blockSize: number; dtype?: KvDtype },
  hidden: number,
  budgetBytes: number,
  maxBinding: number,
): number {
  const rows = shape.blockSize * hidden * 4;
  const perBlock = KvCache.blockBytes(shape) + 2 * rows + KvCache.blockBytes({ ...shape, numLayers: 1 });
  return Math.max(1, Math.min(Math.floor(budgetBytes / perBlock), Math.floor(maxBinding / rows), defaultNumBlocks(shape, budgetBytes, maxBinding)));
}

/** A hidden-state store of one f32 row per KV slot (MTP speculation). */
function createHiddenStore(gpu: Gpu, slots: number, hidden: number): GPUBuffer {
  const size = slots * hidden * 4;
  const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  if (size > limit) {
    throw new LlmError("invalid_request", `MTP speculation keeps a hidden row per KV slot: ${slots} slots need ${size} bytes, over the binding limit ${limit}; lower the KV cache`, { param: "speculative.method" });
  }
  return gpu.device.createBuffer({ label: "hidden_store", size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
}

/**
 * The KV-cache element type: the option, else f16 where the adapter has `shader-f16` (half
 * the bytes; attention reads 8 halves per 16-byte word, so head_dim % 8 == 0), else f32.
 */
export function kvDtypeFor(spec: ModelSpec, gpu: Pick<Gpu, "hasF16">, option?: KvDtype): KvDtype {
  if (option === "f16" && spec.headDim % 8 !== 0) {
    throw new LlmError("unsupported_architecture", `an f16 KV cache needs head_dim % 8 == 0, got ${spec.headDim}`);
  }
  return option ?? (gpu.hasF16 && spec.headDim % 8 === 0 ? "f16" : "f32");
}

/** Blocks that fit a byte budget and the per-layer binding limit. */
export function defaultNumBlocks(
  shape: { numLayers: number; numKvHeads: number; headDim: number; blockSize: number; dtype?: KvDtype },
  budgetBytes: number,
  maxBinding: number,
): number {
  const byBudget = Math.floor(budgetBytes / KvCache.blockBytes(shape));
  const byBinding = Math.floor(maxBinding / KvCache.layerBytes({ ...shape, numBlocks: 1 }));
  return Math.max(1, Math.min(byBudget, byBinding));
}
