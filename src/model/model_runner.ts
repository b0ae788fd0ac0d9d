/**
 * A loaded model ready to run steps: weights, KV cache, block pool, the recorded forward
 * pass and its metadata slots. One `run` = one `writeBuffer`, one submit, one readback.
 * @module
 */
import { createGpu, type Gpu } from "../gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../gpu/kernel.ts";
import { KERNEL_FILES } from "../gpu/descriptors.ts";
import { KvCache } from "../cache/kv_cache.ts";
import { BlockManager } from "../cache/block_manager.ts";
import { loadModelSpec, checkTensorShapes, type ModelSpec } from "./config.ts";
import { openCheckpointTensors } from "./safetensors.ts";
import { Tokenizer } from "./tokenizer.ts";
import { type ModelWeights, uploadWeights } from "./weights.ts";
import { type AttentionImpl, ForwardPass } from "./forward.ts";
import { metaSlotWords, packStepMeta, type StepBatch, type StepCapacity } from "./step_batch.ts";
import { GpuSampler, packRowSampling, type RowSampling, SAMPLING_PARAM_WORDS } from "../engine/gpu_sampler.ts";

/** Options for {@link ModelRunner.load}. */
export interface ModelRunnerOptions {
  /** Attention implementation: the fast paged kernel or the eager reference. */
  attn?: AttentionImpl;
  /** Most tokens in one step (the batch token budget). */
  maxTokens?: number;
  /** Most sequences in one step. */
  maxSeqs?: number;
  /** Most rows of logits one step computes (defaults to maxSeqs). */
  maxLogitRows?: number;
  /** Tokens per KV block. */
  blockSize?: number;
  /** KV blocks in the pool; sized from `kvCacheBytes` when absent. */
  numBlocks?: number;
  /** Memory budget for the KV cache when `numBlocks` is absent (default 256 MiB). */
  kvCacheBytes?: number;
  /** Longest sequence, in tokens (defaults to the model's max_position_embeddings). */
  maxContext?: number;
  /** Matrix storage on the GPU. */
  weightDType?: "auto" | "f32" | "f16";
  /** Metadata slots (steps that may be in flight at once). */
  metaSlots?: number;
  /** Steps of sampler output records kept on the GPU (decode tokens refer to them). */
  recordRingSteps?: number;
  /** Most logprob alternatives a row may ask for. */
  maxTopLogprobs?: number;
  /** An existing device to use. */
  gpu?: Gpu;
  /** Weight upload progress. */
  onProgress?: (done: number, total: number) => void;
}

/** Output of one step. */
export interface StepOutput {
  /** Argmax id per logit row. */
  ids: Uint32Array;
  /** [logitRows, vocab] logits when asked for. */
  logits: Float32Array | null;
}

/** A model on the GPU that runs {@link StepBatch}es. */
export class ModelRunner {
  readonly gpu: Gpu;
  readonly spec: ModelSpec;
  readonly tokenizer: Tokenizer;
  readonly weights: ModelWeights;
  readonly cache: KvCache;
  readonly blocks: BlockManager;
  readonly forward: ForwardPass;
  readonly capacity: StepCapacity;
  readonly pipelines: PipelineCache;
  /** Samples every logit row on the GPU into a ring of output records. */
  readonly sampler: GpuSampler;
  /** Steps the record ring holds. */
  readonly recordRingSteps: number;
  #meta: GPUBuffer;
  #slotBytes: number;
  #slotStride: number;
  #slots: number;
  #nextSlot = 0;
  #idsRead: GPUBuffer;
  #logitsRead: GPUBuffer;

  private constructor(init: {
    gpu: Gpu;
    spec: ModelSpec;
    tokenizer: Tokenizer;
    weights: ModelWeights;
    cache: KvCache;
    capacity: StepCapacity;
    pipelines: PipelineCache;
    attn: AttentionImpl;
    slots: number;
    ringSteps: number;
    maxTopLogprobs: number;
  }) {
    const device = init.gpu.device;
    this.gpu = init.gpu;
    this.spec = init.spec;
    this.tokenizer = init.tokenizer;
    this.weights = init.weights;
    this.cache = init.cache;
    this.capacity = init.capacity;
    this.pipelines = init.pipelines;
    this.blocks = new BlockManager(init.cache.options.numBlocks, init.cache.options.blockSize);
    this.#slots = init.slots;
    this.#slotBytes = metaSlotWords(init.capacity) * 4;
    const align = device.limits.minStorageBufferOffsetAlignment;
    this.#slotStride = Math.ceil(this.#slotBytes / align) * align;
    this.#meta = device.createBuffer({
      label: "step_meta",
      size: this.#slotStride * init.slots,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.recordRingSteps = init.ringSteps;
    this.sampler = new GpuSampler(device, init.pipelines, {
      vocab: init.spec.vocabSize,
      maxRows: init.capacity.maxLogitRows,
      maxSeqs: init.capacity.maxSeqs,
      maxTopLogprobs: init.maxTopLogprobs,
      outRecords: init.ringSteps * init.capacity.maxLogitRows,
    });
    this.forward = new ForwardPass(device, init.pipelines, init.spec, init.weights, init.cache, this.#meta, {
      attn: init.attn,
      capacity: init.capacity,
      metaSlotBytes: this.#slotBytes,
      maxBindingBytes: init.gpu.limits.maxStorageBufferBindingSize,
      tokenRecords: { buffer: this.sampler.records, recordWords: this.sampler.recordWords },
    });
    this.sampler.bind(this.#meta, this.#slotBytes, this.forward.logits);
    this.#idsRead = device.createBuffer({
      size: Math.max(16, init.capacity.maxLogitRows * 4),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#logitsRead = device.createBuffer({
      size: init.capacity.maxLogitRows * init.spec.vocabSize * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** Loads a Hugging Face checkpoint directory onto the GPU. */
  static async load(dir: string, options: ModelRunnerOptions = {}): Promise<ModelRunner> {
    const spec = await loadModelSpec(dir);
    const tensors = await openCheckpointTensors(dir);
    try {
      checkTensorShapes(spec, tensors);
      const tokenizer = await Tokenizer.load(dir);
      const gpu = options.gpu ?? await createGpu();
      const device = gpu.device;
      const pipelines = new PipelineCache(device, await loadKernelSources(KERNEL_FILES));
      const blockSize = options.blockSize ?? 16;
      const maxSeqs = options.maxSeqs ?? 16;
      const maxTokens = options.maxTokens ?? 256;
      const cacheShape = {
        numLayers: spec.numLayers,
        numKvHeads: spec.numKvHeads,
        headDim: spec.headDim,
        blockSize,
      };
      const numBlocks = options.numBlocks ?? defaultNumBlocks(
        cacheShape,
        options.kvCacheBytes ?? 256 << 20,
        Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize),
      );
      const maxContext = Math.min(options.maxContext ?? spec.maxPositionEmbeddings, numBlocks * blockSize);
      const capacity: StepCapacity = {
        maxTokens,
        maxSeqs,
        maxLogitRows: options.maxLogitRows ?? maxSeqs,
        maxBlocksPerSeq: Math.ceil(maxContext / blockSize),
        samplingWordsPerRow: SAMPLING_PARAM_WORDS,
      };
      device.pushErrorScope("validation");
      const weights = await uploadWeights(device, spec, tensors, {
        weightDType: options.weightDType,
        onProgress: options.onProgress,
        maxBindingBytes: gpu.limits.maxStorageBufferBindingSize,
      });
      const cache = new KvCache(device, { ...cacheShape, numBlocks }, gpu.limits.maxStorageBufferBindingSize);
      const runner = new ModelRunner({
        gpu,
        spec,
        tokenizer,
        weights,
        cache,
        capacity,
        pipelines,
        attn: options.attn ?? "paged",
        slots: options.metaSlots ?? 2,
        ringSteps: options.recordRingSteps ?? 2,
        maxTopLogprobs: options.maxTopLogprobs ?? 0,
      });
      const error = await device.popErrorScope();
      if (error) throw new Error(`GPU setup failed: ${error.message}`);
      return runner;
    } finally {
      tensors.close();
    }
  }

  /** Longest sequence this runner can hold, in tokens. */
  get maxContext(): number {
    return this.capacity.maxBlocksPerSeq * this.cache.options.blockSize;
  }

  /**
   * Writes a step's metadata (and its rows' sampling parameters) into the next metadata slot
   * with one `writeBuffer`; returns the slot's offset for the dynamic binding. Slots rotate,
   * so up to `metaSlots` steps may be in flight.
   */
  writeStep(batch: StepBatch, sampling?: { rows: readonly RowSampling[]; recordBase: number }): number {
    let packed: { params: Uint32Array; recordBase: number } | undefined;
    if (sampling) {
      const params = new Uint32Array(sampling.rows.length * SAMPLING_PARAM_WORDS);
      packRowSampling(sampling.rows, params, 0);
      packed = { params, recordBase: sampling.recordBase };
    }
    const meta = packStepMeta(batch, this.capacity, packed);
    const slot = this.#nextSlot;
    this.#nextSlot = (this.#nextSlot + 1) % this.#slots;
    const offset = slot * this.#slotStride;
    this.gpu.device.queue.writeBuffer(this.#meta, offset, meta);
    return offset;
  }

  /** Runs one step and reads back the argmax ids (and the logits when asked). */
  async run(batch: StepBatch, options: { logits?: boolean } = {}): Promise<StepOutput> {
    const device = this.gpu.device;
    const offset = this.writeStep(batch);
    const rows = batch.logitTokens.length;
    let maxContext = 0;
    for (const c of batch.contextLens) maxContext = Math.max(maxContext, c);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    this.forward.encode(pass, offset, { tokens: batch.tokenIds.length, logitRows: rows, maxContext });
    pass.end();
    if (rows > 0) {
      encoder.copyBufferToBuffer(this.forward.ids, 0, this.#idsRead, 0, rows * 4);
      if (options.logits) {
        encoder.copyBufferToBuffer(this.forward.logits, 0, this.#logitsRead, 0, rows * this.spec.vocabSize * 4);
      }
    }
    device.queue.submit([encoder.finish()]);
    if (rows === 0) {
      await device.queue.onSubmittedWorkDone();
      return { ids: new Uint32Array(0), logits: null };
    }
    await this.#idsRead.mapAsync(GPUMapMode.READ, 0, rows * 4);
    const ids = new Uint32Array(this.#idsRead.getMappedRange(0, rows * 4).slice(0));
    this.#idsRead.unmap();
    let logits: Float32Array | null = null;
    if (options.logits) {
      const bytes = rows * this.spec.vocabSize * 4;
      await this.#logitsRead.mapAsync(GPUMapMode.READ, 0, bytes);
      logits = new Float32Array(this.#logitsRead.getMappedRange(0, bytes).slice(0));
      this.#logitsRead.unmap();
    }
    return { ids, logits };
  }

  /** Frees every GPU resource this runner created. */
  close(): void {
    this.sampler.destroy();
    this.forward.destroy();
    this.cache.destroy();
    this.weights.destroy();
    this.#meta.destroy();
    this.#idsRead.destroy();
    this.#logitsRead.destroy();
  }
}

/** Blocks that fit a byte budget and the per-layer binding limit. */
export function defaultNumBlocks(
  shape: { numLayers: number; numKvHeads: number; headDim: number; blockSize: number },
  budgetBytes: number,
  maxBinding: number,
): number {
  const byBudget = Math.floor(budgetBytes / KvCache.blockBytes(shape));
  const byBinding = Math.floor(maxBinding / KvCache.layerBytes({ ...shape, numBlocks: 1 }));
  return Math.max(1, Math.min(byBudget, byBinding));
}
