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
 * need logits, Gemma's soft-cap as its epilogue) and the sampler (model_runner.ts); steps
 * with embedding rows add `pool_hidden` (the final norm's output pooled per row, no LM head).
 * Qwen3 (q/k norm) and head dims not a multiple of 8 run RoPE as its own dispatch
 * (`rope_kv`): 6 per layer (Gemma-3's sliding layers read their own RoPE table). Gemma-2/3's sandwich norms need a matmul's whole output row: its
 * o and down write a scratch row that `rmsnorm` adds into the residual: 7 per layer.
 *
 * Matmuls use the kernel family's kernels (cpu: `gemv_c8` with 1..8 rows per invocation;
 * gpu: `gemv_wg` below 16 rows, `gemm_tiled` from 16), each of which gives a row the same
 * bits whatever the batch, so a sequence's output does not depend on what runs beside it.
 * `attn: "eager"` swaps attention for the plain three-phase reference kernel.
 *
 * Qwen3.5 (hybrid): a Gated DeltaNet layer runs its fused in-projection qkv|z|b|a (input norm
 * folded in), `deltanet_conv` (causal conv1d + SiLU, conv state per sequence),
 * `deltanet_rule` (gated delta rule per sequence and value head: a sequential scan for decode
 * steps, the chunkwise form for steps with a prefill chunk, see {@link DeltaRuleForm}; gated
 * RMSNorm) and out_proj added into the residual; a gated attention layer runs q|k|v|gate,
 * `rope_kv` (q/k norm, partial rotary), attention and `attn_gate` before o_proj.
 * A sparse layer (Qwen3-MoE, gpt-oss, Qwen3.5-MoE, after either kind of token mixer) runs
 * moe_op.ts's router, grouping and expert dispatches instead of gate|up and down, with a
 * shared expert's gate|up and down matmuls before the combine.
 * @module
 */
import { type AttentionImpl, type KernelFamily, LlmError } from "../types/api.ts";
import { attentionLayers, type ModelSpec } from "../model/config.ts";
import { denseMatrices, type MatrixWeight, type ModelWeights } from "../model/weights.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import type { KvCache } from "../gpu/kv_cache.ts";
import type { RecurrentState } from "../gpu/recurrent_state.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { ATTN_GATE, DELTANET_CONV, DELTANET_RULE, EMBED, MTP_INPUT, POOL_HIDDEN, RMSNORM, ROPE_KV } from "../kernels/descriptors.ts";
import { ATTENTION_SPLIT, deltaChunk } from "../kernels/family.ts";
import { xqRowWords } from "../kernels/quant_matmul.ts";
import { type Grid, matmulOp, type MatmulUse, rowsGrid } from "./matmul_op.ts";
import type { StepCapacity, StepShape } from "./step_meta.ts";
import { quantMatmulOp } from "./quant_matmul_op.ts";
import { type AttentionImplementation, EagerAttention, PagedAttention } from "./attention_op.ts";
import { createMoeScratch, moeLayerOps, type MoeScratch } from "./moe_op.ts";

export type { StepShape } from "./step_meta.ts";

/**
 * How Gated DeltaNet layers run a sequence's multi-token chunk (prefill): an in-kernel
 * sequential scan, or the chunkwise (WY) form. Decode rows (one token) always take the scan.
 */
export type DeltaRuleForm = "scan" | "chunked";

/** The values of {@link DeltaRuleForm}. */
export const DELTA_RULE_FORMS: readonly DeltaRuleForm[] = ["scan", "chunked"];

/** The default {@link DeltaRuleForm} (measured faster here, see docs/qwen35.md). */
export const DEFAULT_DELTA_RULE_FORM: DeltaRuleForm = "chunked";

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
  /** Hybrid models: the linear-attention layers' recurrent state (required when the spec has them). */
  state?: RecurrentState;
  /** Hybrid models: how prefill chunks run the delta rule (default {@link DEFAULT_DELTA_RULE_FORM}). */
  deltaRuleForm?: DeltaRuleForm;
  /**
   * MTP speculation: every token row's final-norm hidden state is stored at its KV slot in
   * this buffer ([KV slots, hidden] f32; the `hidden_store` op after the last layer).
   */
  hiddenStore?: GPUBuffer;
  /**
   * An MTP head (weights with `mtp`): the rows' input is `fc(cat(norm_e(embedding),
   * norm_h(hidden)))`, the hidden row read from the target's store or, for a chained draft,
   * from {@link hiddenStore} (the step metadata's `hiddenSrc`).
   */
  mtpInput?: { targetHidden: GPUBuffer };
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
  /** The grid is read from this buffer at dispatch time (the MoE expert matmuls). */
  indirect?: { buffer: GPUBuffer; offset: number };
}

const MAX_Y = 65535;

function rowsOf(shape: StepShape, rows: Rows): number {
  return rows === "tokens" ? shape.tokens : shape.logitRows;
}

/** One dispatch of a step: `grid`, or the grid in `indirect`'s buffer when set. */
export interface Dispatch {
  label: string;
  kernel: CompiledKernel;
  bindGroup: GPUBindGroup;
  grid: Grid;
  indirect?: { buffer: GPUBuffer; offset: number };
}

function dispatch(pass: GPUComputePassEncoder, d: Dispatch): void {
  if (d.indirect) pass.dispatchWorkgroupsIndirect(d.indirect.buffer, d.indirect.offset);
  else pass.dispatchWorkgroups(...d.grid);
}

/** One step's dispatch list for a model, plus the activation buffers it owns. */
export class ForwardPass {
  /** Logits of the requested rows, [logitRows, vocab] f32. */
  readonly logits: GPUBuffer;
  /** Pooled final hidden states of the step's pooled rows, [poolRows, hidden] f32 (embeddings). */
  readonly hidden: GPUBuffer;
  /** Keys per attention split. */
  readonly splitLen: number;
  readonly family: KernelFamily;
  /** The sparse layers' routing and expert buffers (shared by the layers), or null. */
  readonly moeScratch: MoeScratch | null;
  #ops: Op[] = [];
  #device: GPUDevice;
  #pipelines: PipelineCache;
  #meta: GPUBufferBinding;
  #options: ForwardOptions;
  #spec: ModelSpec;
  #weights: ModelWeights;
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
    this.#weights = weights;
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
    // With an output gate, q|k|v rows carry the gate after v (gatedQkvColumns).
    const qkvRows = (nh + 2 * nkv) * hd;
    const qkvCols = spec.attnOutputGate ? qkvRows + nh * hd : qkvRows;
    const lin = spec.linearAttention;
    const kvLayer = attentionLayers(spec);
    const bs = cache.options.blockSize;
    const kvF16 = cache.dtype === "f16";
    const fusedRope = weights.ropeInQkv;
    const eps = spec.rmsNormEps;
    if (options.attn === "paged" && hd % 4 !== 0) {
      throw new LlmError("unsupported_architecture", `paged attention needs head_dim % 4 == 0, got ${hd}`);
    }

    const x = this.#buffer("x", T * H);
    // q rows when RoPE is fused into the q|k|v matmul, else the whole q|k|v rows.
    const q = this.#buffer(fusedRope ? "q" : "qkv", T * (fusedRope ? nh * hd : qkvCols));
    const qStride = fusedRope ? nh * hd : qkvCols;
    // Gated DeltaNet: in-projection rows (q|k|v|z|b|a) and the conv output (q|k|v).
    const keyDim = lin ? lin.numKeyHeads * lin.keyHeadDim : 0;
    const valueDim = lin ? lin.numValueHeads * lin.valueHeadDim : 0;
    const convDim = 2 * keyDim + valueDim;
    const inStride = convDim + valueDim + 2 * (lin?.numValueHeads ?? 0);
    const proj = lin ? this.#buffer("linear_proj", T * inStride) : null;
    const convOut = lin ? this.#buffer("linear_conv", T * convDim) : null;
    if (lin && !options.state) throw new LlmError("unsupported_architecture", "a hybrid model needs its recurrent state");
    const attn = this.#buffer("attn", T * Math.max(nh * hd, valueDim));
    const act = this.#buffer("act", T * I);
    const tmp = spec.sandwichNorm ? this.#buffer("tmp", T * H) : null;
    this.logits = this.#buffer("logits", R * V, GPUBufferUsage.COPY_SRC);
    this.hidden = this.#buffer("hidden", maxSeqs * H, GPUBufferUsage.COPY_SRC);
    // One inverse-frequency table per RoPE (Gemma-3's sliding layers have their own).
    const invFreq = this.#buffer("inv_freq", hd / 2);
    device.queue.writeBuffer(invFreq, 0, ropeInverseFrequencies(spec.rope, spec.rotaryDim));
    let localInvFreq = invFreq;
    if (spec.localRope) {
      localInvFreq = this.#buffer("local_inv_freq", hd / 2);
      device.queue.writeBuffer(localInvFreq, 0, ropeInverseFrequencies(spec.localRope, spec.rotaryDim));
    }
    const maxContext = options.capacity.maxBlocksPerSeq * bs;
    if (options.quantizedActivations) {
      const ks = weights.layers.flatMap(denseMatrices).filter((w) => w.kind === "quant").map((w) => w.k);
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

    const mtp = options.mtpInput;
    if (mtp) {
      if (!weights.mtp || !options.hiddenStore) throw new Error("an MTP head needs its input weights and a hidden store");
      const cat = this.#buffer("mtp_cat", T * 2 * H);
      const k = pipelines.get(MTP_INPUT, {});
      this.#op("mtp.input", [k], {
        p: this.#uniform(k, { dim: H, eps }),
        x,
        gamma_e: weights.mtp.normEmbed,
        gamma_h: weights.mtp.normHidden,
        target_hidden: mtp.targetHidden,
        own_hidden: options.hiddenStore,
        out: cat,
      }, (s) => (s.tokens <= MAX_Y ? [s.tokens, 1, 1] : [MAX_Y, Math.ceil(s.tokens / MAX_Y), 1]));
      this.#matmul("mtp.fc", weights.mtp.fc, { x: cat, out: x, ldo: H, nOut: H, rows: "tokens" });
    }

    const attnShape = { numHeads: nh, numKvHeads: nkv, headDim: hd, blockSize: bs, kvF16, maxTokens: T, maxContext, sinks: !!spec.attnSinks };
    const limits = { maxBindingBytes: options.maxBindingBytes, maxWorkgroupBytes: options.maxWorkgroupBytes };
    this.#attention = options.attn === "paged"
      ? new PagedAttention(device, pipelines, attnShape, { ...limits, splitLen: this.splitLen })
      : new EagerAttention(device, pipelines, attnShape, limits);

    const moeScratch = spec.moe ? createMoeScratch(spec.moe, H, T, (label, words, usage) => this.#buffer(label, words, usage)) : null;
    this.moeScratch = moeScratch;
    for (let l = 0; l < spec.numLayers; l++) {
      const w = weights.layers[l];
      if (w.linear) {
        this.#linearAttention(l, { x, proj: proj!, convOut: convOut!, out: attn, inStride, convDim, keyDim, valueDim });
        this.#ffn(l, x, act, tmp);
        continue;
      }
      const kCache = cache.keys[kvLayer.indexOf(l)];
      const vCache = cache.values[kvLayer.indexOf(l)];
      const layerInvFreq = spec.layerWindows[l] !== null ? localInvFreq : invFreq;
      this.#matmul(`l${l}.qkv`, w.qkv, {
        x,
        out: q,
        ldo: qStride,
        nOut: qkvCols,
        rows: "tokens",
        norm: { gamma: w.inputNorm, eps },
        bias: w.qkvBias,
        rope: fusedRope ? { invFreq: layerInvFreq, kCache, vCache, kvF16, numHeads: nh, numKvHeads: nkv, headDim: hd, blockSize: bs } : undefined,
      });
      if (!fusedRope) {
        const partial = spec.rotaryDim !== hd;
        const rope = pipelines.get(ROPE_KV, { QK_NORM: spec.qkNorm, HALF: hd / 2, KV_F16: kvF16, PARTIAL: partial, ROT_HALF: spec.rotaryDim / 2 });
        this.#op(`l${l}.rope_kv`, [rope], {
          p: this.#uniform(rope, { nh, nkv, head_dim: hd, block_size: bs, qkv_stride: qStride, eps: spec.rmsNormEps }),
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
        sinks: w.sinks,
      };
      for (const d of this.#attention.layer(layer, `l${l}.attention`)) this.#op(d.label, d.kernels, d.resources, d.grid, d.pick);
      if (spec.attnOutputGate) {
        const k = pipelines.get(ATTN_GATE, {});
        this.#op(`l${l}.attn_gate`, [k], {
          p: this.#uniform(k, { dim: nh * hd, gate_stride: qStride, gate_off: qkvRows }),
          gate: q,
          out: attn,
        }, (s) => rowsGrid(Math.ceil((nh * hd) / 64), s.tokens));
      }

      if (spec.sandwichNorm) {
        this.#matmul(`l${l}.o`, w.o, { x: attn, out: tmp!, ldo: H, nOut: H, rows: "tokens", bias: w.oBias });
        this.#rmsnorm(`l${l}.post_attn_norm`, tmp!, w.postAttnNorm, x);
      } else {
        this.#matmul(`l${l}.o`, w.o, { x: attn, out: x, ldo: H, nOut: H, rows: "tokens", bias: w.oBias, accumulate: true });
      }
      this.#ffn(l, x, act, tmp);
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

    if (options.hiddenStore) {
      const k = pipelines.get(RMSNORM, { AT_SLOT: true });
      this.#op("hidden_store", [k], {
        p: this.#uniform(k, { dim: H, eps }),
        x,
        gamma: weights.finalNorm,
        out: options.hiddenStore,
      }, (s) => (s.tokens <= MAX_Y ? [s.tokens, 1, 1] : [MAX_Y, Math.ceil(s.tokens / MAX_Y), 1]));
    }

    // Embedding rows: the final norm's output pooled over their tokens (skipped when none).
    const pool = pipelines.get(POOL_HIDDEN, {});
    this.#op("pool_hidden", [pool], {
      p: this.#uniform(pool, { dim: H, eps }),
      x,
      gamma: weights.finalNorm,
      out: this.hidden,
    }, (s) => [s.poolRows ?? 0, 1, 1]);
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
  plan(shape: StepShape): Dispatch[] {
    const out = [];
    for (const op of this.#ops) {
      const variant = op.pick(shape);
      const grid = op.grid(shape, variant);
      if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) continue;
      out.push({ label: op.label, kernel: op.kernels[variant], bindGroup: op.bindGroup, grid, indirect: op.indirect });
    }
    return out;
  }

  /** Encodes the whole step into `pass`, reading the metadata slot at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, shape: StepShape): number {
    const plan = this.plan(shape);
    for (const d of plan) {
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.bindGroup, [metaOffset]);
      dispatch(pass, d);
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
      dispatch(pass, d);
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
    indirect?: Op["indirect"],
  ): void {
    const all = { ...resources, step: this.#meta } as Partial<Record<B | "p" | "step", BindingResource>>;
    const bindGroup = kernels[0].bindGroup(label, all);
    this.#ops.push({ label, kernels, pick, bindGroup, grid, indirect });
  }

  /**
   * The feed-forward of layer `l`: the dense MLP, or a sparse layer's router, grouping and
   * experts (moe_op.ts), with a shared expert's gate|up and down on the normed rows before
   * the combine adds both into the residual `x`.
   */
  #ffn(l: number, x: GPUBuffer, act: GPUBuffer, tmp: GPUBuffer | null): void {
    const w = this.#weights.layers[l];
    if (!w.moe) return this.#mlp(l, x, act, tmp);
    const spec = this.#spec;
    const H = spec.hiddenSize;
    const s = this.moeScratch!;
    const moe = moeLayerOps(this.#pipelines, spec.moe!, w.moe, s, { x, gamma: w.postAttnNorm, eps: spec.rmsNormEps, hiddenSize: H, family: this.family }, `l${l}.moe`);
    this.#owned.push(...moe.uniforms);
    for (const d of moe.dispatches) this.#op(d.label, [d.kernel], d.resources, d.grid, undefined, d.indirect);
    if (s.shared) {
      const S = spec.moe!.sharedExpertIntermediateSize!;
      this.#matmul(`l${l}.shared_gate_up`, w.gateUp!, { x: s.xn, out: s.shared.act, ldo: S, nOut: S, rows: "tokens", glu: { gelu: false } });
      this.#matmul(`l${l}.shared_down`, w.down!, { x: s.shared.act, out: s.shared.y, ldo: H, nOut: H, rows: "tokens" });
    }
    const c = moe.combine;
    this.#op(c.label, [c.kernel], c.resources, c.grid);
  }

  /** The MLP of layer `l`: gate|up (its norm folded in) and down, added into the residual `x`. */
  #mlp(l: number, x: GPUBuffer, act: GPUBuffer, tmp: GPUBuffer | null): void {
    const spec = this.#spec;
    const w = this.#weights.layers[l];
    const H = spec.hiddenSize;
    const I = spec.intermediateSize;
    const eps = spec.rmsNormEps;
    this.#matmul(`l${l}.gate_up`, w.gateUp!, {
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
      this.#matmul(`l${l}.down`, w.down!, { x: act, out: tmp!, ldo: H, nOut: H, rows: "tokens", bias: w.downBias });
      this.#rmsnorm(`l${l}.post_ffn_norm`, tmp!, w.postFfnNorm!, x);
    } else {
      this.#matmul(`l${l}.down`, w.down!, { x: act, out: x, ldo: H, nOut: H, rows: "tokens", bias: w.downBias, accumulate: true });
    }
  }

  /**
   * A Gated DeltaNet layer: in-projection (input norm folded in), conv + SiLU, gated delta
   * rule + gated norm, out_proj added into the residual `x`.
   */
  #linearAttention(
    l: number,
    b: { x: GPUBuffer; proj: GPUBuffer; convOut: GPUBuffer; out: GPUBuffer; inStride: number; convDim: number; keyDim: number; valueDim: number },
  ): void {
    const spec = this.#spec;
    const lin = spec.linearAttention!;
    const w = this.#weights.layers[l];
    const state = this.#options.state!;
    const H = spec.hiddenSize;
    this.#matmul(`l${l}.in_proj`, w.qkv, {
      x: b.x,
      out: b.proj,
      ldo: b.inStride,
      nOut: b.inStride,
      rows: "tokens",
      norm: { gamma: w.inputNorm, eps: spec.rmsNormEps },
    });
    const conv = this.#pipelines.get(DELTANET_CONV, { CONV_K: lin.convKernel });
    this.#op(`l${l}.conv`, [conv], {
      p: this.#uniform(conv, { channels: b.convDim, in_stride: b.inStride }),
      x: b.proj,
      w: w.linear!.conv,
      conv_state: state.conv[l]!,
      out: b.convOut,
    }, (s) => [Math.ceil(b.convDim / 64), s.seqs, 1]);
    const dims = { DK: lin.keyHeadDim, DV: lin.valueHeadDim };
    const rules = [this.#pipelines.get(DELTANET_RULE, { ...dims, CHUNKED: false, CHUNK: 0 })];
    if ((this.#options.deltaRuleForm ?? DEFAULT_DELTA_RULE_FORM) === "chunked") {
      const chunk = deltaChunk(lin.keyHeadDim, lin.valueHeadDim, this.#options.maxWorkgroupBytes);
      rules.push(this.#pipelines.get(DELTANET_RULE, { ...dims, CHUNKED: true, CHUNK: chunk }));
    }
    const rule = rules[0];
    this.#op(`l${l}.delta_rule`, rules, {
      p: this.#uniform(rule, {
        conv_stride: b.convDim,
        in_stride: b.inStride,
        z_off: b.convDim,
        b_off: b.convDim + b.valueDim,
        a_off: b.convDim + b.valueDim + lin.numValueHeads,
        num_k_heads: lin.numKeyHeads,
        num_v_heads: lin.numValueHeads,
        tiled: lin.valueHeadOrder === "tiled" ? 1 : 0,
        eps: spec.rmsNormEps,
      }),
      x: b.convOut,
      proj: b.proj,
      a_log: w.linear!.aLog,
      dt_bias: w.linear!.dtBias,
      norm_w: w.linear!.norm,
      state: state.delta[l]!,
      out: b.out,
      // Decode-only steps take the scan pipeline (its one-token path is the chunked one's).
    }, (s) => [lin.numValueHeads, s.seqs, 1], (s) => (s.maxQueryLen > 1 ? rules.length - 1 : 0));
    this.#matmul(`l${l}.out_proj`, w.o, { x: b.out, out: b.x, ldo: H, nOut: H, rows: "tokens", accumulate: true });
  }

  /** Gemma-2's post-norms: out += rmsnorm(input) * gamma, one workgroup per token. */
  #rmsnorm(label: string, input: GPUBuffer, gamma: GPUBuffer, out: GPUBuffer): void {
    const k = this.#pipelines.get(RMSNORM, { AT_SLOT: false });
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
