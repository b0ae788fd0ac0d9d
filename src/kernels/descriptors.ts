/**
 * Typed descriptors of the kernels in `kernels/`: the defines each is specialised on and the
 * names of its bindings (indices and access modes are read from the WGSL itself). How each is
 * dispatched lives with the op that uses it.
 * @module
 */
import { type Defines, kernel, type KernelDescriptor } from "./registry.ts";

/** Embedding gather (one table part, in its family's matmul layout); ids may refer to sampler records. */
export const EMBED: KernelDescriptor<{ F16: boolean; COLUMN_BLOCKS: boolean }, "table" | "out" | "records"> = kernel(
  "embed",
  ["table", "out", "records"],
);

/** RMSNorm added into its output (Gemma-2's post-norms). */
export const RMSNORM: KernelDescriptor<{ AT_SLOT: boolean }, "x" | "gamma" | "out"> = kernel("rmsnorm", ["x", "gamma", "out"]);

/** Pooled final hidden states (final RMSNorm, summed over each pooled row's tokens): embeddings. */
export const POOL_HIDDEN: KernelDescriptor<Record<string, never>, "x" | "gamma" | "out"> = kernel("pool_hidden", ["x", "gamma", "out"]);

/** MTP speculation: the head's input row cat(norm_e(embedding), norm_h(hidden)). */
export const MTP_INPUT: KernelDescriptor<Record<string, never>, "x" | "gamma_e" | "gamma_h" | "target_hidden" | "own_hidden" | "out"> = kernel(
  "mtp_input",
  ["x", "gamma_e", "gamma_h", "target_hidden", "own_hidden", "out"],
);

/** What a packed-weight matmul computes (the epilogue and input flags of matmul_epilogue.wgsl). */
export type MatmulFlags = {
  /** Weights stored f32 (else f16). */
  W_F32: boolean;
  /** x rows read as vec4 (K % 4 == 0). */
  XVEC: boolean;
  /** Scale each row by 1/rms(x) (the RMSNorm before the matmul folded in). */
  NORM: boolean;
  /** Multiply x by the norm weight as it is loaded (binding `gamma`). */
  GAMMA: boolean;
  /** Add into `out` (residual add). */
  ACCUM: boolean;
  /** act(gate) * up epilogue (gluColumns layout). */
  GLU: boolean;
  /** GELU-tanh instead of SiLU in the GLU epilogue. */
  GELU: boolean;
  /** RoPE + KV-cache write epilogue (ropeColumns layout; bindings inv_freq, k_cache, v_cache). */
  ROPE: boolean;
  /** ROPE: the KV cache holds f16. */
  KV_F16: boolean;
  /** Per-column bias (permuted like the columns; binding `bias`). */
  BIAS: boolean;
  /** cap * tanh(v / cap) on the outputs. */
  SOFTCAP: boolean;
  /** Logit rows read their token's x row. */
  GATHER: boolean;
};

/** Defines of the packed-weight matmuls (gemv_c8, gemv_wg, gemm_tiled). */
export type MatmulDefines = MatmulFlags & {
  /** Rows per invocation (gemv_c8, gemv_wg; gemm_tiled: ignored). */
  TM: number;
  /** Workgroup size (gemv_c8, gemv_wg; gemm_tiled: ignored). */
  WG: number;
};

/** The binding names of the packed matmuls. */
export type MatmulBinding = "x" | "w" | "out" | "gamma" | "bias" | "inv_freq" | "k_cache" | "v_cache";

const MATMUL_BINDINGS: readonly MatmulBinding[] = ["x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"];

/**
 * Numbers the optional bindings after `out` (4) in order, so each variant's are 0..n-1 (the
 * dense and the quantized matmuls alike).
 */
export function optionalBindings(d: Pick<MatmulFlags, "GAMMA" | "BIAS" | "ROPE">): Defines {
  let next = 5;
  const n = (on: boolean) => (on ? next++ : 0);
  return {
    B_GAMMA: n(d.GAMMA),
    B_BIAS: n(d.BIAS),
    B_INV_FREQ: n(d.ROPE),
    B_K_CACHE: n(d.ROPE),
    B_V_CACHE: n(d.ROPE),
  };
}

/** CPU-family matmul: column-block weights, 8 columns and TM rows per invocation. */
export const GEMV_C8: KernelDescriptor<MatmulDefines, MatmulBinding> = kernel("gemv_c8", MATMUL_BINDINGS, optionalBindings);
/** GPU-family GEMV: padded-row weights, a workgroup per 8-column block, fixed K slices. */
export const GEMV_WG: KernelDescriptor<MatmulDefines, MatmulBinding> = kernel("gemv_wg", MATMUL_BINDINGS, optionalBindings);
/** GPU-family tiled GEMM for many rows; the same K slices as GEMV_WG (bit-identical rows). */
export const GEMM_TILED: KernelDescriptor<MatmulDefines, MatmulBinding> = kernel("gemm_tiled", MATMUL_BINDINGS, optionalBindings);

/**
 * q/k norm (Qwen3) + RoPE + KV-cache write over qkv rows (the unfused path); PARTIAL rotates
 * only the first 2 * ROT_HALF dims of each head.
 */
export const ROPE_KV: KernelDescriptor<
  { QK_NORM: boolean; HALF: number; KV_F16: boolean; PARTIAL: boolean; ROT_HALF: number },
  "qkv" | "inv_freq" | "k_cache" | "v_cache" | "q_norm" | "k_norm"
> = kernel("rope_kv", ["qkv", "inv_freq", "k_cache", "v_cache", "q_norm", "k_norm"]);

/** Gated DeltaNet: causal depthwise conv1d + SiLU over q|k|v, carrying the per-sequence conv state. */
export const DELTANET_CONV: KernelDescriptor<{ CONV_K: number }, "x" | "w" | "conv_state" | "out"> = kernel(
  "deltanet_conv",
  ["x", "w", "conv_state", "out"],
);

/**
 * Gated DeltaNet: the gated delta rule + gated RMSNorm, a sequential scan per sequence and
 * value head; CHUNKED runs sequences of more than one token in the chunkwise (WY) form,
 * CHUNK tokens per chunk (see `deltaChunk` in `family.ts`).
 */
export const DELTANET_RULE: KernelDescriptor<
  { DK: number; DV: number; CHUNKED: boolean; CHUNK: number },
  "x" | "proj" | "a_log" | "dt_bias" | "norm_w" | "state" | "out"
> = kernel("deltanet_rule", ["x", "proj", "a_log", "dt_bias", "norm_w", "state", "out"]);

/** Gated attention: the attention output times sigmoid(gate). */
export const ATTN_GATE: KernelDescriptor<Record<string, never>, "gate" | "out"> = kernel("attn_gate", ["gate", "out"]);

/** Defines of attention_lanes. */
export type AttentionLanesDefines = {
  /** Query heads per kv head. */
  GROUP: number;
  HEAD_DIM: number;
  /** Tokens per query tile (1 for decode). */
  TQ: number;
  /** Lanes (keys in flight) per workgroup. */
  WG: number;
  /** The KV cache holds f16 (needs HEAD_DIM % 8 == 0). */
  KV_F16: boolean;
  /** Learned per-head softmax sinks (binding `sinks`, gpt-oss). */
  SINKS: boolean;
};

/** Split-K paged attention, lanes are keys (the fast path). */
export const ATTENTION_LANES: KernelDescriptor<
  AttentionLanesDefines,
  "query" | "k_cache" | "v_cache" | "out" | "part_acc" | "part_ml" | "info" | "sinks"
> = kernel("attention_lanes", ["query", "k_cache", "v_cache", "out", "part_acc", "part_ml", "info", "sinks"], (d) => ({ TILED: d.TQ > 1 }));

/** Merge of attention_lanes' split partials. */
export const ATTENTION_COMBINE: KernelDescriptor<{ HEAD_DIM: number; SINKS: boolean }, "part_acc" | "part_ml" | "info" | "out" | "sinks"> = kernel(
  "attention_combine",
  ["part_acc", "part_ml", "info", "out", "sinks"],
);

/** Eager reference attention; PHASE_* selects scores, softmax or values. */
export const EAGER_ATTENTION: KernelDescriptor<
  { PHASE_SCORES: boolean; PHASE_SOFTMAX: boolean; PHASE_VALUES: boolean; KV_F16: boolean; SINKS: boolean },
  "query" | "k_cache" | "v_cache" | "scores" | "out" | "sinks"
> = kernel("eager_attention", ["query", "k_cache", "v_cache", "scores", "out", "sinks"]);

/**
 * GPU sampling of every logit row into output records; with a draft model it also keeps the
 * draft's distributions (`probs`) and verifies drafts against them (rejection sampling).
 */
export const SAMPLE: KernelDescriptor<Record<string, never>, "logits" | "counts" | "prompt_mask" | "records" | "probs"> =
  kernel("sample", ["logits", "counts", "prompt_mask", "records", "probs"]);

/** Constrained decoding: a per-row token bitmask applied to the logits before sampling. */
export const MASK: KernelDescriptor<Record<string, never>, "logits" | "masks"> = kernel("mask", ["logits", "masks"]);

/** Every kernel file the model needs. */
export const KERNEL_FILES: readonly string[] = [
  EMBED,
  RMSNORM,
  GEMV_C8,
  GEMV_WG,
  GEMM_TILED,
  ROPE_KV,
  DELTANET_CONV,
  DELTANET_RULE,
  ATTN_GATE,
  ATTENTION_LANES,
  ATTENTION_COMBINE,
  EAGER_ATTENTION,
  SAMPLE,
  MASK,
  POOL_HIDDEN,
  MTP_INPUT,
].map((k) => k.file);
