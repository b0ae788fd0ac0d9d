/**
 * Q4_K_M-like mixture-of-experts GGUF files for tests (moe_kquant_test.ts, llama_cpp_test.ts):
 * synthetic Qwen3-MoE and gpt-oss checkpoints whose every input width is a multiple of 256
 * (the fixtures' 128 / 64 are not, and K-quant rows need it; `convert --quantization q4_k_m`
 * writes their linear weights and experts as Q4_K / Q6_K), and the f32 checkpoint of a model's
 * (a GGUF file's dequantized) tensors (the reference path).
 * @module
 */
import * as sys from "./platform.ts";
import { writeSafetensors } from "./synthetic_checkpoint.ts";
import { openModel } from "../../src/model/model_source.ts";
import { dequantize } from "../../src/model/quant/dequantize.ts";
import { valueDType } from "../../src/model/safetensors.ts";

// A prefill of 20 rows (tiles of several experts) and a decode-sized prompt.
export const KQUANT_PROMPTS = [[1, 5, 9, 44, 7, 100, 3, 250, 17, 8, 61, 2, 90, 33, 12, 400, 5, 6, 77, 301], [1, 42]];

/** A Qwen3-MoE checkpoint whose every input width is a multiple of 256. */
export const KQUANT_QWEN3_MOE = {
  architectures: ["Qwen3MoeForCausalLM"],
  model_type: "qwen3_moe",
  hidden_size: 256,
  intermediate_size: 512,
  moe_intermediate_size: 256,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  norm_topk_prob: true,
  decoder_sparse_step: 1,
  mlp_only_layers: [],
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  rope_parameters: { rope_type: "default", rope_theta: 1e6 },
};

/** gpt-oss likewise (sliding then full attention, YaRN as gpt-oss-tiny). */
export const KQUANT_GPT_OSS = {
  architectures: ["GptOssForCausalLM"],
  model_type: "gpt_oss",
  hidden_size: 256,
  intermediate_size: 256,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  attention_bias: true,
  layer_types: ["sliding_attention", "full_attention"],
  sliding_window: 16,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  max_position_embeddings: 2048,
  rope_parameters: { rope_type: "yarn", rope_theta: 150000, factor: 32, beta_fast: 32, beta_slow: 1, original_max_position_embeddings: 64, truncate: false },
};

/**
 * Writes `dir` (config and tokenizer of `from`) with every tensor of the model `file` (a GGUF
 * file or a checkpoint) as its reader serves it, in f32.
 */
export async function writeDequantized(file: string, from: string, dir: string): Promise<void> {
  await sys.mkdir(dir);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${from}/${f}`, `${dir}/${f}`);
  const { tensors } = await openModel(file);
  try {
    const out = [];
    for (const name of tensors.names()) {
      const info = tensors.get(name);
      // Block tensors come as their dequantized f32 values (info.dtype F32), floats as stored.
      out.push({ name, shape: info.shape, dtype: "F32" as const, data: dequantize(valueDType(info), await tensors.read(info)) });
    }
    await writeSafetensors(`${dir}/model.safetensors`, out);
  } finally {
    tensors.close();
  }
}

