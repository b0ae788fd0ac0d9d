/**
 * A whole forward step assembled from the prototype kernels, for measuring (and checking)
 * what they reach together: per layer 5 dispatches (6 when attention is split over keys):
 *
 *   1. q|k|v matmul with the input RMSNorm folded in and RoPE + the KV-cache write as its
 *      epilogue (q to a buffer, k and v into their cache slots);
 *   2. attention_lanes (and 2b. attention_combine when the keys are split);
 *   3. o matmul, adding into the residual stream;
 *   4. gate|up matmul with the post-attention RMSNorm folded in and act(gate) * up as its
 *      epilogue;
 *   5. down matmul, adding into the residual stream;
 *
 * plus the embedding gather, the LM head (final norm folded in, only the logit rows) and the
 * argmax. Llama, Mistral and Qwen2 shapes (see host_weights.ts). Not the serving path: one
 * metadata slot, no sampler, no weight splitting over the binding limit.
 * @module
 */
import type { ModelSpec } from "../../src/model/config.ts";
import type { CompiledKernel } from "../../src/gpu/kernel.ts";
import { ARGMAX, EMBED } from "../../src/gpu/descriptors.ts";
import {
  ATTENTION_COMBINE,
  ATTENTION_LANES,
  attentionLanes,
  type KernelFamily,
  MATMUL_DEFAULTS,
  type MatmulDefines,
  matmulDescriptor,
  type MatmulFile,
  packAttentionParams,
  packMatmulParams,
} from "../../src/gpu/kernel_families.ts";
import {
  type ColumnMap,
  gluColumns,
  type HostMatrix,
  normScale,
  packColumnBlocks,
  packPaddedRows,
  permuteColumns,
  ropeColumns,
} from "../../src/model/weight_layout.ts";
import { ropeInverseFrequencies } from "../../src/model/rope.ts";
import {
  metaSlotWords,
  packStepMeta,
  type StepBatch,
  type StepCapacity,
} from "../../src/model/step_batch.ts";
import type { GpuKit, Grid } from "./gpu_kit.ts";
import { checkSupported, type HostWeights } from "./host_weights.ts";

/** How the RMSNorm weight reaches the matmul after the norm. */
export type NormMode = "fold" | "gamma";

/** Options of {@link ProtoDecoder}. */
export interface ProtoDecoderOptions {
  family: KernelFamily;
  /** "fold": norm weight multiplied into the f16 matrix at load; "gamma": applied to x on load. */
  norm: NormMode;
  capacity: StepCapacity;
  blockSize: number;
  numBlocks: number;
  /**
   * Keys per attention split (default 256, a multiple of the lane count). A sequence of n
   * tokens of context spreads over ceil(n / splitLen) workgroups per kv head.
   */
  splitLen?: number;
  /** Attention query tile for steps with several tokens per sequence (1 for decode). */
  queryTile?: number;
  /** Metadata slots (steps written ahead; the benchmark keeps one per step shape). */
  metaSlots?: number;
  /** An f16 KV cache (half the bytes and load instructions per key). */
  kvF16?: boolean;
  /**
   * cpu family: narrow matrices split K over up to 8 invocations per column block until
   * they have this many invocations (default 0: off; it measured no faster on lavapipe).
   */
  kSplitLanes?: number;
}

/** K slices for a narrow matrix: powers of two until `lanes` invocations, >= 64 k per slice. */
export function kSlices(blocks: number, k: number, lanes: number): number {
  let ks = 1;
  while (blocks * ks < lanes && ks < 8 && k / (2 * ks) >= 64) ks *= 2;
  return ks;
}

/** What a step's dispatch sizes depend on. */
export interface DecoderShape {
  tokens: number;
  logitRows: number;
  seqs: number;
  /** Longest run of tokens of one sequence in the step. */
  maxQueryLen: number;
  /** Longest context (tokens in cache after the step) of any sequence. */
  maxContext: number;
}

interface Op {
  label: string;
  /** Candidates; `pick` chooses one per shape. */
  kernels: CompiledKernel[];
  pick: (s: DecoderShape) => number;
  group: GPUBindGroup;
  grid: (s: DecoderShape, kernel: number) => Grid;
}

/** The shape of a step's batch. */
export function shapeOf(batch: StepBatch): DecoderShape {
  let maxQueryLen = 0;
  for (let s = 0; s + 1 < batch.queryStart.length; s++) {
    maxQueryLen = Math.max(maxQueryLen, batch.queryStart[s + 1] - batch.queryStart[s]);
  }
  return {
    tokens: batch.tokenIds.length,
    logitRows: batch.logitTokens.length,
    seqs: batch.blockTables.length,
    maxQueryLen,
    maxContext: Math.max(0, ...batch.contextLens),
  };
}

const TILES = [1, 2, 4, 8];
// gemv_c8 workgroup size: 8 (one SIMD row of lavapipe) measured faster than 16 on every shape.
const CPU_WG = 8;
const tileIndex = (rows: number) => (rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : 3);

/** One forward step from the prototype kernels over GPU buffers it owns. */
export class ProtoDecoder {
  readonly spec: ModelSpec;
  readonly options: Required<ProtoDecoderOptions>;
  /** [logitRows, vocab] f32. */
  readonly logits: GPUBuffer;
  /** Argmax id per logit row. */
  readonly ids: GPUBuffer;
  readonly kCache: GPUBuffer[] = [];
  readonly vCache: GPUBuffer[] = [];
  /** Bytes of packed weights uploaded. */
  readonly weightBytes: number = 0;
  #kit: GpuKit;
  #meta: GPUBuffer;
  #metaBytes: number;
  #slotStride: number;
  #ops: Op[] = [];

  constructor(kit: GpuKit, spec: ModelSpec, weights: HostWeights, options: ProtoDecoderOptions) {
    checkSupported(spec);
    this.#kit = kit;
    this.spec = spec;
    this.options = {
      splitLen: 256,
      queryTile: 1,
      metaSlots: 1,
      kSplitLanes: 0,
      kvF16: false,
      ...options,
    };
    const { capacity: cap, blockSize: bs, numBlocks } = options;
    const T = cap.maxTokens;
    const R = cap.maxLogitRows;
    const H = spec.hiddenSize;
    const I = spec.intermediateSize;
    const nh = spec.numHeads;
    const nkv = spec.numKvHeads;
    const hd = spec.headDim;
    this.#metaBytes = metaSlotWords(cap) * 4;
    const align = kit.device.limits.minStorageBufferOffsetAlignment;
    this.#slotStride = Math.ceil(this.#metaBytes / align) * align;
    this.#meta = kit.buffer(this.#slotStride * this.options.metaSlots);
    const meta = { buffer: this.#meta, bytes: this.#metaBytes };

    const x = kit.buffer(T * H * 4);
    const q = kit.buffer(T * nh * hd * 4);
    const attn = kit.buffer(T * nh * hd * 4);
    const act = kit.buffer(T * I * 4);
    this.logits = kit.buffer(R * spec.vocabSize * 4);
    this.ids = kit.buffer(Math.max(R, 4) * 4);
    const invFreq = kit.buffer(ropeInverseFrequencies(spec.rope, hd));
    const maxSplits = Math.ceil(cap.maxBlocksPerSeq * bs / this.options.splitLen);
    const partAcc = kit.buffer(T * nh * maxSplits * hd * 4);
    const partMl = kit.buffer(T * nh * maxSplits * 8);
    const info = kit.buffer(16);
    const cacheBytes = numBlocks * nkv * bs * hd * (this.options.kvF16 ? 2 : 4);
    for (let l = 0; l < spec.numLayers; l++) {
      this.kCache.push(kit.buffer(cacheBytes));
      this.vCache.push(kit.buffer(cacheBytes));
    }

    // Embedding gather (the existing kernel, HF-layout f16 table). Token ids with the top bit
    // set name a logit row of the previous step: its argmax (decoding without readbacks).
    {
      const k = kit.kernel(EMBED, { F16: true });
      const p = new ArrayBuffer(32);
      new Uint32Array(p).set([H, 0, spec.vocabSize]);
      new Float32Array(p)[3] = spec.embeddingScale;
      new Uint32Array(p)[4] = 1;
      const group = kit.bind(k, meta, [
        kit.uniform(p),
        kit.buffer(weights.embed.data as Uint16Array<ArrayBuffer>),
        x,
        this.ids,
      ]);
      this.#ops.push({
        label: "embed",
        kernels: [k],
        pick: () => 0,
        group,
        grid: (s) => [Math.ceil(H / 64), s.tokens, 1],
      });
    }

    let bytes = 0;
    const matmul = (
      label: string,
      w: HostMatrix,
      o: {
        columns?: ColumnMap;
        norm?: Float32Array;
        bias?: Float32Array | null;
        rope?: boolean;
        defines: Partial<MatmulDefines>;
        xBuf: GPUBuffer;
        out: GPUBuffer;
        ldo: number;
        nOut: number;
        layer?: number;
        logits?: boolean;
      },
    ) => {
      const fold = o.norm && options.norm === "fold"
        ? normScale(o.norm, spec.normOffset)
        : undefined;
      const gamma = o.norm && options.norm === "gamma"
        ? normScale(o.norm, spec.normOffset)
        : undefined;
      const cpu = options.family === "cpu";
      const packed = cpu
        ? packColumnBlocks(w, { columns: o.columns, kScale: fold })
        : packPaddedRows(w, { columns: o.columns, kScale: fold });
      bytes += packed.data.byteLength;
      const ks = cpu ? kSlices(packed.cols / 8, w.cols, this.options.kSplitLanes) : 1;
      const files: { file: MatmulFile; defines: Partial<MatmulDefines> }[] = cpu
        ? TILES.map((TM) => ({ file: "gemv_c8", defines: { TM, WG: CPU_WG, KS: ks } }))
        : [
          ...TILES.map((TM) => ({
            file: "gemv_wg" as const,
            defines: { TM, WG: 64, SLICED: true, MAX_SLICES: Math.ceil(w.cols / 32) },
          })),
          { file: "gemm_tiled", defines: {} },
        ];
      const flags = { rope: !!o.rope, bias: !!o.bias, gamma: !!gamma };
      const kernels = files.map((f) =>
        kit.kernel(matmulDescriptor(f.file, flags), {
          ...MATMUL_DEFAULTS,
          XVEC: w.cols % 4 === 0,
          ...f.defines,
          ...o.defines,
          ROPE: flags.rope,
          BIAS: flags.bias,
          GAMMA: flags.gamma,
          KV_F16: this.options.kvF16,
        })
      );
      const params = packMatmulParams({
        k: w.cols,
        blocks: packed.cols / 8,
        ldx: w.cols,
        ldo: o.ldo,
        nOut: o.nOut,
        rowsKind: o.logits ? 1 : 0,
        eps: spec.rmsNormEps,
        numHeads: nh,
        numKvHeads: nkv,
        headDim: hd,
        blockSize: bs,
        wStride: packed.rowStride,
      });
      const buffers: GPUBuffer[] = [kit.uniform(params), o.xBuf, kit.buffer(packed.data), o.out];
      if (gamma) buffers.push(kit.buffer(gamma));
      if (o.bias) {
        buffers.push(
          kit.buffer(permuteColumns(o.bias, o.columns ?? packedIdentity(packed.cols, w.rows))),
        );
      }
      if (o.rope) buffers.push(invFreq, this.kCache[o.layer!], this.vCache[o.layer!]);
      const group = kit.bind(kernels[0], meta, buffers);
      const blocks = packed.cols / 8;
      const rowsOf = (s: DecoderShape) => (o.logits ? s.logitRows : s.tokens);
      this.#ops.push({
        label,
        kernels,
        group,
        pick: (s) => (!cpu && rowsOf(s) >= 16 ? TILES.length : tileIndex(rowsOf(s))),
        grid: (s, i) => {
          const rows = rowsOf(s);
          if (cpu) return [Math.ceil(blocks / (CPU_WG / ks)), Math.ceil(rows / TILES[i]), 1];
          if (i === TILES.length) return [Math.ceil(blocks / 8), Math.ceil(rows / 32), 1];
          return [blocks, Math.ceil(rows / TILES[i]), 1];
        },
      });
    };

    const group = nh / nkv;
    const tq = this.options.queryTile;
    // One lane count for both tile sizes: the lane of a key fixes the summation order.
    const lanes = attentionLanes(group, hd, tq);
    if (this.options.splitLen % lanes !== 0) {
      throw new RangeError(`splitLen must be a multiple of ${lanes}`);
    }
    const attnKernels = [1, tq].map((TQ) =>
      kit.kernel(ATTENTION_LANES, {
        GROUP: group,
        HEAD_DIM: hd,
        TQ,
        WG: lanes,
        KV_F16: this.options.kvF16,
      })
    );
    const combine = kit.kernel(ATTENTION_COMBINE, { HEAD_DIM: hd });

    weights.layers.forEach((w, l) => {
      const window = spec.layerWindows[l] ?? 0;
      matmul(`l${l}.qkv`, w.qkv, {
        columns: ropeColumns(nh, nkv, hd),
        norm: w.inputNorm,
        bias: w.qkvBias,
        rope: true,
        layer: l,
        defines: { NORM: true },
        xBuf: x,
        out: q,
        ldo: nh * hd,
        nOut: (nh + 2 * nkv) * hd,
      });
      const params = kit.uniform(packAttentionParams({
        numHeads: nh,
        numKvHeads: nkv,
        blockSize: bs,
        qStride: nh * hd,
        window,
        scale: spec.attnScale,
        softcap: spec.attnLogitSoftcap ?? 0,
        maxSplits,
        splitLen: this.options.splitLen,
      }));
      const attnGroup = kit.bind(attnKernels[0], meta, [
        params,
        q,
        this.kCache[l],
        this.vCache[l],
        attn,
        partAcc,
        partMl,
        info,
      ]);
      this.#ops.push({
        label: `l${l}.attention`,
        kernels: attnKernels,
        group: attnGroup,
        pick: (s) => (s.maxQueryLen > 1 && tq > 1 ? 1 : 0),
        grid: (s, i) => {
          const tiles = i === 0 ? s.tokens : Math.ceil(s.tokens / tq) + s.seqs;
          return [nkv, tiles, this.splitsFor(s)];
        },
      });
      this.#ops.push({
        label: `l${l}.attention_combine`,
        kernels: [combine],
        pick: () => 0,
        group: kit.bind(combine, meta, [params, partAcc, partMl, info, attn]),
        grid: (s) => (this.splitsFor(s) > 1 ? [s.tokens, 1, 1] : [0, 1, 1]),
      });
      matmul(`l${l}.o`, w.o, { defines: { ACCUM: true }, xBuf: attn, out: x, ldo: H, nOut: H });
      matmul(`l${l}.gate_up`, w.gateUp, {
        columns: gluColumns(I),
        norm: w.postAttnNorm,
        defines: { NORM: true, GLU: true, GELU: spec.hiddenAct === "gelu_tanh" },
        xBuf: x,
        out: act,
        ldo: I,
        nOut: I,
      });
      matmul(`l${l}.down`, w.down, {
        defines: { ACCUM: true },
        xBuf: act,
        out: x,
        ldo: H,
        nOut: H,
      });
    });
    matmul("lm_head", weights.lmHead, {
      norm: weights.finalNorm,
      defines: { NORM: true, GATHER: true },
      xBuf: x,
      out: this.logits,
      ldo: spec.vocabSize,
      nOut: spec.vocabSize,
      logits: true,
    });
    {
      const k = kit.kernel(ARGMAX, {});
      const group = kit.bind(k, meta, [
        kit.uniform(new Uint32Array([spec.vocabSize, 0, 0, 0]).buffer),
        this.logits,
        this.ids,
      ]);
      this.#ops.push({
        label: "argmax",
        kernels: [k],
        pick: () => 0,
        group,
        grid: (s) => [s.logitRows, 1, 1],
      });
    }
    this.weightBytes = bytes;
  }

  /** Key splits of attention for a step (the longest context decides; shorter ones add zeros). */
  splitsFor(s: DecoderShape): number {
    return Math.max(1, Math.ceil(s.maxContext / this.options.splitLen));
  }

  /**
   * Writes a step's metadata into `slot` (queue-ordered: a step submitted before this write
   * still reads the old contents); returns the shape and the slot's dynamic offset.
   */
  writeStep(batch: StepBatch, slot = 0): DecoderShape & { offset: number } {
    const offset = slot * this.#slotStride;
    this.#kit.device.queue.writeBuffer(
      this.#meta,
      offset,
      packStepMeta(batch, this.options.capacity),
    );
    return { ...shapeOf(batch), offset };
  }

  /** The dispatches of a step: labels and grids (zero grids skipped). */
  plan(
    shape: DecoderShape,
  ): { label: string; kernel: CompiledKernel; group: GPUBindGroup; grid: Grid }[] {
    const out = [];
    for (const op of this.#ops) {
      const i = op.pick(shape);
      const grid = op.grid(shape, i);
      if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) continue;
      out.push({ label: op.label, kernel: op.kernels[i], group: op.group, grid });
    }
    return out;
  }

  /** Encodes a whole step into one pass, reading the metadata slot at `offset`. */
  encode(pass: GPUComputePassEncoder, shape: DecoderShape, offset = 0): number {
    const plan = this.plan(shape);
    for (const d of plan) {
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.group, [offset]);
      pass.dispatchWorkgroups(...d.grid);
    }
    return plan.length;
  }

  /** Clears the KV cache (between independent runs). */
  clearCache(): void {
    const encoder = this.#kit.device.createCommandEncoder();
    for (const b of [...this.kCache, ...this.vCache]) encoder.clearBuffer(b);
    this.#kit.device.queue.submit([encoder.finish()]);
  }
}

function packedIdentity(cols: number, rows: number): ColumnMap {
  const map = new Int32Array(cols).fill(-1);
  for (let i = 0; i < rows; i++) map[i] = i;
  return map;
}
