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
   * k, renormalized to sum 1 when {@link normTopkProb}).
   */
  router: "softmax_topk";
  numExperts: number;
  /** Experts per token (k). */
  topK: number;
  normTopkProb: boolean;
  /** Width of one expert's SwiGLU. */
  expertIntermediateSize: number;
  /** Per layer: whether its feed-forward is the experts (else the dense MLP). */
  sparseLayers: boolean[];
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
    numExperts,
    topK,
    normTopkProb: norm,
    expertIntermediateSize: int(config, "moe_intermediate_size", file),
    sparseLayers: Array.from({ length: numLayers }, (_, i) => !only.includes(i) && (i + 1) % step === 0),
  };
}

/** Names and shapes (HF naming) of a sparse layer's feed-forward tensors, prefix `model.layers.N`. */
export function moeTensors(moe: MoeSpec, prefix: string, hiddenSize: number): { name: string; shape: number[] }[] {
  const m = `${prefix}.mlp`;
  const I = moe.expertIntermediateSize;
  const out = [{ name: `${m}.gate.weight`, shape: [moe.numExperts, hiddenSize] }];
  for (let e = 0; e < moe.numExperts; e++) {
    out.push(
      { name: `${m}.experts.${e}.gate_proj.weight`, shape: [I, hiddenSize] },
      { name: `${m}.experts.${e}.up_proj.weight`, shape: [I, hiddenSize] },
      { name: `${m}.experts.${e}.down_proj.weight`, shape: [hiddenSize, I] },
    );
  }
  return out;
}

/** Parameters of the experts: total, and those one token reads (k of them). */
export function expertParameters(moe: MoeSpec, hiddenSize: number): { total: number; active: number } {
  const perExpert = 3 * hiddenSize * moe.expertIntermediateSize;
  const layers = moe.sparseLayers.filter(Boolean).length;
  const router = moe.numExperts * hiddenSize;
  return {
    total: layers * (moe.numExperts * perExpert + router),
    active: layers * (moe.topK * perExpert + router),
  };
}
