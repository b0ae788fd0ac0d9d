/**
 * llama.cpp's tensor names (convert_hf_to_gguf.py) for our architectures, both ways,
 * and the q/k row permutation it applies to llama-family attention: llama.cpp rotates
 * interleaved pairs (2j, 2j+1), Hugging Face the halves (j, j + hd/2), so the converter
 * reorders each head's q and k rows and a reader puts them back.
 * @module
 */
import type { Architecture } from "../config.ts";

/** GGUF `general.architecture` of each of ours (Mistral runs as llama in llama.cpp). */
export const GGUF_ARCH: Readonly<Record<Architecture, string>> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  qwen3_moe: "qwen3moe",
  gpt_oss: "gpt-oss",
  gemma2: "gemma2",
  qwen35: "qwen35",
  qwen35_moe: "qwen35moe",
  gemma3: "gemma3",
};

/** Gemma-2/3's sandwich norms have llama.cpp names of their own. */
const sandwich = (arch: Architecture) => arch === "gemma2" || arch === "gemma3";

const GLOBAL: [string, string][] = [
  ["model.embed_tokens.weight", "token_embd.weight"],
  ["model.norm.weight", "output_norm.weight"],
  ["lm_head.weight", "output.weight"],
];

/** Qwen3.5's Gated DeltaNet tensors (llama.cpp's `qwen35`: attn_qkv, attn_gate, ssm_*). */
const LINEAR_ATTENTION: [string, string][] = [
  ["linear_attn.in_proj_qkv.weight", "attn_qkv.weight"],
  ["linear_attn.in_proj_z.weight", "attn_gate.weight"],
  ["linear_attn.in_proj_a.weight", "ssm_alpha.weight"],
  ["linear_attn.in_proj_b.weight", "ssm_beta.weight"],
  ["linear_attn.conv1d.weight", "ssm_conv1d.weight"],
  // llama.cpp stores -exp(A_log) here (see qwen35_layout.ts).
  ["linear_attn.A_log", "ssm_a"],
  ["linear_attn.dt_bias", "ssm_dt.bias"],
  ["linear_attn.norm.weight", "ssm_norm.weight"],
  ["linear_attn.out_proj.weight", "ssm_out.weight"],
];

/**
 * The router, shared expert and attention sinks of the MoE families; their experts are
 * stacked tensors with no HF counterpart one to one (moe_layout.ts).
 */
const MOE: Partial<Record<Architecture, [string, string][]>> = {
  qwen3_moe: [["mlp.gate.weight", "ffn_gate_inp.weight"]],
  // llama.cpp's qwen35moe (Qwen2MoeModel's names): the shared expert `*_shexp`, its sigmoid
  // gate `ffn_gate_inp_shexp` ([1, H] in HF, [H, 1] in GGUF order).
  qwen35_moe: [
    ["mlp.gate.weight", "ffn_gate_inp.weight"],
    ["mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"],
    ["mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"],
    ["mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"],
    ["mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"],
  ],
  gpt_oss: [
    ["mlp.router.weight", "ffn_gate_inp.weight"],
    ["mlp.router.bias", "ffn_gate_inp.bias"],
    ["self_attn.sinks", "attn_sinks.weight"],
  ],
};

/** Per-layer [HF suffix, GGUF suffix] of an architecture. */
function pairsOf(arch: Architecture): [string, string][] {
  if (arch === "gpt_oss") {
    // gpt-oss's post_attention_layernorm (the pre-MLP norm) is llama.cpp's attn_post_norm.
    const pairs = layerPairs(false).map(([hf, gg]): [string, string] => hf === "post_attention_layernorm.weight" ? [hf, "post_attention_norm.weight"] : [hf, gg]);
    return [...pairs, ...MOE.gpt_oss!];
  }
  if (arch === "qwen3_moe") return [...layerPairs(false), ...MOE.qwen3_moe!];
  if (arch !== "qwen35" && arch !== "qwen35_moe") return layerPairs(sandwich(arch));
  // Qwen3.5's post_attention_layernorm is llama.cpp's attn_post_norm (the pre-MLP norm).
  const pairs = layerPairs(false).map(([hf, gg]): [string, string] => hf === "post_attention_layernorm.weight" ? [hf, "post_attention_norm.weight"] : [hf, gg]);
  return [...pairs, ...LINEAR_ATTENTION, ...(MOE[arch] ?? [])];
}

/** Per-layer [HF suffix, GGUF suffix]; biases follow their weights. */
function layerPairs(gemma: boolean): [string, string][] {
  const pairs: [string, string][] = [
    ["input_layernorm.weight", "attn_norm.weight"],
    ["self_attn.q_norm.weight", "attn_q_norm.weight"],
    ["self_attn.k_norm.weight", "attn_k_norm.weight"],
    // Llama's pre-MLP norm; Gemma's norm on the attention output.
    ["post_attention_layernorm.weight", gemma ? "post_attention_norm.weight" : "ffn_norm.weight"],
    ["pre_feedforward_layernorm.weight", "ffn_norm.weight"],
    ["post_feedforward_layernorm.weight", "post_ffw_norm.weight"],
  ];
  const linear: [string, string][] = [
    ["self_attn.q_proj", "attn_q"],
    ["self_attn.k_proj", "attn_k"],
    ["self_attn.v_proj", "attn_v"],
    ["self_attn.o_proj", "attn_output"],
    ["mlp.gate_proj", "ffn_gate"],
    ["mlp.up_proj", "ffn_up"],
    ["mlp.down_proj", "ffn_down"],
  ];
  for (const [hf, gg] of linear) pairs.push([`${hf}.weight`, `${gg}.weight`], [`${hf}.bias`, `${gg}.bias`]);
  return gemma ? pairs : pairs.filter(([hf]) => !hf.startsWith("pre_feedforward") && !hf.startsWith("post_feedforward"));
}

/** The GGUF name of an HF tensor name, or null when llama.cpp has none for it. */
export function ggufName(hfName: string, arch: Architecture): string | null {
  const global = GLOBAL.find(([hf]) => hf === hfName);
  if (global) return global[1];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const pair = m && pairsOf(arch).find(([hf]) => hf === m[2]);
  return pair ? `blk.${m![1]}.${pair[1]}` : null;
}

/** The HF name of a GGUF tensor name, or null for tensors we do not map (rope_freqs, ...). */
export function hfName(ggufTensor: string, arch: Architecture): string | null {
  const global = GLOBAL.find(([, gg]) => gg === ggufTensor);
  if (global) return global[0];
  const m = /^blk\.(\d+)\.(.+)$/.exec(ggufTensor);
  const pair = m && pairsOf(arch).find(([, gg]) => gg === m[2]);
  return pair ? `model.layers.${m![1]}.${pair[0]}` : null;
}

/** Heads whose q/k rows llama.cpp permutes for this HF tensor (0: not permuted). */
export function permutedHeads(hf: string, arch: Architecture, numHeads: number, numKvHeads: number): number {
  if (arch !== "llama" && arch !== "mistral") return 0;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hf)) return numHeads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hf)) return numKvHeads;
  return 0;
}

/**
 * HF -> GGUF row order of a q or k projection (convert_hf_to_gguf's `permute`): within each
 * head, row `half * hd/2 + j` moves to row `2j + half`. `bytes` holds whole heads of rows.
 */
export function permuteQkRows(bytes: Uint8Array, heads: number, rowBytes: number): Uint8Array<ArrayBuffer> {
  return reorder(bytes, heads, rowBytes, false);
}

/** GGUF -> HF row order: the inverse of {@link permuteQkRows}. */
export function unpermuteQkRows(bytes: Uint8Array, heads: number, rowBytes: number): Uint8Array<ArrayBuffer> {
  return reorder(bytes, heads, rowBytes, true);
}

function reorder(bytes: Uint8Array, heads: number, rowBytes: number, inverse: boolean): Uint8Array<ArrayBuffer> {
  const rows = bytes.length / rowBytes;
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new RangeError(`cannot permute ${rows} rows over ${heads} heads`);
  const out = new Uint8Array(bytes.length);
  for (let h = 0; h < heads; h++) {
    for (let half = 0; half < 2; half++) {
      for (let j = 0; j < hd / 2; j++) {
        const hfRow = (h * hd + half * (hd / 2) + j) * rowBytes;
        const ggRow = (h * hd + 2 * j + half) * rowBytes;
        const [src, dst] = inverse ? [ggRow, hfRow] : [hfRow, ggRow];
        out.set(bytes.subarray(src, src + rowBytes), dst);
      }
    }
  }
  return out;
}
