/**
 * Records one forward step as a fixed list of dispatches. Pipelines, bind groups and
 * buffers are built once here; a step only picks workgroup counts for its shape and reads
 * its own metadata slot (a dynamic offset), so nothing is created per step and nothing waits
 * on the CPU inside the pass.
 * @module
 */
import type { AttentionImpl } from "../api/types.ts";
import type { ModelSpec } from "../model/config.ts";
import type { MatrixWeight, ModelWeights } from "../model/weights.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import type { KvCache } from "../gpu/kv_cache.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import {
  ACT_MUL,
  EAGER_ATTENTION,
  EMBED,
  MATMUL,
  PAGED_ATTENTION,
  RMSNORM,
  ROPE_KV,
  SOFTCAP,
} from "../kernels/descriptors.ts";
import type { StepCapacity } from "./step_meta.ts";

/** The sizes of one step that decide workgroup counts. */
export interface StepShape {
  tokens: number;
  logitRows: number;
  /** Largest context length of any sequence in the step (eager attention only). */
  maxContext: number;
}

/** Options for {@link ForwardPass}. */
export interface ForwardOptions {
  attn: AttentionImpl;
  capacity: StepCapacity;
  /** Bytes of one metadata slot (the dynamic-offset binding size). */
  metaSlotBytes: number;
  /** Largest storage binding. */
  maxBindingBytes: number;
  /** Sampler output records that token ids with the top bit set refer to. */
  tokenRecords?: { buffer: GPUBuffer; recordWords: number };
}

type Grid = [number, number, number];
type Rows = "tokens" | "logits";

interface Op {
  label: string;
  /** One kernel, or variants indexed by rows-per-invocation (1, 2, 4, 8). */
  kernels: CompiledKernel[];
  rows?: Rows;
  bindGroup: GPUBindGroup;
  grid: (shape: StepShape) => Grid;
}

const ROW_KIND: Record<Rows, number> = { tokens: 0, logits: 1 };
const MAX_Y = 65535;

/** Splits a row count over y and z (65535 workgroups per dimension). */
function rowsGrid(x: number, rows: number): Grid {
  return rows <= MAX_Y ? [x, rows, 1] : [x, MAX_Y, Math.ceil(rows / MAX_Y)];
}

function rowsOf(shape: StepShape, rows: Rows): number {
  return rows === "tokens" ? shape.tokens : shape.logitRows;
}

/** Matmul rows per invocation for a row count: 1, 2, 4 or 8. */
function tileIndex(rows: number): number {
  return rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : 3;
}

/** One step's dispatch list for a model, plus the activation buffers it owns. */
export class ForwardPass {
  /** Logits of the requested rows, [logitRows, vocab] f32. */
  readonly logits: GPUBuffer;
  #ops: Op[] = [];
  #device: GPUDevice;
  #pipelines: PipelineCache;
  #meta: GPUBufferBinding;
  #options: ForwardOptions;
  #owned: GPUBuffer[] = [];

  constructor(
    device: GPUDevice,
    pipelines: PipelineCache,
    spec: ModelSpec,
    weights: ModelWeights,
    cache: KvCache,
    meta: GPUBuffer,
    options: ForwardOptions,
  ) {
    this.#device = device;
    this.#pipelines = pipelines;
    this.#meta = { buffer: meta, offset: 0, size: options.metaSlotBytes };
    this.#options = options;
    const { maxTokens: T, maxLogitRows: R } = options.capacity;
    const H = spec.hiddenSize;
    const hd = spec.headDim;
    const nh = spec.numHeads;
    const nkv = spec.numKvHeads;
    const I = spec.intermediateSize;
    const V = spec.vocabSize;
    const qkvCols = (nh + 2 * nkv) * hd;
    const bs = cache.options.blockSize;

    const x = this.#buffer("x", T * H);
    const xn = this.#buffer("xn", T * H);
    const qkv = this.#buffer("qkv", T * qkvCols);
    const attn = this.#buffer("attn", T * nh * hd);
    const tmp = spec.sandwichNorm ? this.#buffer("tmp", T * H) : null;
    const gu = this.#buffer("gate_up", T * 2 * I);
    const act = this.#buffer("act", T * I);
    const fin = this.#buffer("final", R * H);
    this.logits = this.#buffer("logits", R * V, GPUBufferUsage.COPY_SRC);
    const invFreq = this.#buffer("inv_freq", hd / 2);
    device.queue.writeBuffer(invFreq, 0, ropeInverseFrequencies(spec.rope, hd));
    const maxContext = options.capacity.maxBlocksPerSeq * bs;
    const scores = options.attn === "eager" ? this.#buffer("eager_scores", T * nh * maxContext) : null;

    // Embedding, one op per table part.
    const records = options.tokenRecords ?? { buffer: this.#buffer("no_records", 4), recordWords: 1 };
    for (const part of weights.embed.parts) {
      const k = pipelines.get(EMBED, { F16: weights.embed.dtype === "f16" });
      this.#op("embed", [k], {
        p: this.#uniform(k, {
          dim: H,
          row_start: part.rowStart,
          row_end: part.rowStart + part.rows,
          scale: spec.embeddingScale,
          record_words: records.recordWords,
        }),
        table: part.buffer,
        out: x,
        records: records.buffer,
      }, (s) => rowsGrid(Math.ceil(H / 64), s.tokens));
    }

    for (let l = 0; l < spec.numLayers; l++) {
      const w = weights.layers[l];
      const window = spec.layerWindows[l] ?? 0;
      this.#rmsnorm(`l${l}.input_norm`, spec, x, w.inputNorm, xn, false, "tokens");
      this.#matmul(`l${l}.qkv`, xn, w.qkv, w.qkvBias, qkv, qkvCols, false, "tokens");
      const rope = pipelines.get(ROPE_KV, { QK_NORM: spec.qkNorm, HALF: hd / 2 });
      this.#op(`l${l}.rope_kv`, [rope], {
        p: this.#uniform(rope, { nh, nkv, head_dim: hd, block_size: bs, qkv_stride: qkvCols, eps: spec.rmsNormEps }),
        qkv,
        inv_freq: invFreq,
        k_cache: cache.keys[l],
        v_cache: cache.values[l],
        ...(spec.qkNorm ? { q_norm: w.qNorm!, k_norm: w.kNorm! } : {}),
      }, (s) => rowsGrid(nh + 2 * nkv, s.tokens));

      const attnParams = {
        nh,
        nkv,
        block_size: bs,
        qkv_stride: qkvCols,
        window,
        scale: spec.attnScale,
        softcap: spec.attnLogitSoftcap ?? 0,
      };
      const kv = { qkv, k_cache: cache.keys[l], v_cache: cache.values[l] };
      if (options.attn === "paged") {
        const k = pipelines.get(PAGED_ATTENTION, { GROUP: nh / nkv, HEAD_DIM: hd });
        this.#op(`l${l}.attention`, [k], { p: this.#uniform(k, attnParams), ...kv, out: attn }, (s) => rowsGrid(nkv, s.tokens));
      } else {
        const phases: [string, Partial<Record<string, boolean>>, (s: StepShape) => Grid][] = [
          ["scores", { PHASE_SCORES: true }, (s) => [Math.ceil(s.maxContext / 64), nh, s.tokens]],
          ["softmax", { PHASE_SOFTMAX: true }, (s) => [1, nh, s.tokens]],
          ["values", { PHASE_VALUES: true }, (s) => [Math.ceil(hd / 64), nh, s.tokens]],
        ];
        let params: GPUBuffer | null = null;
        for (const [name, flags, grid] of phases) {
          const k = pipelines.get(EAGER_ATTENTION, { PHASE_SCORES: false, PHASE_SOFTMAX: false, PHASE_VALUES: false, ...flags });
          params ??= this.#uniform(k, { ...attnParams, head_dim: hd, max_context: maxContext });
          this.#op(`l${l}.eager_${name}`, [k], { p: params, ...kv, scores: scores!, out: attn }, grid);
        }
      }

      if (spec.sandwichNorm) {
        this.#matmul(`l${l}.o`, attn, w.o, w.oBias, tmp!, H, false, "tokens");
        this.#rmsnorm(`l${l}.post_attn_norm`, spec, tmp!, w.postAttnNorm, x, true, "tokens");
        this.#rmsnorm(`l${l}.pre_ffn_norm`, spec, x, w.preFfnNorm!, xn, false, "tokens");
      } else {
        this.#matmul(`l${l}.o`, attn, w.o, w.oBias, x, H, true, "tokens");
        this.#rmsnorm(`l${l}.post_attn_norm`, spec, x, w.postAttnNorm, xn, false, "tokens");
      }
      this.#matmul(`l${l}.gate_up`, xn, w.gateUp, w.gateUpBias, gu, 2 * I, false, "tokens");
      const actK = pipelines.get(ACT_MUL, { GELU_TANH: spec.hiddenAct === "gelu_tanh" });
      this.#op(`l${l}.act`, [actK], { p: this.#uniform(actK, { inter: I }), gu, out: act }, (s) => rowsGrid(Math.ceil(I / 64), s.tokens));
      if (spec.sandwichNorm) {
        this.#matmul(`l${l}.down`, act, w.down, w.downBias, tmp!, H, false, "tokens");
        this.#rmsnorm(`l${l}.post_ffn_norm`, spec, tmp!, w.postFfnNorm!, x, true, "tokens");
      } else {
        this.#matmul(`l${l}.down`, act, w.down, w.downBias, x, H, true, "tokens");
      }
    }

    // Final norm only on the rows that need logits, then the LM head.
    this.#rmsnorm("final_norm", spec, x, weights.finalNorm, fin, false, "logits", true);
    this.#matmul("lm_head", fin, weights.lmHead, null, this.logits, V, false, "logits");
    if (spec.finalLogitSoftcap) {
      const k = pipelines.get(SOFTCAP, {});
      this.#op("softcap", [k], {
        p: this.#uniform(k, { cols: V, cap: spec.finalLogitSoftcap, rows_kind: ROW_KIND.logits }),
        x: this.logits,
      }, (s) => rowsGrid(Math.ceil(V / 64), s.logitRows));
    }
  }

  /** Number of dispatches one step records (for tests and benchmarks). */
  get dispatchCount(): number {
    return this.#ops.length;
  }

  /** Labels of the recorded dispatches, in order. */
  get opLabels(): string[] {
    return this.#ops.map((o) => o.label);
  }

  /** Encodes the whole step into `pass`, reading the metadata slot at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, shape: StepShape): void {
    for (const op of this.#ops) {
      const rows = op.rows ? rowsOf(shape, op.rows) : 0;
      const kernel = op.kernels.length > 1 ? op.kernels[tileIndex(rows)] : op.kernels[0];
      const [gx, gy, gz] = op.grid(shape);
      if (gx === 0 || gy === 0 || gz === 0) continue;
      pass.setPipeline(kernel.pipeline);
      pass.setBindGroup(0, op.bindGroup, [metaOffset]);
      pass.dispatchWorkgroups(gx, gy, gz);
    }
  }

  /**
   * Profiling hook: encodes the same dispatches as {@link encode}, each in its own compute
   * pass whose descriptor `passFor` supplies (e.g. with `timestampWrites`), so a profiler
   * can time every op. Returns the labels of the ops encoded, in order. Not used on the
   * serving path (one pass per op costs extra barriers).
   */
  encodeEach(
    encoder: GPUCommandEncoder,
    metaOffset: number,
    shape: StepShape,
    passFor: (index: number, label: string) => GPUComputePassDescriptor,
  ): string[] {
    const labels: string[] = [];
    for (const op of this.#ops) {
      const rows = op.rows ? rowsOf(shape, op.rows) : 0;
      const kernel = op.kernels.length > 1 ? op.kernels[tileIndex(rows)] : op.kernels[0];
      const [gx, gy, gz] = op.grid(shape);
      if (gx === 0 || gy === 0 || gz === 0) continue;
      const pass = encoder.beginComputePass(passFor(labels.length, op.label));
      pass.setPipeline(kernel.pipeline);
      pass.setBindGroup(0, op.bindGroup, [metaOffset]);
      pass.dispatchWorkgroups(gx, gy, gz);
      pass.end();
      labels.push(op.label);
    }
    return labels;
  }

  /** Frees the activation buffers (weights and cache belong to their owners). */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
  }

  #buffer(label: string, words: number, extraUsage = 0): GPUBuffer {
    const size = Math.max(16, Math.ceil((words * 4) / 16) * 16);
    const limit = this.#options.maxBindingBytes;
    if (size > limit) {
      throw new RangeError(
        `activation buffer ${label} needs ${size} bytes, over the binding limit ${limit}: ` +
          `lower maxBatchTokens or the number of logit rows`,
      );
    }
    const b = this.#device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | extraUsage,
    });
    this.#owned.push(b);
    return b;
  }

  /** A kernel's uniform parameters (by field name), written once. */
  #uniform(k: CompiledKernel, values: Record<string, number>): GPUBuffer {
    const b = k.uniform(values);
    this.#owned.push(b);
    return b;
  }

  #op<B extends string>(
    label: string,
    kernels: CompiledKernel<B>[],
    resources: Partial<Record<B | "p", BindingResource>>,
    grid: (shape: StepShape) => Grid,
    rows?: Rows,
  ): void {
    const all = { ...resources, step: this.#meta } as Partial<Record<B | "p" | "step", BindingResource>>;
    const bindGroup = kernels[0].bindGroup(label, all);
    this.#ops.push({ label, kernels, rows, bindGroup, grid });
  }

  #rmsnorm(
    label: string,
    spec: ModelSpec,
    input: GPUBuffer,
    weight: GPUBuffer,
    out: GPUBuffer,
    add: boolean,
    rows: Rows,
    gather = false,
  ): void {
    const k = this.#pipelines.get(RMSNORM, { ADD: add, GATHER: gather });
    this.#op(label, [k], {
      p: this.#uniform(k, { dim: spec.hiddenSize, eps: spec.rmsNormEps, offset: spec.normOffset, rows_kind: ROW_KIND[rows] }),
      x: input,
      w: weight,
      out,
    }, (s) => {
      // One workgroup per row; the kernel reads row = x + y * 65535.
      const r = rowsOf(s, rows);
      return r <= MAX_Y ? [r, 1, 1] : [MAX_Y, Math.ceil(r / MAX_Y), 1];
    });
  }

  /** out[:, n_off:] (+)= input @ w^T (+ bias), one op per weight part. */
  #matmul(
    label: string,
    input: GPUBuffer,
    w: MatrixWeight,
    bias: GPUBuffer | null,
    out: GPUBuffer,
    ldo: number,
    accumulate: boolean,
    rows: Rows,
  ): void {
    const vec = w.cols % 8 === 0;
    const tiles = [1, 2, 4, 8];
    const kernels = tiles.map((TM) =>
      this.#pipelines.get(MATMUL, { F16: w.dtype === "f16", VEC: vec, TM, ACCUM: accumulate, BIAS: !!bias })
    );
    for (const part of w.parts) {
      this.#op(`${label}[${part.rowStart}]`, kernels, {
        p: this.#uniform(kernels[0], { k: w.cols, n: part.rows, n_off: part.rowStart, ldo, rows_kind: ROW_KIND[rows] }),
        x: input,
        w: part.buffer,
        out,
        ...(bias ? { bias: { buffer: bias, offset: part.rowStart * 4, size: part.rows * 4 } } : {}),
      }, (s) => {
        const r = rowsOf(s, rows);
        return rowsGrid(Math.ceil(part.rows / 64), Math.ceil(r / tiles[tileIndex(r)]));
      }, rows);
    }
  }
}
