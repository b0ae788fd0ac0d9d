/**
 * The quantized matmuls (`qgemv_c8` for CPU adapters; for GPUs `qgemv_wg` / `qgemm_tiled`,
 * which are `gemv_wg.wgsl` / `gemm_tiled.wgsl` with QUANT; on Q8_0, Q4_0, Q8X or Q4X blocks)
 * and the activation
 * quantizer of their fast path (`quantize_rows`): descriptors, defines and the sizes their
 * buffers need. They share `matmul_epilogue.wgsl` (parameters and epilogues) with the f16
 * packed matmuls, so the parameters are that file's `struct Params`.
 * @module
 */
import { type Defines, kernel, type KernelDescriptor } from "./registry.ts";
import { optionalBindings } from "./descriptors.ts";

/** Defines of the quantized matmuls. */
export interface QMatmulDefines {
  [name: string]: number | boolean;
  /** Rows per invocation (qgemv_c8) or per workgroup (qgemv_wg). */
  TM: number;
  /** Workgroup size. */
  WG: number;
  /** Weights are Q4_0 (else Q8_0). */
  Q4: boolean;
  /**
   * Weights are Q8X (K-quants, or fused matrices mixing block types, transcoded at load;
   * `src/model/quant/q8x.ts`). Exact path only: no XQ kernels exist for it.
   */
  Q8X: boolean;
  /**
   * Weights are Q4X (all-Q4_K matrices transcoded at load; `src/model/quant/q4x.ts`), set
   * together with Q4: the nibbles are laid out as Q4_0's and share its unpacking, the f32
   * scale and min replace its f16 scale and offset 8. Exact path only.
   */
  Q4X: boolean;
  /** Fast path: x rows are Q8 blocks from `quantize_rows` (integer dot products). */
  XQ: boolean;
  /** The adapter offers WGSL's packed_4x8_integer_dot_product (same bits without it). */
  DOT4: boolean;
  /** Scale each row by 1/rms(x) (exact path only: with XQ the quantizer applies the norm). */
  NORM: boolean;
  /** Multiply x by the norm weight as it is loaded (exact path only). */
  GAMMA: boolean;
  /** Add into `out` (residual add). */
  ACCUM: boolean;
  /** act(gate) * up epilogue (gluColumns order). */
  GLU: boolean;
  /** GELU-tanh instead of SiLU in the GLU epilogue. */
  GELU: boolean;
  /** RoPE + KV-cache write epilogue (ropeColumns order). */
  ROPE: boolean;
  /** Per-column bias (permuted like the columns). */
  BIAS: boolean;
  /** ROPE: the KV cache holds f16. */
  KV_F16: boolean;
  /** Logit rows read their token's x row. */
  GATHER: boolean;
  /** qgemv_wg: K blocks its workgroup memory holds (>= K / 32). */
  MAX_SLICES: number;
}

/** All-off defines (Q8_0, exact path, one row); spread and override. */
export const QMATMUL_DEFAULTS: QMatmulDefines = {
  TM: 1,
  WG: 8,
  Q4: false,
  Q8X: false,
  Q4X: false,
  XQ: false,
  DOT4: false,
  NORM: false,
  GAMMA: false,
  ACCUM: false,
  GLU: false,
  GELU: false,
  ROPE: false,
  BIAS: false,
  KV_F16: false,
  GATHER: false,
  MAX_SLICES: 1,
};

type QMatmulBinding = "x" | "w" | "out" | "gamma" | "bias" | "inv_freq" | "k_cache" | "v_cache";

/**
 * Derived defines: the bindings after `out`, numbered in this order for the ones a
 * specialisation declares; and `QUANT`, which selects the block-weight parts of the kernel
 * files the dense matmuls share (gemv_wg, gemm_tiled).
 */
function derived(file: string, d: QMatmulDefines): Defines {
  checkDefines(file, d);
  return { ...optionalBindings(d), QUANT: true };
}

function checkDefines(file: string, d: QMatmulDefines): void {
  if (d.XQ && (d.NORM || d.GAMMA)) {
    throw new Error(`${file}: with XQ the norm belongs to quantize_rows`);
  }
  if (d.Q8X && (d.XQ || d.Q4)) {
    throw new Error(`${file}: Q8X weights run the exact path only (no XQ, not Q4)`);
  }
  if (d.Q4X && (d.XQ || d.Q8X || !d.Q4)) {
    throw new Error(`${file}: Q4X weights set Q4 and run the exact path only (no XQ, not Q8X)`);
  }
}

const QMATMUL_BINDINGS = ["x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"] as const;

/** CPU-family quantized GEMV: column blocks of 8, TM rows per invocation. */
export const QGEMV_C8: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "qgemv_c8",
  QMATMUL_BINDINGS,
  (d) => derived("qgemv_c8", d),
);

/**
 * GPU-family quantized GEMV (decode batches): a workgroup per 8 columns, K split by blocks;
 * `gemv_wg.wgsl` with QUANT.
 */
export const QGEMV_WG: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "gemv_wg",
  QMATMUL_BINDINGS,
  (d) => derived("qgemv_wg", d),
);

/** GPU-family quantized tiled matmul (prefill): 32 x 64 tiles, `gemm_tiled.wgsl` with QUANT; same bits as QGEMV_WG. */
export const QGEMM_TILED: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "gemm_tiled",
  QMATMUL_BINDINGS,
  (d) => derived("qgemm_tiled", d),
);

/**
 * Rows per workgroup of `qgemv_wg` for a batch of `rows` (1, 2, 4, 8), lowered until its
 * slice buffer (K / 32 blocks x rows x 9 floats) fits `maxWorkgroupBytes`.
 */
export function qgemvWgRowTile(k: number, rows: number, maxWorkgroupBytes = 16384): number {
  let tm = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  while (tm > 1 && (k / 32) * tm * 9 * 4 + tm * 36 > maxWorkgroupBytes) tm /= 2;
  return tm;
}

/** Defines of `quantize_rows`. */
export interface QuantizeRowsDefines {
  [name: string]: number | boolean;
  WG: number;
  /** RMS-normalize each row first. */
  NORM: boolean;
  /** Multiply by the norm weight (with NORM). */
  GAMMA: boolean;
  /** Logit rows read their token's x row. */
  GATHER: boolean;
  /** pack4xI8 from packed_4x8_integer_dot_product (same bits without it). */
  DOT4: boolean;
}

/** Activation rows -> Q8 blocks (the fast path's input). */
export const QUANTIZE_ROWS: KernelDescriptor<QuantizeRowsDefines, "x" | "xq" | "gamma"> = kernel(
  "quantize_rows",
  ["x", "xq", "gamma"],
);

/** u32 words of one quantized activation row of `k` values (int8, scales, sums; 16-byte aligned). */
export function xqRowWords(k: number): number {
  if (k % 32 !== 0) throw new RangeError(`quantized rows need K % 32 == 0, got ${k}`);
  return Math.ceil((k / 4 + k / 16) / 4) * 4;
}

/** Kernel files of the quantized matmuls. */
export const QUANT_KERNEL_FILES: readonly string[] = [
  "matmul_epilogue",
  "int8_dot",
  "qmatmul_common",
  "qgemv_c8",
  "gemv_wg",
  "gemm_tiled",
  "quantize_rows",
];
