/**
 * Builds the dispatches of one quantized matmul on host data, for tests and the benchmark:
 * packs the blocks for the kernel, uploads them, and (fast path) quantizes x first with
 * `quantize_rows`.
 * @module
 */
import type { Dispatch, MetaSlot, QuantKit } from "./kit.ts";
import {
  QGEMM_TILED,
  QGEMV_C8,
  QGEMV_WG,
  qgemvWgRowTile,
  QMATMUL_DEFAULTS,
  type QMatmulDefines,
  QUANTIZE_ROWS,
  xqRowWords,
} from "../../src/kernels/quant_matmul.ts";
import {
  type PackedQuantMatrix,
  packQuantColumnBlocks,
  type QuantMatrix,
} from "../../src/model/quant/pack_c8.ts";
import { packQuantRows } from "../../src/model/quant/pack_rows.ts";
import type { ColumnMap } from "../../src/model/weight_layout.ts";

/** Rows per invocation for a batch of `rows` (1, 2, 4, 8). */
export function rowTile(rows: number): number {
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

/** Which kernel: the CPU family's `qgemv_c8`, or the GPU family's `qgemv_wg` / `qgemm_tiled`. */
export type QKernelName = "qgemv_c8" | "qgemv_wg" | "qgemm_tiled";

/** The packed layout a kernel reads. */
export function packQuantFor(
  kernel: QKernelName,
  m: QuantMatrix,
  columns?: ColumnMap,
): PackedQuantMatrix {
  return kernel === "qgemv_c8" ? packQuantColumnBlocks(m, columns) : packQuantRows(m, columns);
}

/** A quantized matmul job. */
export interface QMatmulJob {
  /** Default qgemv_c8. */
  kernel?: QKernelName;
  weight: QuantMatrix;
  columns?: ColumnMap;
  /** Fast path: quantize x to Q8 blocks first. */
  xq?: boolean;
  rows: number;
  meta: MetaSlot;
  /** f32 activations, rows of `ldx` floats. */
  x: GPUBuffer;
  ldx: number;
  out: GPUBuffer;
  ldo: number;
  nOut: number;
  /** First column block of this part (its columns are global from there). */
  blockOff?: number;
  eps?: number;
  /** Norm weight (NORM + GAMMA; with xq it goes to the quantizer). */
  gamma?: GPUBuffer;
  norm?: boolean;
  bias?: GPUBuffer;
  rope?: {
    invFreq: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    blockSize: number;
  };
  /** Extra defines (ACCUM, GLU, GELU, GATHER, KV_F16, WG, DOT4 ...). */
  defines?: Partial<QMatmulDefines>;
  /** Force rows per invocation. */
  tm?: number;
  /** Reuse a packed matrix / its buffer. */
  packed?: PackedQuantMatrix;
  weightBuffer?: GPUBuffer;
  /** Reuse a quantized-x buffer. */
  xqBuffer?: GPUBuffer;
}

/** The dispatches (quantizer first on the fast path) and what they were built from. */
export interface BuiltQMatmul {
  dispatches: Dispatch[];
  packed: PackedQuantMatrix;
  weightBuffer: GPUBuffer;
  /** The quantized activations (fast path only). */
  xqBuffer?: GPUBuffer;
  /** Rebinds the matmul to another copy of the weights (benchmarks rotate copies). */
  rebind: (weight: GPUBuffer) => Dispatch[];
}

/** Packs, uploads and binds one quantized matmul. */
export function buildQMatmul(kit: QuantKit, job: QMatmulJob): BuiltQMatmul {
  const name = job.kernel ?? "qgemv_c8";
  const packed = job.packed ?? packQuantFor(name, job.weight, job.columns);
  const weightBuffer = job.weightBuffer ?? kit.buffer(packed.data);
  const dot4 = job.defines?.DOT4 ?? kit.gpu.hasPacked4x8;
  const gather = !!job.defines?.GATHER;
  const xq = !!job.xq;
  const k = job.weight.k;
  const out: Dispatch[] = [];
  let xBuffer = job.x;
  let ldx = job.ldx;
  if (xq) {
    const words = xqRowWords(k);
    xBuffer = job.xqBuffer ?? kit.buffer(job.rows * words * 4);
    const qk = kit.kernel(QUANTIZE_ROWS, {
      WG: 8,
      NORM: !!job.norm,
      GAMMA: !!job.gamma,
      GATHER: gather,
      DOT4: dot4,
    });
    const buffers: Record<string, GPUBuffer> = { x: job.x, xq: xBuffer };
    if (job.gamma) buffers.gamma = job.gamma;
    out.push(
      kit.dispatch(
        qk,
        job.meta,
        { k, ldx: job.ldx, ldq: words, rows_kind: gather ? 1 : 0, eps: job.eps ?? 0 },
        buffers,
        [1, job.rows, 1],
      ),
    );
    ldx = words;
  }
  const kb = k / 32;
  const tm = name === "qgemm_tiled"
    ? 1
    : job.tm ?? (name === "qgemv_wg" ? qgemvWgRowTile(k, job.rows) : rowTile(job.rows));
  const defines: QMatmulDefines = {
    ...QMATMUL_DEFAULTS,
    WG: name === "qgemv_c8" ? 8 : 64,
    MAX_SLICES: kb,
    ...job.defines,
    TM: tm,
    Q4: job.weight.type === "Q4_0" || job.weight.type === "Q4X",
    Q8X: job.weight.type === "Q8X",
    Q4X: job.weight.type === "Q4X",
    XQ: xq,
    DOT4: dot4,
    NORM: !xq && !!job.norm,
    GAMMA: !xq && !!job.gamma,
    BIAS: !!job.bias,
    ROPE: !!job.rope,
    // With xq the quantizer already gathered the logit rows.
    GATHER: gather && !xq,
  };
  const kernel = kit.kernel(
    name === "qgemv_c8" ? QGEMV_C8 : name === "qgemv_wg" ? QGEMV_WG : QGEMM_TILED,
    defines,
  );
  const params = {
    k,
    blocks: packed.cols / 8,
    ldx,
    ldo: job.ldo,
    block_off: job.blockOff ?? 0,
    n_out: job.nOut,
    rows_kind: gather ? 1 : 0,
    eps: job.eps ?? 0,
    nh: job.rope?.numHeads ?? 0,
    nkv: job.rope?.numKvHeads ?? 0,
    head_dim: job.rope?.headDim ?? 0,
    block_size: job.rope?.blockSize ?? 0,
    w_stride: 0,
    cap: 0,
  };
  const blocks = packed.cols / 8;
  const grid: [number, number, number] = name === "qgemv_c8"
    ? [Math.ceil(blocks / defines.WG), Math.ceil(job.rows / tm), 1]
    : name === "qgemv_wg"
    ? [blocks, Math.ceil(job.rows / tm), 1]
    : [Math.ceil(blocks / 8), Math.ceil(job.rows / 32), 1];
  const bind = (w: GPUBuffer) => {
    const buffers: Record<string, GPUBuffer> = { x: xBuffer, w, out: job.out };
    if (defines.GAMMA) buffers.gamma = job.gamma!;
    if (job.bias) buffers.bias = job.bias;
    if (job.rope) {
      Object.assign(buffers, {
        inv_freq: job.rope.invFreq,
        k_cache: job.rope.kCache,
        v_cache: job.rope.vCache,
      });
    }
    return kit.dispatch(kernel, job.meta, params, buffers, grid);
  };
  return {
    dispatches: [...out, bind(weightBuffer)],
    packed,
    weightBuffer,
    xqBuffer: xq ? xBuffer : undefined,
    rebind: (w) => [...out, bind(w)],
  };
}

/** Builds and submits one quantized matmul (reading its output waits for it). */
export async function runQMatmul(kit: QuantKit, job: QMatmulJob): Promise<BuiltQMatmul> {
  const built = buildQMatmul(kit, job);
  await kit.run(built.dispatches);
  return built;
}
