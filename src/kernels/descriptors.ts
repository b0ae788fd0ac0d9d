/**
 * Typed descriptors of the kernels in `kernels/`: the defines each is specialised on and the
 * names of its bindings (indices and access modes are read from the WGSL itself). How each is
 * dispatched lives with the op that uses it.
 * @module
 */
import { kernel, type KernelDescriptor } from "./registry.ts";

/** Embedding gather (one table part); ids may refer to sampler output records. */
export const EMBED: KernelDescriptor<{ F16: boolean }, "table" | "out" | "records"> = kernel("embed", ["table", "out", "records"]);

/** RMSNorm, optionally accumulating into its output or gathering logit rows. */
export const RMSNORM: KernelDescriptor<{ ADD: boolean; GATHER: boolean }, "x" | "w" | "out"> = kernel("rmsnorm", ["x", "w", "out"]);

/** Matmul/GEMV against an HF Linear weight; TM rows per invocation; optional bias. */
export const MATMUL: KernelDescriptor<
  { F16: boolean; VEC: boolean; TM: number; ACCUM: boolean; BIAS: boolean },
  "x" | "w" | "out" | "bias"
> = kernel("matmul", ["x", "w", "out", "bias"]);

/** q/k norm (Qwen3) + RoPE + KV-cache write. */
export const ROPE_KV: KernelDescriptor<{ QK_NORM: boolean; HALF: number }, "qkv" | "inv_freq" | "k_cache" | "v_cache" | "q_norm" | "k_norm"> =
  kernel("rope_kv", ["qkv", "inv_freq", "k_cache", "v_cache", "q_norm", "k_norm"]);

/** Paged attention (the fast path). */
export const PAGED_ATTENTION: KernelDescriptor<{ GROUP: number; HEAD_DIM: number }, "qkv" | "k_cache" | "v_cache" | "out"> =
  kernel("paged_attention", ["qkv", "k_cache", "v_cache", "out"]);

/** Eager reference attention; PHASE_* selects scores, softmax or values. */
export const EAGER_ATTENTION: KernelDescriptor<
  { PHASE_SCORES: boolean; PHASE_SOFTMAX: boolean; PHASE_VALUES: boolean },
  "qkv" | "k_cache" | "v_cache" | "scores" | "out"
> = kernel("eager_attention", ["qkv", "k_cache", "v_cache", "scores", "out"]);

/** Gated activation (SiLU or GELU-tanh) times up. */
export const ACT_MUL: KernelDescriptor<{ GELU_TANH: boolean }, "gu" | "out"> = kernel("act_mul", ["gu", "out"]);

/** In-place logit soft-capping. */
export const SOFTCAP: KernelDescriptor<Record<string, never>, "x"> = kernel("softcap", ["x"]);

/** GPU sampling of every logit row into output records. */
export const SAMPLE: KernelDescriptor<Record<string, never>, "logits" | "counts" | "prompt_mask" | "records"> =
  kernel("sample", ["logits", "counts", "prompt_mask", "records"]);

/** Constrained decoding: a per-row token bitmask applied to the logits before sampling. */
export const MASK: KernelDescriptor<Record<string, never>, "logits" | "masks"> = kernel("mask", ["logits", "masks"]);

/** Every kernel file the model needs. */
export const KERNEL_FILES: readonly string[] = [EMBED, RMSNORM, MATMUL, ROPE_KV, PAGED_ATTENTION, EAGER_ATTENTION, ACT_MUL, SOFTCAP, SAMPLE, MASK]
  .map((k) => k.file);
