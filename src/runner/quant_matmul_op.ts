/**
 * One quantized matmul (a `kind: "quant"` weight) as the forward pass dispatches it: the
 * quantized kernels of the family (cpu: `qgemv_c8` with 1, 2, 4 or 8 rows per invocation;
 * gpu: `qgemv_wg` below 16 rows, `qgemm_tiled` from 16: the same bits for a row either way)
 * with the same epilogues as the dense matmuls (`matmul_epilogue.wgsl`).
 *
 * Two paths: exact (f32 activations times the dequantized weights, the arithmetic of the
 * quant goldens) and, when the use brings an `xq` scratch buffer, the fast path of llama.cpp's
 * CPU kernels: `quantize_rows` first turns the (normalized) activation rows into Q8 blocks
 * (a prelude dispatch, the RMSNorm folded in), then the matmul sums exact int8 products.
 * Q8X / Q4X weights (K-quants transcoded at load) have no fast path: they run the exact kernels
 * even when the use brings `xq` (the forward's x and norm are there for them either way).
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import type { MatrixWeight } from "../model/weights.ts";
import type { BindingResource, PipelineCache } from "../kernels/registry.ts";
import {
  QGEMM_TILED,
  QGEMV_C8,
  QGEMV_WG,
  qgemvWgRowTile,
  QMATMUL_DEFAULTS,
  type QMatmulDefines,
  QUANTIZE_ROWS,
  xqRowWords,
} from "../kernels/quant_matmul.ts";
import {
  CPU_MATMUL_WG,
  GPU_MATMUL_WG,
  ROW_TILES,
} from "../kernels/family.ts";
import type { MatmulOp, MatmulUse } from "./matmul_op.ts";
import { checkFamily, matmulParts, rowsGrid } from "./matmul_op.ts";

/** What the adapter offers the quantized kernels. */
export interface QuantMatmulEnv {
  /** WGSL's packed_4x8_integer_dot_product (same bits without it). */
  dot4: boolean;
  /** Workgroup memory per workgroup (bounds qgemv_wg's rows per workgroup). */
  maxWorkgroupBytes: number;
}

/** Builds the dispatches of the quantized weight `w` used as `use`. */
export function quantMatmulOp(
  pipelines: PipelineCache,
  family: KernelFamily,
  w: MatrixWeight,
  use: MatmulUse,
  label: string,
  env: QuantMatmulEnv,
): MatmulOp {
  if (w.kind !== "quant") throw new RangeError(`${label}: not a quantized weight`);
  checkFamily(family, w, label);
  if (use.softcap) {
    throw new RangeError(`${label}: the quantized matmuls have no soft-cap epilogue`);
  }
  const cpu = family === "cpu";
  const q8x = w.dtype === "q8x";
  const q4x = w.dtype === "q4x";
  // Q8X and Q4X have only the exact kernels; they ignore the fast path's scratch.
  const fast = !!use.xq && !q8x && !q4x;
  const kb = w.k / 32;
  const gather = use.rows === "logits";
  const uniforms: GPUBuffer[] = [];
  const base: QMatmulDefines = {
    ...QMATMUL_DEFAULTS,
    WG: cpu ? CPU_MATMUL_WG : GPU_MATMUL_WG,
    MAX_SLICES: kb,
    // Q4X shares Q4_0's nibble layout (Q4X with Q4).
    Q4: w.dtype === "q4_0" || q4x,
    Q8X: q8x,
    Q4X: q4x,
    XQ: fast,
    DOT4: env.dot4,
    // With XQ the quantizer applies the norm and gathers the logit rows.
    NORM: !fast && !!use.norm,
    GAMMA: !fast && !!use.norm,
    ACCUM: !!use.accumulate,
    GLU: !!use.glu,
    GELU: !!use.glu?.gelu,
    ROPE: !!use.rope,
    KV_F16: !!use.rope?.kvF16,
    BIAS: !!use.bias,
    GATHER: gather && !fast,
  };
  // Row tiles per variant: cpu 1/2/4/8 rows per invocation; gpu qgemv_wg's tiles as its
  // workgroup memory allows, then qgemm_tiled.
  const tiles = cpu
    ? [...ROW_TILES]
    : ROW_TILES.map((r) => qgemvWgRowTile(w.k, r, env.maxWorkgroupBytes));
  const kernels = cpu ? tiles.map((TM) => pipelines.get(QGEMV_C8, { ...base, TM })) : [
    ...tiles.map((TM) => pipelines.get(QGEMV_WG, { ...base, TM })),
    pipelines.get(QGEMM_TILED, { ...base, TM: 1, WG: GPU_MATMUL_WG }),
  ];
  const ldq = xqRowWords(w.k);

  let prelude: MatmulOp["prelude"];
  if (fast) {
    const qk = pipelines.get(QUANTIZE_ROWS, {
      WG: 8,
      NORM: !!use.norm,
      GAMMA: !!use.norm,
      GATHER: gather,
      DOT4: env.dot4,
    });
    const p = qk.uniform({
      k: w.k,
      ldx: use.ldx ?? w.k,
      ldq,
      rows_kind: gather ? 1 : 0,
      eps: use.norm?.eps ?? 0,
    }, `${label}.quantize.params`);
    uniforms.push(p);
    const resources: Record<string, BindingResource> = { p, x: use.x, xq: use.xq! };
    if (use.norm) resources.gamma = use.norm.gamma;
    prelude = {
      label: `${label}.quantize`,
      kernel: qk,
      resources,
      grid: (rows) => rowsGrid(1, rows),
    };
  }

  const op = matmulParts(kernels, w, use, label, {
    cpu,
    tiles,
    x: fast ? use.xq! : use.x,
    ldx: fast ? ldq : use.ldx ?? w.k,
    gamma: base.GAMMA,
  });
  return { ...op, uniforms: [...uniforms, ...op.uniforms], prelude };
}
