/**
 * Records one forward step as a fixed list of dispatches. Pipelines, bind groups and
 * buffers are built once here; a step only picks, per op, a kernel variant and workgroup
 * counts for its shape and reads its own metadata slot (a dynamic offset), so nothing is
 * created per step and nothing waits on the CPU inside the pass.
 *
 * Per layer (Llama, Mistral, Qwen2), five dispatches:
 *   1. q|k|v matmul: input RMSNorm folded in (NORM + GAMMA), RoPE and the KV-cache write as
 *      its epilogue (q to a buffer, k and v into their cache slots);
 *   2. attention (`attention_lanes`, split over keys; `attention_combine` as a sixth when the
 *      step's longest context needs several splits);
 *   3. o matmul, added into the residual stream;
 *   4. gate|up matmul: post-attention RMSNorm folded in, act(gate) * up as its epilogue;
 *   5. down matmul, added into the residual stream;
 * plus per step the embedding gather, the LM head (final norm folded in, only the rows that
 * need logits, Gemma's soft-cap as its epilogue) and the sampler (model_runner.ts).
 * Qwen3 (q/k norm) and head dims not a multiple of 8 run RoPE as its own dispatch
 * (`rope_kv`): 6 per layer (Gemma-3's sliding layers read their own RoPE table). Gemma-2/3's sandwich norms need a matmul's whole output row: its
 * o and down write a scratch row that `rmsnorm` adds into the residual: 7 per layer.
 *
 * Matmuls use the kernel family's kernels (cpu: `gemv_c8` with 1..8 rows per invocation;
 * gpu: `gemv_wg` below 16 rows, `gemm_tiled` from 16), each of which gives a row the same
 * bits whatever the batch, so a sequence's output does not depend on what runs beside it.
 * `attn: "eager"` swaps attention for the plain three-phase reference kernel.
 * @module
 */
import { type AttentionImpl, type KernelFamily, LlmError } from "../types/api.ts";
import type { ModelSpec } from "../model/config.ts";
import type { MatrixWeight, ModelWeights } from "../model/weights.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import type { KvCache } from "../gpu/kv_cache.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { EMBED, RMSNORM, ROPE_KV } from "../kernels/descriptors.ts";
import { ATTENTION_SPLIT } from "../kernels/family.ts";
import { xqRowWords } from "../kernels/quant_matmul.ts";
import { type Grid, matmulOp, type MatmulUse, rowsGrid } from "./matmul_op.ts";
import type { StepCapacity, StepShape } from "./step_meta.ts";
import { quantMatmulOp } from "./quant_matmul_op.ts";
import { type AttentionImplementation, EagerAttention, PagedAttention } from "./attention_op.ts";

export type { StepShape } from "./step_meta.ts";

/** Options for {@link ForwardPass}. */
export interface ForwardOptions {
  attn: AttentionImpl;
  family: KernelFamily;
  capacity: StepCapacity;
  /** Bytes of one metadata slot (the dynamic-offset binding size). */
  metaSlotBytes: number;
  /** Largest storage binding. */
  maxBindingBytes: number;
  /** Workgroup memory per workgroup (attention's merge buffers must fit). */
  maxWorkgroupBytes: number;
  /** Keys per attention split (default: the family's, see `kernels/family.ts`). */
  splitLen?: number;
  /** Sampler output records that token ids with the top bit set refer to. */
  tokenRecords?: { buffer: GPUBuffer; recordWords: number };
  /**
   * Quantized weights: quantize activations to Q8 blocks too (llama.cpp's fast path) instead
   * of the exact f32 path (default false).
   */
  quantizedActivations?: boolean;
  /** The adapter has WGSL's packed_4x8_integer_dot_product (quantized kernels; same bits). */
  packed4x8?: boolean;
}

type Rows = MatmulUse["rows"];

interface Op {
  label: string;
  /** Variants of one op (row tiles, query tiles); `pick` chooses one per step. */
  kernels: CompiledKernel[];
  pick: (shape: StepShape) => number;
  bindGroup: GPUBindGroup;
  /** Workgroups for the picked variant; a zero dimension skips the op. */
  grid: (shape: StepShape, variant: number) => Grid;
}

const MAX_Y = 65535;

function rowsOf(shape: StepShape, rows: Rows): number {
  return rows === "tokens" ? shape.tokens : shape.logitRows;
}

/** One step's dispatch list for a model, plus the activation buffers it owns. */
export class ForwardPass {
  /** Logits of the requested rows, [logitRows, vocab] f32. */
  readonly logits: GPUBuffer;
  /** Keys per attention split. */
  readonly splitLen: number;
  readonly family: KernelFamily;
  #ops: Op[] = [];
  #device: GPUDevice;
  #pipelines: PipelineCache;
  #meta: GPUBufferBinding;
  #options: ForwardOptions;
  #spec: ModelSpec;
  #cache: KvCache;
  #attention: AttentionImplementation;
  #owned: GPUBuffer[] = [];
  /** The fast quantized path's activation rows as Q8 blocks (shared: ops run in order). */
  #xq: GPUBuffer | null = null;

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
    this.#spec = spec;
    this.#cache = cache;
    this.family = options.family;
    this.splitLen = options.splitLen ?? ATTENTION_SPLIT[options.family];
    const { maxTokens: T, maxLogitRows: R, maxSeqs } = options.capacity;
    if (T + maxSeqs > MAX_Y) throw new RangeError(`maxTokens ${T} + maxSeqs ${maxSeqs} exceeds ${MAX_Y} attention tiles`);
    const H = spec.hiddenSize;
    const hd = spec.headDim;
    const nh = spec.numHeads;
    const nkv = spec.numKvHeads;
    const I = spec.intermediateSize;
    const V = spec.vocabSize;
    const qkvRows = (nh + 2 * nkv) * hd;
    const bs = cache.options.blockSize;
    const kvF16 = cache.dtype === "f16";
    const fusedRope = weights.ropeInQkv;
    const eps = spec.rmsNormEps;
    if (options.attn === "paged" && hd % 4 !== 0) {
      throw new LlmError("unsupported_architecture", `paged attention needs head_dim % 4 == 0, got ${hd}`);
    }

    const x = this.#buffer("x", T * H);
    // q rows when RoPE is fused into the q|k|v matmul, else the whole q|k|v rows.
    const q = this.#buffer(fusedRope ? "q" : "qkv", T * (fusedRope ? nh * hd : qkvRows));
    const qStride = fusedRope ? nh * hd : qkvRows;
    const attn = this.#buffer("attn", T * nh * hd);
    const act = this.#buffer("act", T * I);
    const tmp = spec.sandwichNorm ? this.#buffer("tmp", T * H) : null;
    this.logits = this.#buffer("logits", R * V, GPUBufferUsage.COPY_SRC);
    // One inverse-frequency table per RoPE (Gemma-3's sliding layers have their own).
    const invFreq = this.#buffer("inv_freq", hd / 2);
    device.queue.writeBuffer(invFreq, 0, ropeInverseFrequencies(spec.rope, hd));
    let localInvFreq = invFreq;
    if (spec.localRope) {
      localInvFreq = this.#buffer("local_inv_freq", hd / 2);
      device.queue.writeBuffer(localInvFreq, 0, ropeInverseFrequencies(spec.localRope, hd));
    }
    const maxContext = options.capacity.maxBlocksPerSeq * bs;
    if (options.quantizedActivations) {
      const ks = weights.layers.flatMap((w) => [w.qkv, w.o, w.gateUp, w.down]).filter((w) => w.kind === "quant").map((w) => w.k);
      if (ks.length) this.#xq = this.#buffer("xq", T * xqRowWords(Math.max(...ks)));
    }

    // Embedding, one op per table part (the table shares the LM head's layout).
    const records = options.tokenRecords ?? { buffer: this.#buffer("no_records", 4), recordWords: 1 };
    const embed = weights.embed;
    for (const part of embed.parts) {
      const k = pipelines.get(EMBED, { F16: embed.dtype === "f16", COLUMN_BLOCKS: embed.layout === "column_blocks" });
      this.#op(`embed[${part.blockStart}]`, [k], {
        p: this.#uniform(k, {
          dim: H,
          row_start: part.blockStart * 8,
          row_end: Math.min(embed.n, (part.blockStart + part.blocks) * 8),
          stride: embed.rowStride,
          scale: spec.embeddingScale,
          record_words: records.recordWords,
        }),
        table: part.buffer,
        out: x,
        records: records.buffer,
      }, (s) => rowsGrid(Math.ceil(H / 64), s.tokens));
    }

    const attnShape = { numHeads: nh, numKvHeads: nkv, headDim: hd, blockSize: bs, kvF16, maxTokens: T, maxContext };
    const limits = { maxBindingBytes: options.maxBindingBytes, maxWorkgroupBytes: options.maxWorkgroupBytes };
    this.#attention = options.attn === "paged"
      ? new PagedAttention(device, pipelines, attnShape, { ...limits, splitLen: this.splitLen })
      : new EagerAttention(device, pipelines, attnShape, limits);

    for (let l = 0; l < spec.numLayers; l++) {
      const w = weights.layers[l];
      const kCache = cache.keys[l];
      const vCache = cache.values[l];
      const layerInvFreq = spec.layerWindows[l] !== null ? localInvFreq : invFreq;
      this.#matmul(`l${l}.qkv`, w.qkv, {
        x,
        out: q,
        ldo: qStride,
        nOut: qkvRows,
        rows: "tokens",
        norm: { gamma: w.inputNorm, eps },
        bias: w.qkvBias,
        rope: fusedRope ? { invFreq: layerInvFreq, kCache, vCache, kvF16, numHeads: nh, numKvHeads: nkv, headDim: hd, blockSize: bs } : undefined,
      });
      if (!fusedRope) {
        const rope = pipelines.get(ROPE_KV, { QK_NORM: spec.qkNorm, HALF: hd / 2, KV_F16: kvF16 });
        this.#op(`l${l}.rope_kv`, [rope], {
          p: this.#uniform(rope, { nh, nkv, head_dim: hd, block_size: bs, qkv_stride: qkvRows, eps: spec.rmsNormEps }),
          qkv: q,
          inv_freq: layerInvFreq,
          k_cache: kCache,
          v_cache: vCache,
          ...(spec.qkNorm ? { q_norm: w.qNorm!, k_norm: w.kNorm! } : {}),
        }, (s) => rowsGrid(nh + 2 * nkv, s.tokens));
      }

      const layer = {
        query: q,
        qStride,
        kCache,
        vCache,
        out: attn,
        window: spec.layerWindows[l] ?? 0,
        scale: spec.attnScale,
        softcap: spec.attnLogitSoftcap ?? 0,
      };
      for (const d of this.#attention.layer(layer, `l${l}.attention`)) this.#op(d.label, d.kernels, d.resources, d.grid, d.pick);

      if (spec.sandwichNorm) {
        this.#matmul(`l${l}.o`, w.o, { x: attn, out: tmp!, ldo: H, nOut: H, rows: "tokens", bias: w.oBias });
        this.#rmsnorm(`l${l}.post_attn_norm`, tmp!, w.postAttnNorm, x);
      } else {
        this.#matmul(`l${l}.o`, w.o, { x: attn, out: x, ldo: H, nOut: H, rows: "tokens", bias: w.oBias, accumulate: true });
      }
      this.#matmul(`l${l}.gate_up`, w.gateUp, {
        x,
        out: act,
        ldo: I,
        nOut: I,
        rows: "tokens",
        norm: { gamma: spec.sandwichNorm ? w.preFfnNorm! : w.postAttnNorm, eps },
        bias: w.gateUpBias,
        glu: { gelu: spec.hiddenAct === "gelu_tanh" },
      });
      if (spec.sandwichNorm) {
        this.#matmul(`l${l}.down`, w.down, { x: act, out: tmp!, ldo: H, nOut: H, rows: "tokens", bias: w.downBias });
        this.#rmsnorm(`l${l}.post_ffn_norm`, tmp!, w.postFfnNorm!, x);
      } else {
        this.#matmul(`l${l}.down`, w.down, { x: act, out: x, ldo: H, nOut: H, rows: "tokens", bias: w.downBias, accumulate: true });
      }
    }

    // Final norm and LM head only on the rows that need logits.
    this.#matmul("lm_head", weights.lmHead, {
      x,
      out: this.logits,
      ldo: V,
      nOut: V,
      rows: "logits",
      norm: { gamma: weights.finalNorm, eps },
      softcap: spec.finalLogitSoftcap,
    });
  }

  /** Number of ops recorded (a step skips the ones its shape does not need). */
  get opCount(): number {
    return this.#ops.length;
  }

  /** Labels of the recorded ops, in order. */
  get opLabels(): string[] {
    return this.#ops.map((o) => o.label);
  }

  /** The dispatches a step of `shape` encodes: label, kernel and grid, in order. */
  plan(shape: StepShape): { label: string; kernel: CompiledKernel; bindGroup: GPUBindGroup; grid: Grid }[] {
    const out = [];
    for (const op of this.#ops) {
      const variant = op.pick(shape);
      const grid = op.grid(shape, variant);
      if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) continue;
      out.push({ label: op.label, kernel: op.kernels[variant], bindGroup: op.bindGroup, grid });
    }
    return out;
  }

  /** Encodes the whole step into `pass`, reading the metadata slot at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, shape: StepShape): number {
    const plan = this.plan(shape);
    for (const d of plan) {
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.bindGroup, [metaOffset]);
      pass.dispatchWorkgroups(...d.grid);
    }
    return plan.length;
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
    return this.plan(shape).map((d, i) => {
      const pass = encoder.beginComputePass(passFor(i, d.label));
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.bindGroup, [metaOffset]);
      pass.dispatchWorkgroups(...d.grid);
      pass.end();
      return d.label;
    });
  }

  /** Frees the activation buffers (weights and cache belong to their owners). */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
    this.#attention.destroy();
  }

  #buffer(label: string, words: number, extraUsage = 0): GPUBuffer {
    const size = Math.max(16, Math.ceil((words * 4) / 16) * 16);
    const limit = this.#options.maxBindingBytes;
    if (size > limit) {
      throw new RangeError(
        `activation buffer ${label} needs ${size} bytes, over the binding limit ${limit}: ` +
          `lower maxBatchTokens, the number of logit rows or the context length`,
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
    grid: (shape: StepShape, variant: number) => Grid,
    pick: (shape: StepShape) => number = () => 0,
  ): void {
    const all = { ...resources, step: this.#meta } as Partial<Record<B | "p" | "step", BindingResource>>;
    const bindGroup = kernels[0].bindGroup(label, all);
    this.#ops.push({ label, kernels, pick, bindGroup, grid });
  }

  /** Gemma-2's post-norms: out += rmsnorm(input) * gamma, one workgroup per token. */
  #rmsnorm(label: string, input: GPUBuffer, gamma: GPUBuffer, out: GPUBuffer): void {
    const k = this.#pipelines.get(RMSNORM, {});
    this.#op(label, [k], {
      p: this.#uniform(k, { dim: this.#spec.hiddenSize, eps: this.#spec.rmsNormEps }),
      x: input,
      gamma,
      out,
    }, (s) => (s.tokens <= MAX_Y ? [s.tokens, 1, 1] : [MAX_Y, Math.ceil(s.tokens / MAX_Y), 1]));
  }

  /** out (+)= epilogue(norm(x) @ w^T + bias), one op per weight part. */
  #matmul(label: string, w: MatrixWeight, use: MatmulUse): void {
    const env = { dot4: !!this.#options.packed4x8, maxWorkgroupBytes: this.#options.maxWorkgroupBytes };
    const xq = w.kind === "quant" && this.#xq ? this.#xq : undefined;
    const op = w.kind === "quant"
      ? quantMatmulOp(this.#pipelines, this.family, w, { ...use, xq }, label, env)
      : matmulOp(this.#pipelines, this.family, w, use, label);
    this.#owned.push(...op.uniforms);
    const rows = (s: StepShape) => rowsOf(s, use.rows);
    const pre = op.prelude;
    if (pre) this.#op(pre.label, [pre.kernel], pre.resources, (s) => pre.grid(rows(s)));
    for (const part of op.parts) {
      this.#op(part.label, op.kernels, part.resources, (s, i) => part.grid(rows(s), i), (s) => op.variant(rows(s)));
    }
  }
}
