/**
 * Typed descriptors of the kernels in `kernels/`: bindings (group 0, in order) and the
 * defines each is specialised on. How each is dispatched lives with the op that uses it.
 * @module
 */
import type { KernelDescriptor } from "./kernel.ts";

/** Embedding gather (one table part); ids may refer to sampler output records. */
export const EMBED: KernelDescriptor<{ F16: boolean }> = {
  file: "embed",
  bindings: ["meta", "uniform", "read-only-storage", "storage", "read-only-storage"],
};

/** RMSNorm, optionally accumulating into its output or gathering logit rows. */
export const RMSNORM: KernelDescriptor<{ ADD: boolean; GATHER: boolean }> = {
  file: "rmsnorm",
  bindings: ["meta", "uniform", "read-only-storage", "read-only-storage", "storage"],
};

/** Matmul/GEMV against an HF Linear weight; TM rows per invocation. */
export const MATMUL: KernelDescriptor<
  { F16: boolean; VEC: boolean; TM: number; ACCUM: boolean; BIAS: boolean }
> = {
  file: "matmul",
  bindings: ["meta", "uniform", "read-only-storage", "read-only-storage", "storage"],
};

/** Matmul with a bias binding. */
export const MATMUL_BIAS: KernelDescriptor<
  { F16: boolean; VEC: boolean; TM: number; ACCUM: boolean; BIAS: boolean }
> = {
  file: "matmul",
  bindings: [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "storage",
    "read-only-storage",
  ],
};

/** q/k norm + RoPE + KV-cache write. */
export const ROPE_KV: KernelDescriptor<{ QK_NORM: boolean; HALF: number }> = {
  file: "rope_kv",
  bindings: ["meta", "uniform", "storage", "read-only-storage", "storage", "storage"],
};

/** RoPE + KV write with Qwen3's q/k norm weights. */
export const ROPE_KV_QK_NORM: KernelDescriptor<{ QK_NORM: boolean; HALF: number }> = {
  file: "rope_kv",
  bindings: [
    "meta",
    "uniform",
    "storage",
    "read-only-storage",
    "storage",
    "storage",
    "read-only-storage",
    "read-only-storage",
  ],
};

/** Paged attention (the fast path). */
export const PAGED_ATTENTION: KernelDescriptor<{ GROUP: number; HEAD_DIM: number }> = {
  file: "paged_attention",
  bindings: [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
  ],
};

/** Eager reference attention; PHASE_* selects scores, softmax or values. */
export const EAGER_ATTENTION: KernelDescriptor<
  { PHASE_SCORES: boolean; PHASE_SOFTMAX: boolean; PHASE_VALUES: boolean }
> = {
  file: "eager_attention",
  bindings: [
    "meta",
    "uniform",
    "read-only-storage",
    "read-only-storage",
    "read-only-storage",
    "storage",
    "storage",
  ],
};

/** Gated activation (SiLU or GELU-tanh) times up. */
export const ACT_MUL: KernelDescriptor<{ GELU_TANH: boolean }> = {
  file: "act_mul",
  bindings: ["meta", "uniform", "read-only-storage", "storage"],
};

/** In-place logit soft-capping. */
export const SOFTCAP: KernelDescriptor<Record<string, never>> = {
  file: "softcap",
  bindings: ["meta", "uniform", "storage"],
};

/** Row-wise argmax (greedy sampling). */
export const ARGMAX: KernelDescriptor<Record<string, never>> = {
  file: "argmax",
  bindings: ["meta", "uniform", "read-only-storage", "storage"],
};

/** GPU sampling of every logit row into output records. */
export const SAMPLE: KernelDescriptor<Record<string, never>> = {
  file: "sample",
  bindings: ["meta", "uniform", "read-only-storage", "storage", "read-only-storage", "storage"],
};

/** Every kernel file the model needs. */
export const KERNEL_FILES = [
  "embed",
  "rmsnorm",
  "matmul",
  "rope_kv",
  "paged_attention",
  "eager_attention",
  "act_mul",
  "softcap",
  "argmax",
  "sample",
];
