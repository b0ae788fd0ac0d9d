/**
 * The quantized matmuls (`qgemv_c8` for CPU adapters, `qgemv_wg` / `qgemm_tiled` for GPUs; on
 * Q8_0, Q4_0, Q8X or Q4X blocks) and the activation
 * quantizer of their fast path (`quantize_rows`): descriptors, defines and the sizes their
 * buffers need. They share `matmul_epilogue.wgsl` (parameters and epilogues) with the f16
 * packed matmuls, so the parameters are that file's `struct Params`.
 * @module
 */
import { kernel, type KernelDescriptor } from "./registry.ts";

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

/** Bindings after `out` are numbered in this order, for the ones a specialisation declares. */
function bindingNumbers(d: QMatmulDefines): Record<string, number> {
  let next = 5;
  const n = { B_GAMMA: 0, B_BIAS: 0, B_INV_FREQ: 0, B_K_CACHE: 0, B_V_CACHE: 0 };
  if (d.GAMMA) n.B_GAMMA = next++;
  if (d.BIAS) n.B_BIAS = next++;
  if (d.ROPE) {
    n.B_INV_FREQ = next++;
    n.B_K_CACHE = next++;
    n.B_V_CACHE = next++;
  }
  return n;
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

/** CPU-family quantized GEMV: column blocks of 8, TM rows per invocation. */
export const QGEMV_C8: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "qgemv_c8",
  ["x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"],
  (d) => {
    checkDefines("qgemv_c8", d);
    return bindingNumbers(d);
  },
);

/** GPU-family quantized GEMV (decode batches): a workgroup per 8 columns, K split by blocks. */
export const QGEMV_WG: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "qgemv_wg",
  ["x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"],
  (d) => {
    checkDefines("qgemv_wg", d);
    return bindingNumbers(d);
  },
);

/** GPU-family quantized tiled matmul (prefill): 32 x 64 tiles; same bits as QGEMV_WG. */
export const QGEMM_TILED: KernelDescriptor<QMatmulDefines, QMatmulBinding> = kernel(
  "qgemm_tiled",
  ["x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"],
  (d) => {
    checkDefines("qgemm_tiled", d);
    return bindingNumbers(d);
  },
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
  "qgemv_wg",
  "qgemm_tiled",
  "quantize_rows",
];
