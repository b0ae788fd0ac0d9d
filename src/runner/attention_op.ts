/**
 * Attention as the forward pass dispatches it, one layer at a time over the paged KV cache:
 * the fast path (`attention_lanes`, split over keys, + `attention_combine` when a step's
 * longest context needs several splits) and the plain eager reference (three phases over a
 * scores buffer). Each owns its scratch buffers, shared by every layer. Shared by the forward
 * pass, the kernel tests and the bench.
 * @module
 */
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { ATTENTION_COMBINE, ATTENTION_LANES, EAGER_ATTENTION } from "../kernels/descriptors.ts";
import { ATTENTION_QUERY_TILE, attentionLanes } from "../kernels/family.ts";
import { type Grid, rowsGrid } from "./matmul_op.ts";
import type { StepShape } from "./step_meta.ts";

/** The shapes attention is built for. */
export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  /** The KV cache holds f16. */
  kvF16: boolean;
  /** Most tokens in a step. */
  maxTokens: number;
  /** Longest context a sequence may reach. */
  maxContext: number;
  /** Every layer has learned softmax sinks ({@link AttentionLayer.sinks}). */
  sinks?: boolean;
}

/** One layer's attention: where q comes from, its cache and its output. */
export interface AttentionLayer {
  /** Query rows: token t's head h at `query[t * qStride + h * headDim]`, RoPE applied. */
  query: GPUBuffer;
  qStride: number;
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** Output rows [tokens, numHeads * headDim]. */
  out: GPUBuffer;
  /** Sliding window in tokens (0: none). */
  window: number;
  scale: number;
  /** Attention-logit soft cap (0: none). */
  softcap: number;
  /** Per-head sink logits [numHeads] f32, when the shape has sinks. */
  sinks?: GPUBuffer | null;
}

/** One dispatch of a layer's attention. */
export interface AttentionDispatch {
  label: string;
  kernels: CompiledKernel[];
  pick: (shape: StepShape) => number;
  /** Every binding but the step metadata. */
  resources: Record<string, BindingResource>;
  /** A zero dimension skips the dispatch. */
  grid: (shape: StepShape, variant: number) => Grid;
}

/** Attention implementations the forward pass can build. */
export interface AttentionImplementation {
  layer(l: AttentionLayer, label: string): AttentionDispatch[];
  destroy(): void;
}

/** The `sinks` binding of a layer when the shape has sinks. */
function sinksOf(s: AttentionShape, l: AttentionLayer): { sinks?: GPUBuffer } {
  if (!s.sinks) return {};
  if (!l.sinks) throw new RangeError("attention with sinks needs every layer's sinks buffer");
  return { sinks: l.sinks };
}

function scratch(device: GPUDevice, label: string, words: number, maxBinding: number): GPUBuffer {
  const size = Math.max(16, Math.ceil((words * 4) / 16) * 16);
  if (size > maxBinding) {
    throw new RangeError(
      `attention buffer ${label} needs ${size} bytes, over the binding limit ${maxBinding}: ` +
        `lower maxBatchTokens or the context length`,
    );
  }
  return device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
}

/**
 * Split-K paged attention, lanes are keys. Keys are cut at absolute multiples of `splitLen`
 * and each key has a fixed lane, so a token's bits do not depend on its batch, its query
 * tile or the step's split count. Decode steps use query tiles of one token; a step where a
 * sequence brings several tokens uses tiles of up to {@link ATTENTION_QUERY_TILE}, sharing
 * each K/V row among them.
 */
export class PagedAttention implements AttentionImplementation {
  /** Lanes (keys in flight) per workgroup. */
  readonly lanes: number;
  /** Query tile for steps with several tokens per sequence. */
  readonly queryTile: number;
  readonly splitLen: number;
  /** Splits the partial buffers hold per (token, head). */
  readonly maxSplits: number;
  #shape: AttentionShape;
  #kernels: CompiledKernel[];
  #combine: CompiledKernel;
  #buffers: GPUBuffer[];
  #partAcc: GPUBuffer;
  #partMl: GPUBuffer;
  #info: GPUBuffer;

  constructor(
    device: GPUDevice,
    pipelines: PipelineCache,
    shape: AttentionShape,
    options: { splitLen: number; maxWorkgroupBytes: number; maxBindingBytes: number },
  ) {
    const { numHeads: nh, numKvHeads: nkv, headDim: hd } = shape;
    if (hd % 4 !== 0) throw new RangeError(`paged attention reads heads as vec4: head_dim ${hd} is not a multiple of 4`);
    this.#shape = shape;
    // One lane count for both query tiles (a key's lane fixes the summation order), and the
    // largest tile that keeps it within the workgroup memory.
    const group = nh / nkv;
    this.lanes = attentionLanes(group, hd, 1, options.maxWorkgroupBytes);
    let tq = ATTENTION_QUERY_TILE;
    while (tq > 1 && attentionLanes(group, hd, tq, options.maxWorkgroupBytes) < this.lanes) tq /= 2;
    this.queryTile = tq;
    this.splitLen = options.splitLen;
    if (this.splitLen % this.lanes !== 0) {
      throw new RangeError(`attention split ${this.splitLen} is not a multiple of ${this.lanes} lanes`);
    }
    this.maxSplits = Math.max(1, Math.ceil(shape.maxContext / this.splitLen));
    const T = shape.maxTokens;
    this.#partAcc = scratch(device, "attn_part_acc", T * nh * this.maxSplits * hd, options.maxBindingBytes);
    this.#partMl = scratch(device, "attn_part_ml", T * nh * this.maxSplits * 2, options.maxBindingBytes);
    this.#info = scratch(device, "attn_info", 4, options.maxBindingBytes);
    this.#buffers = [this.#partAcc, this.#partMl, this.#info];
    this.#kernels = [...new Set([1, tq])].map((TQ) =>
      pipelines.get(ATTENTION_LANES, { GROUP: group, HEAD_DIM: hd, TQ, WG: this.lanes, KV_F16: shape.kvF16, SINKS: !!shape.sinks })
    );
    this.#combine = pipelines.get(ATTENTION_COMBINE, { HEAD_DIM: hd, SINKS: !!shape.sinks });
  }

  /** Splits a step whose longest context is `maxContext` runs. */
  splits(maxContext: number): number {
    return Math.max(1, Math.ceil(maxContext / this.splitLen));
  }

  /** The attention dispatch and the combine (skipped while one split holds every key). */
  layer(l: AttentionLayer, label: string): AttentionDispatch[] {
    const s = this.#shape;
    const p = this.#kernels[0].uniform({
      nh: s.numHeads,
      nkv: s.numKvHeads,
      block_size: s.blockSize,
      q_stride: l.qStride,
      window: l.window,
      scale: l.scale,
      softcap: l.softcap,
      max_splits: this.maxSplits,
      split_len: this.splitLen,
    }, `${label}.params`);
    this.#buffers.push(p);
    const parts = { part_acc: this.#partAcc, part_ml: this.#partMl, info: this.#info, ...sinksOf(s, l) };
    const tq = this.queryTile;
    const tiled = this.#kernels.length > 1;
    return [
      {
        label,
        kernels: this.#kernels,
        pick: (shape) => (tiled && shape.maxQueryLen > 1 ? 1 : 0),
        resources: { p, query: l.query, k_cache: l.kCache, v_cache: l.vCache, out: l.out, ...parts },
        grid: (shape, v) => [
          s.numKvHeads,
          v === 0 ? shape.tokens : Math.ceil(shape.tokens / tq) + shape.seqs,
          this.splits(shape.maxContext),
        ],
      },
      {
        label: `${label}_combine`,
        kernels: [this.#combine],
        pick: () => 0,
        resources: { p, out: l.out, ...parts },
        grid: (shape) => (this.splits(shape.maxContext) > 1 ? rowsGrid(shape.tokens, 1) : [0, 0, 0]),
      },
    ];
  }

  destroy(): void {
    for (const b of this.#buffers) b.destroy();
  }
}

/** The eager reference: scores for every key, a softmax per row, then the values. */
export class EagerAttention implements AttentionImplementation {
  #shape: AttentionShape;
  #phases: { name: string; kernel: CompiledKernel; grid: (shape: StepShape) => Grid }[];
  #scores: GPUBuffer;
  #buffers: GPUBuffer[];

  constructor(device: GPUDevice, pipelines: PipelineCache, shape: AttentionShape, options: { maxBindingBytes: number }) {
    this.#shape = shape;
    const { numHeads: nh, headDim: hd } = shape;
    this.#scores = scratch(device, "eager_scores", shape.maxTokens * nh * shape.maxContext, options.maxBindingBytes);
    this.#buffers = [this.#scores];
    const phase = (flag: string) =>
      pipelines.get(EAGER_ATTENTION, {
        PHASE_SCORES: false,
        PHASE_SOFTMAX: false,
        PHASE_VALUES: false,
        KV_F16: shape.kvF16,
        SINKS: !!shape.sinks,
        [flag]: true,
      });
    this.#phases = [
      { name: "scores", kernel: phase("PHASE_SCORES"), grid: (s) => [Math.ceil(s.maxContext / 64), nh, s.tokens] },
      { name: "softmax", kernel: phase("PHASE_SOFTMAX"), grid: (s) => [1, nh, s.tokens] },
      { name: "values", kernel: phase("PHASE_VALUES"), grid: (s) => [Math.ceil(hd / 64), nh, s.tokens] },
    ];
  }

  layer(l: AttentionLayer, label: string): AttentionDispatch[] {
    const s = this.#shape;
    const p = this.#phases[0].kernel.uniform({
      nh: s.numHeads,
      nkv: s.numKvHeads,
      head_dim: s.headDim,
      block_size: s.blockSize,
      q_stride: l.qStride,
      window: l.window,
      scale: l.scale,
      softcap: l.softcap,
      max_context: s.maxContext,
    }, `${label}.params`);
    this.#buffers.push(p);
    return this.#phases.map(({ name, kernel, grid }) => ({
      label: `${label}_eager_${name}`,
      kernels: [kernel],
      pick: () => 0,
      resources: { p, query: l.query, k_cache: l.kCache, v_cache: l.vCache, scores: this.#scores, out: l.out, ...sinksOf(s, l) },
      grid: (shape) => grid(shape),
    }));
  }

  destroy(): void {
    for (const b of this.#buffers) b.destroy();
  }
}
