/**
 * One packed-weight matmul as the forward pass dispatches it: the kernel variants of its
 * family (cpu: `gemv_c8` with 1, 2, 4 or 8 rows per invocation; gpu: `gemv_wg` likewise below
 * 16 rows and `gemm_tiled` from 16), which variant a row count picks, and per weight part its
 * resources and workgroup grid. Shared by the forward pass, the kernel tests and the bench.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import type { MatrixWeight } from "../model/weights.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { GEMM_TILED, GEMV_C8, GEMV_WG, type MatmulFlags } from "../kernels/descriptors.ts";
import {
  CPU_MATMUL_WG,
  GEMM_MIN_ROWS,
  GEMM_TILE,
  GPU_MATMUL_WG,
  ROW_TILES,
  rowTileIndex,
} from "../kernels/family.ts";

/** A dispatch grid. */
export type Grid = [number, number, number];

const MAX_Y = 65535;

/** Splits a row count over y and z (65535 workgroups per dimension). */
export function rowsGrid(x: number, rows: number): Grid {
  return rows <= MAX_Y ? [x, rows, 1] : [x, MAX_Y, Math.ceil(rows / MAX_Y)];
}

/**
 * The grid of one part of `blocks` column blocks for `rows` rows: variants below
 * `tiles.length` take `tiles[variant]` rows per invocation (cpu: CPU_MATMUL_WG blocks per
 * workgroup; gpu: a workgroup per block); the variant `tiles.length` is the tiled GEMM.
 */
export function partGrid(
  cpu: boolean,
  tiles: readonly number[],
  blocks: number,
  rows: number,
  variant: number,
): Grid {
  if (variant === tiles.length) {
    return rowsGrid(Math.ceil(blocks / (GEMM_TILE.cols / 8)), Math.ceil(rows / GEMM_TILE.rows));
  }
  return rowsGrid(
    cpu ? Math.ceil(blocks / CPU_MATMUL_WG) : blocks,
    Math.ceil(rows / tiles[variant]),
  );
}

/** What a matmul reads and writes, and what it does besides the product. */
export interface MatmulUse {
  x: GPUBuffer;
  out: GPUBuffer;
  /** Floats between x rows (default K). */
  ldx?: number;
  /** Floats between output rows. */
  ldo: number;
  /** Output columns that exist (GLU: the intermediate size). */
  nOut: number;
  /** One row per token, or per logit row (gathering its token's x row). */
  rows: "tokens" | "logits";
  /** RMSNorm before the matmul: its gamma (offset + w) and epsilon. */
  norm?: { gamma: GPUBuffer; eps: number };
  /** Per-column bias, permuted like the matrix's columns. */
  bias?: GPUBuffer | null;
  /** Add into `out` (a residual add). */
  accumulate?: boolean;
  /** act(gate) * up (gluColumns layout); GELU-tanh instead of SiLU. */
  glu?: { gelu: boolean };
  /** RoPE and the paged KV write (ropeColumns layout). */
  rope?: {
    invFreq: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    kvF16: boolean;
    numHeads: number;
    numKvHeads: number;
    headDim: number;
    blockSize: number;
  };
  /** cap * tanh(v / cap) on every output. */
  softcap?: number | null;
  /**
   * Quantized weights only: scratch for the activation rows as Q8 blocks; when present the
   * fast path runs (see `quant_matmul_op.ts`).
   */
  xq?: GPUBuffer;
}

/** A matmul ready to dispatch: kernel variants and, per weight part, resources and grid. */
export interface MatmulOp {
  kernels: CompiledKernel[];
  /** The variant for a row count. */
  variant: (rows: number) => number;
  parts: {
    label: string;
    /** Every binding but the step metadata. */
    resources: Record<string, BindingResource>;
    grid: (rows: number, variant: number) => Grid;
  }[];
  /** The uniform buffers it created (the caller owns them). */
  uniforms: GPUBuffer[];
  /** A dispatch before the parts (the fast quantized path's activation quantizer). */
  prelude?: {
    label: string;
    kernel: CompiledKernel;
    resources: Record<string, BindingResource>;
    grid: (rows: number) => Grid;
  };
}

/** The defines a use of `w` compiles to. */
export function matmulFlags(w: MatrixWeight, use: MatmulUse): MatmulFlags {
  return {
    W_F32: w.dtype === "f32",
    XVEC: w.k % 4 === 0 && (use.ldx ?? w.k) % 4 === 0,
    NORM: !!use.norm,
    GAMMA: !!use.norm,
    ACCUM: !!use.accumulate,
    GLU: !!use.glu,
    GELU: !!use.glu?.gelu,
    ROPE: !!use.rope,
    KV_F16: !!use.rope?.kvF16,
    BIAS: !!use.bias,
    SOFTCAP: !!use.softcap,
    GATHER: use.rows === "logits",
  };
}

/** Builds the dispatches of `w` used as `use` with a family's kernels. */
export function matmulOp(
  pipelines: PipelineCache,
  family: KernelFamily,
  w: MatrixWeight,
  use: MatmulUse,
  label: string,
): MatmulOp {
  checkFamily(family, w, label);
  if (w.kind !== "dense") {
    throw new RangeError(
      `${label}: a ${w.dtype} matrix runs on the quantized matmuls (quant_matmul_op.ts)`,
    );
  }
  const flags = matmulFlags(w, use);
  const cpu = family === "cpu";
  const kernels = cpu
    ? ROW_TILES.map((TM) => pipelines.get(GEMV_C8, { ...flags, TM, WG: CPU_MATMUL_WG }))
    : [
      ...ROW_TILES.map((TM) => pipelines.get(GEMV_WG, { ...flags, TM, WG: GPU_MATMUL_WG })),
      pipelines.get(GEMM_TILED, { ...flags, TM: 1, WG: 64 }),
    ];
  return matmulParts(kernels, w, use, label, { cpu, tiles: ROW_TILES, x: use.x, ldx: use.ldx ?? w.k, gamma: !!use.norm });
}

/** Throws unless `w`'s layout is the one `family`'s kernels read. */
export function checkFamily(family: KernelFamily, w: MatrixWeight, label: string): void {
  if ((family === "cpu") !== (w.layout === "column_blocks")) {
    throw new RangeError(
      `${label}: a ${w.layout} matrix cannot run on the ${family} family's kernels`,
    );
  }
}

/** How a matmul's kernels read their input (the dense and the quantized matmuls differ). */
export interface MatmulInput {
  cpu: boolean;
  /** Rows per invocation (cpu) or per workgroup (gpu) of the variants before the tiled GEMM. */
  tiles: readonly number[];
  /** The x binding: activation rows (or the fast quantized path's Q8 rows). */
  x: BindingResource;
  /** Elements (or words) between x rows. */
  ldx: number;
  /** The kernels read the norm weight (`gamma`). */
  gamma: boolean;
}

/**
 * The op over `kernels` (the variants of {@link partGrid}): per part of `w` its uniform
 * parameters and bindings for `use` (epilogues as `matmul_epilogue.wgsl` reads them), and the
 * variant a row count picks. Shared by the dense and the quantized matmuls.
 */
export function matmulParts(
  kernels: CompiledKernel[],
  w: MatrixWeight,
  use: MatmulUse,
  label: string,
  input: MatmulInput,
): MatmulOp {
  const { cpu, tiles } = input;
  const uniforms: GPUBuffer[] = [];
  const parts = w.parts.map((part) => {
    const p = kernels[0].uniform({
      k: w.k,
      blocks: part.blocks,
      block_off: part.blockStart,
      ldx: input.ldx,
      ldo: use.ldo,
      n_out: use.nOut,
      rows_kind: use.rows === "logits" ? 1 : 0,
      eps: use.norm?.eps ?? 0,
      nh: use.rope?.numHeads ?? 0,
      nkv: use.rope?.numKvHeads ?? 0,
      head_dim: use.rope?.headDim ?? 0,
      block_size: use.rope?.blockSize ?? 0,
      w_stride: w.rowStride,
      cap: use.softcap ?? 0,
    }, `${label}[${part.blockStart}].params`);
    uniforms.push(p);
    const resources: Record<string, BindingResource> = {
      p,
      x: input.x,
      w: part.buffer,
      out: use.out,
    };
    if (input.gamma) resources.gamma = use.norm!.gamma;
    if (use.bias) resources.bias = use.bias;
    if (use.rope) {
      Object.assign(resources, {
        inv_freq: use.rope.invFreq,
        k_cache: use.rope.kCache,
        v_cache: use.rope.vCache,
      });
    }
    const grid = (rows: number, variant: number): Grid =>
      partGrid(cpu, tiles, part.blocks, rows, variant);
    return { label: `${label}[${part.blockStart}]`, resources, grid };
  });
  return {
    kernels,
    variant: (rows) => (!cpu && rows >= GEMM_MIN_ROWS ? tiles.length : rowTileIndex(rows)),
    parts,
    uniforms,
  };
}
