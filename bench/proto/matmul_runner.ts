/**
 * Runs one packed matmul (any family, any epilogue) on host data: packs the weight for the
 * family, uploads, dispatches with the family's grid and reads the output back. Tests and the
 * benchmark's correctness checks share it.
 * @module
 */
import { GpuKit, type Grid, type MetaSlot } from "./gpu_kit.ts";
import {
  MATMUL_DEFAULTS,
  type MatmulDefines,
  matmulDescriptor,
  type MatmulFile,
  packMatmulParams,
} from "../../src/gpu/kernel_families.ts";
import {
  type ColumnMap,
  type HostMatrix,
  packColumnBlocks,
  type PackedMatrix,
  packPaddedRows,
} from "../../src/model/weight_layout.ts";
import type { CompiledKernel } from "../../src/gpu/kernel.ts";

/** A matmul variant: the file plus the defines that pick its reduction. */
export interface MatmulVariant {
  name: string;
  file: MatmulFile;
  /** Extra defines (WG, SLICED, SUBGROUPS). */
  defines?: Partial<MatmulDefines>;
}

/** Every variant the tests run (gemv_wg with subgroups only where the device has them). */
export function matmulVariants(hasSubgroups: boolean): MatmulVariant[] {
  const v: MatmulVariant[] = [
    { name: "gemv_c8", file: "gemv_c8", defines: { WG: 16 } },
    { name: "gemv_c8 k-split 4", file: "gemv_c8", defines: { WG: 16, KS: 4 } },
    { name: "gemv_wg", file: "gemv_wg", defines: { WG: 64 } },
    { name: "gemv_wg sliced", file: "gemv_wg", defines: { WG: 64, SLICED: true } },
    { name: "gemm_tiled", file: "gemm_tiled", defines: { WG: 64 } },
  ];
  if (hasSubgroups) {
    v.push({ name: "gemv_wg subgroups", file: "gemv_wg", defines: { WG: 64, SUBGROUPS: true } });
  }
  return v;
}

/** Rows per invocation the forward pass would pick for `rows` (1, 2, 4, 8). */
export function rowTile(rows: number): number {
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

/** The packed layout a file reads. */
export function packFor(
  file: MatmulFile,
  m: HostMatrix,
  columns?: ColumnMap,
  kScale?: Float32Array,
): PackedMatrix {
  return file === "gemv_c8"
    ? packColumnBlocks(m, { columns, kScale })
    : packPaddedRows(m, { columns, kScale });
}

/** The dispatch grid of a packed matmul over `rows` rows. */
export function matmulGrid(
  file: MatmulFile,
  blocks: number,
  rows: number,
  defines: MatmulDefines,
): Grid {
  if (file === "gemv_c8") {
    return [Math.ceil(blocks / (defines.WG / defines.KS)), Math.ceil(rows / defines.TM), 1];
  }
  if (file === "gemv_wg") return [blocks, Math.ceil(rows / defines.TM), 1];
  return [Math.ceil(blocks / 8), Math.ceil(rows / 32), 1];
}

/** A matmul ready to dispatch (built once, encoded many times). */
export interface BuiltMatmul {
  kernel: CompiledKernel;
  group: GPUBindGroup;
  grid: Grid;
  packed: PackedMatrix;
  /** The same bind group with another weight buffer (benchmarks rotate copies). */
  rebind: (weight: GPUBuffer) => GPUBindGroup;
}

/** Inputs of {@link buildMatmul}. */
export interface MatmulJob {
  variant: MatmulVariant;
  /** Source weight, HF row-major [N, K]. */
  weight: HostMatrix;
  columns?: ColumnMap;
  kScale?: Float32Array;
  /** Rows the step runs (tokens, or logit rows with GATHER). */
  rows: number;
  meta: MetaSlot;
  x: GPUBuffer;
  out: GPUBuffer;
  ldx: number;
  ldo: number;
  nOut: number;
  nOff?: number;
  eps?: number;
  defines?: Partial<MatmulDefines>;
  gamma?: GPUBuffer;
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
  /** Force a rows-per-invocation tile (default: {@link rowTile}). */
  tm?: number;
  /** Already packed for this file (skips packing), and already uploaded (skips the upload). */
  packed?: PackedMatrix;
  weightBuffer?: GPUBuffer;
}

/** Packs, uploads and binds one matmul. */
export function buildMatmul(kit: GpuKit, job: MatmulJob): BuiltMatmul {
  const { variant } = job;
  const packed = job.packed ?? packFor(variant.file, job.weight, job.columns, job.kScale);
  const defines: MatmulDefines = {
    ...MATMUL_DEFAULTS,
    XVEC: job.weight.cols % 4 === 0,
    TM: job.tm ?? rowTile(job.rows),
    ...variant.defines,
    ...job.defines,
    GAMMA: !!job.gamma,
    BIAS: !!job.bias,
    ROPE: !!job.rope,
  };
  if (defines.SLICED) defines.MAX_SLICES = Math.ceil(job.weight.cols / 32);
  const kernel = kit.kernel(
    matmulDescriptor(variant.file, { rope: !!job.rope, bias: !!job.bias, gamma: !!job.gamma }),
    defines,
  );
  const params = packMatmulParams({
    k: job.weight.cols,
    blocks: packed.cols / 8,
    ldx: job.ldx,
    ldo: job.ldo,
    nOff: job.nOff,
    nOut: job.nOut,
    rowsKind: defines.GATHER ? 1 : 0,
    eps: job.eps,
    numHeads: job.rope?.numHeads,
    numKvHeads: job.rope?.numKvHeads,
    headDim: job.rope?.headDim,
    blockSize: job.rope?.blockSize,
    wStride: packed.rowStride,
  });
  const buffers: GPUBuffer[] = [
    kit.uniform(params),
    job.x,
    job.weightBuffer ?? kit.buffer(packed.data),
    job.out,
  ];
  if (job.gamma) buffers.push(job.gamma);
  if (job.bias) buffers.push(job.bias);
  if (job.rope) buffers.push(job.rope.invFreq, job.rope.kCache, job.rope.vCache);
  const group = kit.bind(kernel, job.meta, buffers);
  const rebind = (weight: GPUBuffer) =>
    kit.bind(kernel, job.meta, buffers.map((b, i) => (i === 2 ? weight : b)));
  return {
    kernel,
    group,
    grid: matmulGrid(variant.file, packed.cols / 8, job.rows, defines),
    packed,
    rebind,
  };
}

/** Builds and runs one matmul, waiting for it. */
export async function runMatmul(kit: GpuKit, job: MatmulJob): Promise<BuiltMatmul> {
  const built = buildMatmul(kit, job);
  await kit.run([built]);
  return built;
}

export { GpuKit };
