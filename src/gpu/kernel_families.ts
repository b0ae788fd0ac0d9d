/**
 * The packed-weight kernels (`gemv_c8`, `gemv_wg`, `gemm_tiled`, `attention_lanes`,
 * `attention_combine`): their descriptors, how their uniform parameters are packed, and which
 * family an adapter gets.
 *
 * Two families: **cpu** for CPU adapters (lavapipe, SwiftShader, WARP), where a workgroup
 * runs on one thread as 8-wide SIMD and loads cost per instruction, and **gpu** for real
 * GPUs (coalesced loads, workgroup or subgroup reductions, workgroup-memory tiles). The
 * adapter decides unless an option overrides it; both are correct everywhere.
 * @module
 */
import type { BindingKind, KernelDescriptor } from "./kernel.ts";

/** Kernel family: shaped for CPU adapters or for GPUs. */
export type KernelFamily = "cpu" | "gpu";

/** What {@link kernelFamilyFor} looks at. */
export interface AdapterFacts {
  /** `GPUAdapterInfo.isFallbackAdapter` where the runtime reports it. */
  isFallbackAdapter?: boolean;
  /** Adapter description or vendor string. */
  description: string;
}

const CPU_ADAPTERS = /llvmpipe|lavapipe|swiftshader|warp|softpipe|basic render/i;

/** The family for an adapter: CPU adapters get "cpu"; an explicit choice wins. */
export function kernelFamilyFor(adapter: AdapterFacts, override?: KernelFamily): KernelFamily {
  if (override) return override;
  return adapter.isFallbackAdapter || CPU_ADAPTERS.test(adapter.description) ? "cpu" : "gpu";
}

/** Defines of the packed matmuls (all three files take the same set). */
export interface MatmulDefines {
  [name: string]: number | boolean;
  /** Rows per invocation (gemv_c8, gemv_wg) or per thread tile (gemm_tiled: ignored). */
  TM: number;
  /** Workgroup size (gemv_c8, gemv_wg). */
  WG: number;
  /** gemv_c8: invocations sharing a column block, each one K slice (1: no split). */
  KS: number;
  /** x rows read as vec4 (K % 4 == 0). */
  XVEC: boolean;
  /** Scale each row by 1/rms(x) (the RMSNorm weight is folded into the matrix). */
  NORM: boolean;
  /** Add into `out` (residual add). */
  ACCUM: boolean;
  /** act(gate) * up epilogue (gluColumns layout). */
  GLU: boolean;
  /** GELU-tanh instead of SiLU in the GLU epilogue. */
  GELU: boolean;
  /** RoPE + KV-cache write epilogue (ropeColumns layout). */
  ROPE: boolean;
  /** Per-column bias (permuted like the columns). */
  BIAS: boolean;
  /** ROPE: the KV cache holds f16 (pairs packed in u32). */
  KV_F16: boolean;
  /** Logit rows read their token's x row. */
  GATHER: boolean;
  /** Multiply x by the norm weight as it is loaded (binding after `out`). */
  GAMMA: boolean;
  /** Subgroup reductions (gemv_wg only; needs the `subgroups` feature). */
  SUBGROUPS: boolean;
  /** gemv_wg: fixed 32-wide K slices summed in order (bit-identical to gemm_tiled). */
  SLICED: boolean;
  /** gemv_wg SLICED: slices the workgroup buffer holds (>= ceil(K / 32)). */
  MAX_SLICES: number;
}

/** Default (all-off) defines; spread and override. */
export const MATMUL_DEFAULTS: MatmulDefines = {
  TM: 1,
  WG: 16,
  KS: 1,
  XVEC: true,
  NORM: false,
  ACCUM: false,
  GLU: false,
  GELU: false,
  ROPE: false,
  BIAS: false,
  KV_F16: false,
  GATHER: false,
  GAMMA: false,
  SUBGROUPS: false,
  SLICED: false,
  MAX_SLICES: 1,
};

/** The packed matmul files. */
export type MatmulFile = "gemv_c8" | "gemv_wg" | "gemm_tiled";

/**
 * Descriptor of a packed matmul for a binding set: 0 meta, 1 params, 2 x, 3 w, 4 out, then in
 * this order the ones in use: the norm weight (GAMMA), the bias (BIAS), and RoPE's inv_freq,
 * k_cache, v_cache (ROPE). The defines must agree with `options`.
 */
export function matmulDescriptor(
  file: MatmulFile,
  options: { rope: boolean; bias: boolean; gamma?: boolean },
): KernelDescriptor<MatmulDefines> {
  const bindings: BindingKind[] = [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "storage",
  ];
  const numbers: Record<string, number> = {
    B_GAMMA: 0,
    B_BIAS: 0,
    B_ROPE: 0,
    B_ROPE1: 0,
    B_ROPE2: 0,
  };
  if (options.gamma) numbers.B_GAMMA = bindings.push("read-only-storage") - 1;
  if (options.bias) numbers.B_BIAS = bindings.push("read-only-storage") - 1;
  if (options.rope) {
    numbers.B_ROPE = bindings.push("read-only-storage") - 1;
    numbers.B_ROPE1 = bindings.push("storage") - 1;
    numbers.B_ROPE2 = bindings.push("storage") - 1;
  }
  return {
    file,
    bindings,
    derive: (d) => {
      if (d.ROPE !== options.rope || d.BIAS !== options.bias || d.GAMMA !== !!options.gamma) {
        throw new Error(`${file}: defines ROPE/BIAS/GAMMA disagree with the descriptor's bindings`);
      }
      return { ...numbers, KSPLIT: d.KS > 1 };
    },
  };
}

/** The uniform parameters of the packed matmuls (`struct Params` in matmul_epilogue.wgsl). */
export interface MatmulParams {
  /** Reduction length K. */
  k: number;
  /** Output column blocks of 8 (packed columns / 8). */
  blocks: number;
  /** Floats between x rows. */
  ldx: number;
  /** Floats between output rows. */
  ldo: number;
  /** First output column written. */
  nOff?: number;
  /** Output columns that exist (GLU: the intermediate size; ROPE: unused). */
  nOut: number;
  /** 0: one row per token; 1: one row per logit row. */
  rowsKind?: 0 | 1;
  /** RMSNorm epsilon (NORM). */
  eps?: number;
  /** ROPE: query heads, kv heads, head dim, KV block size. */
  numHeads?: number;
  numKvHeads?: number;
  headDim?: number;
  blockSize?: number;
  /** Halves per weight row in the padded-rows layout (gpu family). */
  wStride?: number;
}

/** Packs {@link MatmulParams} into the 64-byte uniform. */
export function packMatmulParams(p: MatmulParams): ArrayBuffer {
  const data = new ArrayBuffer(64);
  const u = new Uint32Array(data);
  const f = new Float32Array(data);
  u[0] = p.k;
  u[1] = p.blocks;
  u[2] = p.ldx;
  u[3] = p.ldo;
  u[4] = p.nOff ?? 0;
  u[5] = p.nOut;
  u[6] = p.rowsKind ?? 0;
  f[7] = p.eps ?? 0;
  u[8] = p.numHeads ?? 0;
  u[9] = p.numKvHeads ?? 0;
  u[10] = p.headDim ?? 0;
  u[11] = p.blockSize ?? 0;
  u[12] = p.wStride ?? 0;
  return data;
}

/** Defines of `attention_lanes`. */
export interface AttentionLanesDefines {
  [name: string]: number | boolean;
  /** Query heads per kv head. */
  GROUP: number;
  HEAD_DIM: number;
  /** Tokens per query tile (1 for decode). */
  TQ: number;
  /** Lanes (keys in flight) per workgroup; WG * TQ * GROUP * HEAD_DIM * 4 bytes <= 32 KiB. */
  WG: number;
  /** The KV cache holds f16 (needs HEAD_DIM % 8 == 0). */
  KV_F16: boolean;
}

/** Split-K attention, lanes = keys (cpu family). */
export const ATTENTION_LANES: KernelDescriptor<AttentionLanesDefines> = {
  file: "attention_lanes",
  bindings: [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
    "storage",
    "storage",
  ],
  derive: (d) => ({ TILED: d.TQ > 1 }),
};

/** Merge of attention_lanes' split partials. */
export const ATTENTION_COMBINE: KernelDescriptor<{ HEAD_DIM: number }> = {
  file: "attention_combine",
  bindings: [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
  ],
};

/** The uniform parameters of the attention kernels. */
export interface AttentionParams {
  numHeads: number;
  numKvHeads: number;
  blockSize: number;
  /** Floats between query rows (nh * head_dim for a q buffer, the qkv width for qkv rows). */
  qStride: number;
  /** Sliding window in tokens (0: none). */
  window: number;
  scale: number;
  /** Attention-logit soft cap (0: none). */
  softcap: number;
  /** Splits the partial buffers hold per (token, head). */
  maxSplits: number;
  /**
   * Keys per split (a multiple of the lane count). Fixed per deployment, not per step: split
   * boundaries are absolute, so results do not depend on the batch.
   */
  splitLen: number;
}

/** Packs {@link AttentionParams} into the 48-byte uniform. */
export function packAttentionParams(p: AttentionParams): ArrayBuffer {
  const data = new ArrayBuffer(48);
  const u = new Uint32Array(data);
  const f = new Float32Array(data);
  u[0] = p.numHeads;
  u[1] = p.numKvHeads;
  u[2] = p.blockSize;
  u[3] = p.qStride;
  u[4] = p.window;
  f[5] = p.scale;
  f[6] = p.softcap;
  u[7] = p.maxSplits;
  u[8] = p.splitLen;
  return data;
}

/**
 * Largest lane count (power of two, <= `max`) whose merge buffers fit 32 KiB of workgroup
 * memory for the largest query tile in use. Use one count for every tile size of a model: the
 * lane of a key decides the summation order, so it must not change with the batch. 8 (one
 * SIMD row of lavapipe) measured ~10% faster than 16 on short contexts.
 */
export function attentionLanes(
  group: number,
  headDim: number,
  tq: number,
  maxWorkgroupBytes = 32768,
  max = 8,
): number {
  let wg = max;
  while (wg > 1 && wg * tq * group * (headDim * 4 + 8) > maxWorkgroupBytes) wg /= 2;
  return wg;
}
