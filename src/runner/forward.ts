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
 * (`rope_kv`): 6 per layer. Gemma-2's sandwich norms need a matmul's whole output row: its
 * o and down write a scratch row that `rmsnorm` adds into the residual: 7 per layer.
 *
 * Matmuls use the kernel family's kernels (cpu: `gemv_c8` with 1..8 rows per invocation;
 * gpu: `gemv_wg` below 16 rows, `gemm_tiled` from 16), each of which gives a row the same
 * bits whatever the batch, so a sequence's output does not depend on what runs beside it.
 * `attn: "eager"` swaps attention for the plain three-phase reference kernel.
 * @module
 */
import { type AttentionImpl, type KernelFamily, LlmError } from "../api/types.ts";
import type { ModelSpec } from "../model/config.ts";
import type { MatrixWeight, ModelWeights } from "../model/weights.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import type { KvCache } from "../gpu/kv_cache.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import {
  ATTENTION_COMBINE,
  ATTENTION_LANES,
  EAGER_ATTENTION,
  EMBED,
  GEMM_TILED,
  GEMV_C8,
  GEMV_WG,
  type MatmulFlags,
  RMSNORM,
  ROPE_KV,
} from "../kernels/descriptors.ts";
import {
  ATTENTION_QUERY_TILE,
  ATTENTION_SPLIT,
  attentionLanes,
  CPU_MATMUL_WG,
  GEMM_MIN_ROWS,
  GEMM_TILE,
  GPU_MATMUL_WG,
  ROW_TILES,
  rowTileIndex,
} from "../kernels/family.ts";
import type { StepCapacity } from "./step_meta.ts";

/** The sizes of one step that decide kernel variants and workgroup counts. */
export interface StepShape {
  tokens: number;
  logitRows: number;
  /** Sequences in the step. */
  seqs: number;
  /** Longest run of tokens of one sequence (1 for a decode-only step). */
  maxQueryLen: number;
  /** Largest context length (tokens in cache after the step) of any sequence. */
  maxContext: number;
}

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
}

type Grid = [number, number, number];
type Rows = "tokens" | "logits";

interface Op {
  label: string;
  /** Variants of one op (row tiles, query tiles); `pick` chooses one per step. */
  kernels: CompiledKernel[];
  pick: (shape: StepShape) => number;
  bindGroup: GPUBindGroup;
  /** Workgroups for the picked variant; a zero dimension skips the op. */
  grid: (shape: StepShape, variant: number) => Grid;
}

/** What a matmul does besides the product. */
interface MatmulUse {
  x: GPUBuffer;
  out: GPUBuffer;
  /** Floats between output rows. */
  ldo: number;
  /** Output columns that exist (GLU: the intermediate size). */
  nOut: number;
  rows: Rows;
  /** RMSNorm before the matmul: its gamma (offset + w). */
  norm?: GPUBuffer;
  bias?: GPUBuffer | null;
  accumulate?: boolean;
  glu?: boolean;
  rope?: { invFreq: GPUBuffer; kCache: GPUBuffer; vCache: GPUBuffer };
  softcap?: number | null;
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
    if (options.attn === "paged" && hd % 4 !== 0) {
      throw new LlmError("unsupported_architecture", `paged attention reads heads as vec4: head_dim ${hd} is not a multiple of 4`);
    }

    const x = this.#buffer("x", T * H);
    // q rows when RoPE is fused into the q|k|v matmul, else the whole q|k|v rows.
    const q = this.#buffer(fusedRope ? "q" : "qkv", T * (fusedRope ? nh * hd : qkvRows));
    const qStride = fusedRope ? nh * hd : qkvRows;
    const attn = this.#buffer("attn", T * nh * hd);
    const act = this.#buffer("act", T * I);
    const tmp = spec.sandwichNorm ? this.#buffer("tmp", T * H) : null;
    this.logits = this.#buffer("logits", R * V, GPUBufferUsage.COPY_SRC);
    const invFreq = this.#buffer("inv_freq", hd / 2);
    device.queue.writeBuffer(invFreq, 0, ropeInverseFrequencies(spec.rope, hd));
    const maxContext = options.capacity.maxBlocksPerSeq * bs;

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

    // Attention: lanes are keys; one lane count for both query tiles (it fixes the
    // summation order), and the largest tile that keeps it.
    const group = nh / nkv;
    const lanes = attentionLanes(group, hd, 1, options.maxWorkgroupBytes);
    let tq = ATTENTION_QUERY_TILE;
    while (tq > 1 && attentionLanes(group, hd, tq, options.maxWorkgroupBytes) < lanes) tq /= 2;
    const splitLen = this.splitLen;
    if (splitLen % lanes !== 0) throw new RangeError(`attention split ${splitLen} is not a multiple of ${lanes} lanes`);
    const maxSplits = Math.max(1, Math.ceil(maxContext / splitLen));
    const splitsOf = (s: StepShape) => Math.max(1, Math.ceil(s.maxContext / splitLen));
    const paged = options.attn === "paged";
    const partAcc = paged ? this.#buffer("attn_part_acc", T * nh * maxSplits * hd) : null;
    const partMl = paged ? this.#buffer("attn_part_ml", T * nh * maxSplits * 2) : null;
    const info = paged ? this.#buffer("attn_info", 4) : null;
    const scores = paged ? null : this.#buffer("eager_scores", T * nh * maxContext);
    const attnKernels = paged
      ? [...new Set([1, tq])].map((TQ) => pipelines.get(ATTENTION_LANES, { GROUP: group, HEAD_DIM: hd, TQ, WG: lanes, KV_F16: kvF16 }))
      : [];
    const combine = paged ? pipelines.get(ATTENTION_COMBINE, { HEAD_DIM: hd }) : null;

    for (let l = 0; l < spec.numLayers; l++) {
      const w = weights.layers[l];
      const kCache = cache.keys[l];
      const vCache = cache.values[l];
      this.#matmul(`l${l}.qkv`, w.qkv, {
        x,
        out: q,
        ldo: qStride,
        nOut: qkvRows,
        rows: "tokens",
        norm: w.inputNorm,
        bias: w.qkvBias,
        rope: fusedRope ? { invFreq, kCache, vCache } : undefined,
      });
      if (!fusedRope) {
        const rope = pipelines.get(ROPE_KV, { QK_NORM: spec.qkNorm, HALF: hd / 2, KV_F16: kvF16 });
        this.#op(`l${l}.rope_kv`, [rope], {
          p: this.#uniform(rope, { nh, nkv, head_dim: hd, block_size: bs, qkv_stride: qkvRows, eps: spec.rmsNormEps }),
          qkv: q,
          inv_freq: invFreq,
          k_cache: kCache,
          v_cache: vCache,
          ...(spec.qkNorm ? { q_norm: w.qNorm!, k_norm: w.kNorm! } : {}),
        }, (s) => rowsGrid(nh + 2 * nkv, s.tokens));
      }

      const window = spec.layerWindows[l] ?? 0;
      const softcap = spec.attnLogitSoftcap ?? 0;
      if (paged) {
        const params = this.#uniform(attnKernels[0], {
          nh,
          nkv,
          block_size: bs,
          q_stride: qStride,
          window,
          scale: spec.attnScale,
          softcap,
          max_splits: maxSplits,
          split_len: splitLen,
        });
        this.#op(`l${l}.attention`, attnKernels, {
          p: params,
          query: q,
          k_cache: kCache,
          v_cache: vCache,
          out: attn,
          part_acc: partAcc!,
          part_ml: partMl!,
          info: info!,
        }, (s, i) => [nkv, i === 0 ? s.tokens : Math.ceil(s.tokens / tq) + s.seqs, splitsOf(s)], (s) =>
          attnKernels.length > 1 && s.maxQueryLen > 1 ? 1 : 0);
        this.#op(`l${l}.attention_combine`, [combine!], {
          p: params,
          part_acc: partAcc!,
          part_ml: partMl!,
          info: info!,
          out: attn,
        }, (s) => (splitsOf(s) > 1 ? rowsGrid(s.tokens, 1) : [0, 0, 0]));
      } else {
        const phases: [string, Partial<Record<string, boolean>>, (s: StepShape) => Grid][] = [
          ["scores", { PHASE_SCORES: true }, (s) => [Math.ceil(s.maxContext / 64), nh, s.tokens]],
          ["softmax", { PHASE_SOFTMAX: true }, (s) => [1, nh, s.tokens]],
          ["values", { PHASE_VALUES: true }, (s) => [Math.ceil(hd / 64), nh, s.tokens]],
        ];
        let params: GPUBuffer | null = null;
        for (const [name, flags, grid] of phases) {
          const k = pipelines.get(EAGER_ATTENTION, {
            PHASE_SCORES: false,
            PHASE_SOFTMAX: false,
            PHASE_VALUES: false,
            KV_F16: kvF16,
            ...flags,
          });
          params ??= this.#uniform(k, {
            nh,
            nkv,
            head_dim: hd,
            block_size: bs,
            q_stride: qStride,
            window,
            scale: spec.attnScale,
            softcap,
            max_context: maxContext,
          });
          this.#op(`l${l}.eager_${name}`, [k], { p: params, query: q, k_cache: kCache, v_cache: vCache, scores: scores!, out: attn }, grid);
        }
      }

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
        norm: spec.sandwichNorm ? w.preFfnNorm! : w.postAttnNorm,
        bias: w.gateUpBias,
        glu: true,
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
      norm: weights.finalNorm,
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
    const spec = this.#spec;
    const defines: MatmulFlags = {
      W_F32: w.dtype === "f32",
      XVEC: w.k % 4 === 0,
      NORM: !!use.norm,
      GAMMA: !!use.norm,
      ACCUM: !!use.accumulate,
      GLU: !!use.glu,
      GELU: !!use.glu && spec.hiddenAct === "gelu_tanh",
      ROPE: !!use.rope,
      KV_F16: !!use.rope && this.#cache.dtype === "f16",
      BIAS: !!use.bias,
      SOFTCAP: !!use.softcap,
      GATHER: use.rows === "logits",
    };
    const cpu = this.family === "cpu";
    const kernels = cpu
      ? ROW_TILES.map((TM) => this.#pipelines.get(GEMV_C8, { ...defines, TM, WG: CPU_MATMUL_WG }))
      : [
        ...ROW_TILES.map((TM) => this.#pipelines.get(GEMV_WG, { ...defines, TM, WG: GPU_MATMUL_WG })),
        this.#pipelines.get(GEMM_TILED, { ...defines, TM: 1, WG: 64 }),
      ];
    const tiled = ROW_TILES.length;
    const pick = (s: StepShape) => {
      const r = rowsOf(s, use.rows);
      return !cpu && r >= GEMM_MIN_ROWS ? tiled : rowTileIndex(r);
    };
    for (const part of w.parts) {
      const resources: Partial<Record<string, BindingResource>> = {
        p: this.#uniform(kernels[0], {
          k: w.k,
          blocks: part.blocks,
          block_off: part.blockStart,
          ldx: w.k,
          ldo: use.ldo,
          n_out: use.nOut,
          rows_kind: ROW_KIND[use.rows],
          eps: spec.rmsNormEps,
          nh: spec.numHeads,
          nkv: spec.numKvHeads,
          head_dim: spec.headDim,
          block_size: this.#cache.options.blockSize,
          w_stride: w.rowStride,
          cap: use.softcap ?? 0,
        }),
        x: use.x,
        w: part.buffer,
        out: use.out,
      };
      if (use.norm) resources.gamma = use.norm;
      if (use.bias) resources.bias = use.bias;
      if (use.rope) Object.assign(resources, { inv_freq: use.rope.invFreq, k_cache: use.rope.kCache, v_cache: use.rope.vCache });
      this.#op(`${label}[${part.blockStart}]`, kernels, resources, (s, i) => {
        const r = rowsOf(s, use.rows);
        if (i === tiled) return rowsGrid(Math.ceil(part.blocks / (GEMM_TILE.cols / 8)), Math.ceil(r / GEMM_TILE.rows));
        const blocks = cpu ? Math.ceil(part.blocks / CPU_MATMUL_WG) : part.blocks;
        return rowsGrid(blocks, Math.ceil(r / ROW_TILES[i]));
      }, pick);
    }
  }
}
