/**
 * Which kernel family an adapter gets, and the few shape constants each family fixes.
 *
 * **cpu** for CPU adapters (lavapipe, SwiftShader, WARP), where a workgroup runs on one
 * thread as 8-wide SIMD and every load costs per instruction: column-block weights, one
 * invocation per 8 output columns and up to 8 rows (`gemv_c8`). **gpu** for real GPUs:
 * padded-row weights read as coalesced 16-byte words, a workgroup per 8-column block
 * (`gemv_wg`), workgroup-memory tiles for prefill (`gemm_tiled`). Attention
 * (`attention_lanes` + `attention_combine`) is shared. The adapter decides unless an option
 * overrides it; both families are correct everywhere.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";

/** What {@link kernelFamilyFor} looks at (a subset of `Gpu`). */
export interface AdapterFacts {
  /** `GPUAdapterInfo.isFallbackAdapter` where the runtime reports it. */
  isFallbackAdapter?: boolean;
  /** Adapter description or vendor string. */
  description: string;
}

const CPU_ADAPTERS = /llvmpipe|lavapipe|swiftshader|warp|softpipe|basic render/i;

/** The family for an adapter: CPU adapters get "cpu", others "gpu"; an explicit choice wins. */
export function kernelFamilyFor(adapter: AdapterFacts, override?: KernelFamily): KernelFamily {
  if (override) return override;
  return adapter.isFallbackAdapter || CPU_ADAPTERS.test(adapter.description) ? "cpu" : "gpu";
}

/** gemv_c8's workgroup: 8 lanes, one SIMD row of lavapipe (measured faster than 16). */
export const CPU_MATMUL_WG = 8;
/** gemv_wg's workgroup (8 columns x 8 K slices per round). */
export const GPU_MATMUL_WG = 64;
/** gemm_tiled's tile: rows x columns per workgroup. */
export const GEMM_TILE = { rows: 32, cols: 64 } as const;
/** From this many rows a gpu-family step uses gemm_tiled instead of gemv_wg. */
export const GEMM_MIN_ROWS = 16;
/** Rows per invocation of the GEMV kernels: 1, 2, 4 or 8 by the step's row count. */
export const ROW_TILES: readonly number[] = [1, 2, 4, 8];

/** Index into {@link ROW_TILES} for a row count. */
export function rowTileIndex(rows: number): number {
  return rows <= 1 ? 0 : rows <= 2 ? 1 : rows <= 4 ? 2 : 3;
}

/**
 * Keys per attention split, per family. Fixed for a runner (split boundaries are absolute,
 * so a token's bits never depend on the batch); a step whose longest context needs several
 * splits adds the combine dispatch to every layer.
 */
export const ATTENTION_SPLIT: Record<KernelFamily, number> = { cpu: 512, gpu: 256 };

/** Query tile of attention for steps where a sequence brings several tokens (prefill). */
export const ATTENTION_QUERY_TILE = 4;

/**
 * Largest lane count (power of two, <= `max`) whose merge buffers fit the workgroup memory
 * for the largest query tile in use. One count for every tile size of a model: the lane of a
 * key decides the summation order, so it must not change with the batch. 8 (one SIMD row of
 * lavapipe) measured ~10% faster than 16 on short contexts.
 */
export function attentionLanes(group: number, headDim: number, tq: number, maxWorkgroupBytes = 16384, max = 8): number {
  let wg = max;
  while (wg > 1 && wg * tq * group * (headDim * 4 + 8) > maxWorkgroupBytes) wg /= 2;
  return wg;
}

/**
 * Tokens per chunk of the chunkwise delta rule (`deltanet_rule.wgsl`, CHUNKED): the largest
 * power of two up to 16 whose workgroup memory (the chunk's q and k rows, squared outputs,
 * two chunk x chunk matrices, and the scan's rows) fits. 16: the forward substitution is
 * serial in the chunk (n^2 / 2 per column), so longer chunks stop paying on CPU adapters.
 */
export function deltaChunk(dk: number, dv: number, maxWorkgroupBytes = 16384, max = 16): number {
  let c = max;
  const bytes = (c: number) => 4 * (c * (2 * dk + dv) + 2 * c * c + 4 * c + 2 * dk + dv);
  while (c > 2 && bytes(c) > maxWorkgroupBytes) c /= 2;
  return c;
}
