/**
 * The mixture-of-experts part of a config.json: which layers are sparse, how many experts,
 * how many each token takes and how their weights are combined, and the tensors a sparse
 * layer ships. Kept apart from config.ts so a new MoE family (Qwen3.5-MoE's shared expert,
 * gpt-oss's router bias) extends this file, not the dense path.
 * @module
 */
import { CheckpointError } from "./errors.ts";

/** How a sparse layer routes tokens and computes its experts. */
export interface MoeSpec {
  /**
   * Routing rule: "softmax_topk" (Qwen3-MoE: softmax over every expert's logit, then the top
   * k, renormalized to sum 1 when {@link normTopkProb}); "topk_softmax" (gpt-oss: logits plus
   * the router bias, the top k, softmax over those k).
   */
  router: "softmax_topk" | "topk_softmax";
  /**
   * Expert format: "qwen" (per-expert Linear gate/up/down, SwiGLU), or "gpt_oss" (fused
   * `gate_up_proj [E, H, 2I]` with interleaved gate/up columns and `down_proj [E, I, H]`, x @ W,
   * biases on both, and the clamped SwiGLU `(clamp(up) + 1) * g * sigmoid(1.702 g)`, g = min(gate, 7)).
   */
  experts: "qwen" | "gpt_oss";
  numExperts: number;
  /** Experts per token (k). */
  topK: number;
  normTopkProb: boolean;
  /** Width of one expert's SwiGLU. */
  expertIntermediateSize: number;
  /** Per layer: whether its feed-forward is the experts (else the dense MLP). */
  sparseLayers: boolean[];
  /** gpt-oss experts stored as the hub's MXFP4 blocks and scales (kept so on the GPU). */
  mxfp4?: boolean;
  /**
   * Width of the shared expert (Qwen3.5-MoE), absent or 0 without one: a SwiGLU every token
   * runs beside its k experts, scaled by `sigmoid(shared_expert_gate . xn)` and added to their
   * sum (`mlp.shared_expert.{gate,up,down}_proj`, `mlp.shared_expert_gate [1, H]`).
   */
  sharedExpertIntermediateSize?: number;
}

/** Largest expert count the router kernel holds in workgroup memory. */
export const MAX_EXPERTS = 256;

function int(config: Record<string, unknown>, field: string, file: string, fallback?: number): number {
  const v = config[field] ?? fallback;
  if (v === undefined) throw new CheckpointError(file, `missing required field "${field}"`);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new CheckpointError(file, `field "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * The MoE spec of a `qwen3_moe` config: `num_experts` (or `num_local_experts`),
 * `num_experts_per_tok`, `moe_intermediate_size`, `norm_topk_prob`, and the sparse layers
 * (`mlp_only_layers` are dense; otherwise every `decoder_sparse_step`-th layer, counting
 * from 1, is sparse), as transformers' Qwen3MoeDecoderLayer decides.
 */
export function parseQwen3MoeSpec(config: Record<string, unknown>, numLayers: number, file: string): MoeSpec {
  const numExperts = int(config, config.num_experts != null ? "num_experts" : "num_local_experts", file);
  const topK = int(config, "num_experts_per_tok", file);
  if (topK > numExperts) {
    throw new CheckpointError(file, `num_experts_per_tok (${topK}) exceeds the expert count (${numExperts})`);
  }
  if (numExperts > MAX_EXPERTS) {
    throw new CheckpointError(file, `${numExperts} experts: at most ${MAX_EXPERTS} are supported`);
  }
  const step = int(config, "decoder_sparse_step", file, 1);
  const only = config.mlp_only_layers ?? [];
  if (!Array.isArray(only) || !only.every((i) => Number.isSafeInteger(i) && i >= 0 && i < numLayers)) {
    throw new CheckpointError(file, `field "mlp_only_layers" must be a list of layer indices, got ${JSON.stringify(only)}`);
  }
  const norm = config.norm_topk_prob ?? false;
  if (typeof norm !== "boolean") {
    throw new CheckpointError(file, `field "norm_topk_prob" must be true or false, got ${JSON.stringify(norm)}`);
  }
  return {
    router: "softmax_topk",
    experts: "qwen",
    numExperts,
    topK,
    normTopkProb: norm,
    expertIntermediateSize: int(config, "moe_intermediate_size", file),
    sparseLayers: Array.from({ length: numLayers }, (_, i) => !only.includes(i) && (i + 1) % step === 0),
  };
}

/**
 * The MoE spec of a `qwen3_5_moe` text config, as transformers' Qwen3_5MoeTextConfig and
 * Qwen3_5MoeSparseMoeBlock read it: every layer sparse and the top-k weights always
 * renormalized (that config deletes `mlp_only_layers`, `decoder_sparse_step` and
 * `norm_topk_prob`, so values a config.json still carries are ignored, as transformers does),
 * `num_experts`, `num_experts_per_tok`, `moe_intermediate_size`, and the sigmoid-gated shared
 * expert of width `shared_expert_intermediate_size`.
 */
export function parseQwen35MoeSpec(config: Record<string, unknown>, numLayers: number, file: string): MoeSpec {
  const numExperts = int(config, "num_experts", file);
  const topK = int(config, "num_experts_per_tok", file);
  if (topK > numExperts) {
    throw new CheckpointError(file, `num_experts_per_tok (${topK}) exceeds the expert count (${numExperts})`);
  }
  if (numExperts > MAX_EXPERTS) {
    throw new CheckpointError(file, `${numExperts} experts: at most ${MAX_EXPERTS} are supported`);
  }
  return {
    router: "softmax_topk",
    experts: "qwen",
    numExperts,
    topK,
    normTopkProb: true,
    expertIntermediateSize: int(config, "moe_intermediate_size", file),
    sparseLayers: Array.from({ length: numLayers }, () => true),
    sharedExpertIntermediateSize: int(config, "shared_expert_intermediate_size", file),
  };
}

/**
 * The MoE spec of a `gpt_oss` config: every layer sparse, `num_local_experts`,
 * `num_experts_per_tok`, experts of width `intermediate_size`.
 */
export function parseGptOssMoeSpec(config: Record<string, unknown>, numLayers: number, file: string): MoeSpec {
  const numExperts = int(config, "num_local_experts", file);
  const topK = int(config, "num_experts_per_tok", file);
  if (topK > numExperts) {
    throw new CheckpointError(file, `num_experts_per_tok (${topK}) exceeds the expert count (${numExperts})`);
  }
  if (numExperts > MAX_EXPERTS) {
    throw new CheckpointError(file, `${numExperts} experts: at most ${MAX_EXPERTS} are supported`);
  }
  const mxfp4 = isMxfp4(config);
  const hidden = int(config, "hidden_size", file);
  const inter = int(config, "intermediate_size", file);
  if (mxfp4 && (hidden % 32 !== 0 || inter % 32 !== 0)) {
    throw new CheckpointError(file, `MXFP4 experts need hidden_size (${hidden}) and intermediate_size (${inter}) multiples of 32`);
  }
  return {
    router: "topk_softmax",
    experts: "gpt_oss",
    numExperts,
    topK,
    normTopkProb: false,
    expertIntermediateSize: int(config, "intermediate_size", file),
    sparseLayers: Array.from({ length: numLayers }, () => true),
    mxfp4,
  };
}

/** Whether the checkpoint ships gpt-oss experts as MXFP4 blocks (`quantization_config.quant_method`). */
export function isMxfp4(config: Record<string, unknown>): boolean {
  const q = config.quantization_config;
  return typeof q === "object" && q !== null && (q as Record<string, unknown>).quant_method === "mxfp4";
}

/** Names and shapes (HF naming) of a sparse layer's feed-forward tensors, prefix `model.layers.N`. */
export function moeTensors(moe: MoeSpec, prefix: string, hiddenSize: number): { name: string; shape: number[] }[] {
  const m = `${prefix}.mlp`;
  const I = moe.expertIntermediateSize;
  if (moe.experts === "gpt_oss") {
    const E = moe.numExperts;
    const H = hiddenSize;
    const experts = moe.mxfp4
      ? [
        { name: `${m}.experts.gate_up_proj_blocks`, shape: [E, 2 * I, H / 32, 16] },
        { name: `${m}.experts.gate_up_proj_scales`, shape: [E, 2 * I, H / 32] },
        { name: `${m}.experts.down_proj_blocks`, shape: [E, H, I / 32, 16] },
        { name: `${m}.experts.down_proj_scales`, shape: [E, H, I / 32] },
      ]
      : [
        { name: `${m}.experts.gate_up_proj`, shape: [E, H, 2 * I] },
        { name: `${m}.experts.down_proj`, shape: [E, I, H] },
      ];
    return [
      { name: `${m}.router.weight`, shape: [E, H] },
      { name: `${m}.router.bias`, shape: [E] },
      ...experts,
      { name: `${m}.experts.gate_up_proj_bias`, shape: [E, 2 * I] },
      { name: `${m}.experts.down_proj_bias`, shape: [E, H] },
    ];
  }
  const out = [{ name: `${m}.gate.weight`, shape: [moe.numExperts, hiddenSize] }];
  const S = moe.sharedExpertIntermediateSize ?? 0;
  if (S > 0) {
    out.push(
      { name: `${m}.shared_expert.gate_proj.weight`, shape: [S, hiddenSize] },
      { name: `${m}.shared_expert.up_proj.weight`, shape: [S, hiddenSize] },
      { name: `${m}.shared_expert.down_proj.weight`, shape: [hiddenSize, S] },
      { name: `${m}.shared_expert_gate.weight`, shape: [1, hiddenSize] },
    );
  }
  for (let e = 0; e < moe.numExperts; e++) {
    out.push(
      { name: `${m}.experts.${e}.gate_proj.weight`, shape: [I, hiddenSize] },
      { name: `${m}.experts.${e}.up_proj.weight`, shape: [I, hiddenSize] },
      { name: `${m}.experts.${e}.down_proj.weight`, shape: [hiddenSize, I] },
    );
  }
  return out;
}
