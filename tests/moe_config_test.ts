/**
 * The mixture-of-experts fields of config.json (src/model/moe_config.ts): which layers are
 * sparse, the routing rule, MXFP4 detection, the tensors a sparse layer must ship, YaRN and
 * sinks for gpt-oss, parameter counts, and named errors for bad fields.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { expectedTensors, loadModelSpec, parseModelSpec } from "../src/model/config.ts";
import { CheckpointError } from "../src/model/errors.ts";
import { parameterCount } from "../src/model/parameters.ts";
import { ropeInverseFrequencies } from "../src/model/rope.ts";
import { modelDir } from "./helpers/reference.ts";

const QWEN3_MOE = {
  architectures: ["Qwen3MoeForCausalLM"],
  hidden_size: 64,
  intermediate_size: 128,
  moe_intermediate_size: 32,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
  num_experts: 8,
  num_experts_per_tok: 2,
  norm_topk_prob: true,
};

test("moe config: qwen3_moe sparse layers follow decoder_sparse_step and mlp_only_layers", () => {
  const spec = parseModelSpec({ ...QWEN3_MOE, decoder_sparse_step: 2, mlp_only_layers: [3] });
  assertEquals(spec.architecture, "qwen3_moe");
  assert(spec.qkNorm);
  assertEquals(spec.moe?.sparseLayers, [false, true, false, false]);
  assertEquals(spec.moe?.router, "softmax_topk");
  const names = expectedTensors(spec).map((t) => t.name);
  assert(names.includes("model.layers.1.mlp.experts.7.down_proj.weight"));
  assert(names.includes("model.layers.0.mlp.gate_proj.weight"));
  assert(!names.includes("model.layers.1.mlp.gate_proj.weight"));
});

test("moe config: bad expert fields are named CheckpointErrors", () => {
  assertThrows(() => parseModelSpec({ ...QWEN3_MOE, num_experts_per_tok: 9 }), CheckpointError, "num_experts_per_tok (9) exceeds");
  assertThrows(() => parseModelSpec({ ...QWEN3_MOE, num_experts: 512 }), CheckpointError, "at most 256");
  assertThrows(() => parseModelSpec({ ...QWEN3_MOE, mlp_only_layers: [7] }), CheckpointError, "mlp_only_layers");
  const { moe_intermediate_size: _, ...missing } = QWEN3_MOE;
  assertThrows(() => parseModelSpec(missing), CheckpointError, `"moe_intermediate_size"`);
});

test("moe config: gpt-oss fixtures parse with sinks, YaRN, sliding/full layers and MXFP4 detection; parameter counts", async () => {
  const bf16 = await loadModelSpec(modelDir("gpt-oss-tiny"));
  const mx = await loadModelSpec(modelDir("gpt-oss-mxfp4-tiny"));
  assertEquals(bf16.architecture, "gpt_oss");
  assert(bf16.attnSinks);
  assertEquals(bf16.layerWindows, [16, null, 16, null]);
  assertEquals(bf16.rope.type, "yarn");
  // YaRN's attention factor 0.1 ln(32) + 1 scales q and k: the scores by its square.
  const factor = 0.1 * Math.log(32) + 1;
  assert(Math.abs(bf16.attnScale - factor ** 2 / Math.sqrt(32)) < 1e-12);
  // The fastest pairs keep their frequency, the slowest are divided by the factor 32.
  const inv = ropeInverseFrequencies(bf16.rope, bf16.headDim);
  assertEquals(inv[0], Math.fround(1));
  assert(Math.abs(inv[15] - 1 / 150000 ** (30 / 32) / 32) < 1e-12);
  assertEquals([bf16.moe?.router, bf16.moe?.experts, bf16.moe?.mxfp4], ["topk_softmax", "gpt_oss", false]);
  assertEquals(mx.moe?.mxfp4, true);
  assert(expectedTensors(mx).some((t) => t.name === "model.layers.0.mlp.experts.gate_up_proj_blocks"));
  // The same model either way: 4 layers x 8 experts x 3 x 128 x 64 expert weights, 2 of 8 active.
  assertEquals(parameterCount(bf16), parameterCount(mx));
  const q = await loadModelSpec(modelDir("qwen3-moe-tiny"));
  const { total, active } = parameterCount(q);
  assertEquals(total - active, 3 * 6 * 3 * 128 * 64);
  const dense = await loadModelSpec(modelDir("qwen3-tiny"));
  assertEquals(parameterCount(dense).total, parameterCount(dense).active);
});

const QWEN35_MOE = {
  architectures: ["Qwen3_5MoeForConditionalGeneration"],
  model_type: "qwen3_5_moe",
  text_config: {
    hidden_size: 64,
    num_hidden_layers: 4,
    layer_types: ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 32,
    linear_num_key_heads: 2,
    linear_num_value_heads: 4,
    linear_key_head_dim: 16,
    linear_value_head_dim: 16,
    partial_rotary_factor: 0.25,
    vocab_size: 100,
    num_experts: 8,
    num_experts_per_tok: 2,
    moe_intermediate_size: 32,
    shared_expert_intermediate_size: 48,
  },
};

test("moe config: qwen3_5_moe nests in text_config; every layer sparse, top-k always renormalized, a shared expert counted as active", () => {
  // transformers' Qwen3_5MoeTextConfig drops norm_topk_prob, mlp_only_layers and
  // decoder_sparse_step: values a config still carries change nothing.
  const spec = parseModelSpec({ ...QWEN35_MOE, text_config: { ...QWEN35_MOE.text_config, norm_topk_prob: false, mlp_only_layers: [1], decoder_sparse_step: 2 } });
  assertEquals(spec.architecture, "qwen35_moe");
  assertEquals(spec.linearAttention?.layers, [true, true, true, false]);
  assert(spec.attnOutputGate && spec.normOffset === 1 && spec.qkNorm);
  assertEquals(spec.moe?.sparseLayers, [true, true, true, true]);
  assertEquals([spec.moe?.normTopkProb, spec.moe?.sharedExpertIntermediateSize], [true, 48]);
  // No intermediate_size: the one dense SwiGLU of a layer is the shared expert.
  assertEquals(spec.intermediateSize, 48);
  const names = expectedTensors(spec).map((t) => t.name);
  for (const n of ["mlp.gate.weight", "mlp.experts.7.down_proj.weight", "mlp.shared_expert.up_proj.weight", "mlp.shared_expert_gate.weight", "linear_attn.in_proj_qkv.weight"]) {
    assert(names.includes(`model.layers.0.${n}`), n);
  }
  assert(!names.includes("model.layers.0.mlp.gate_proj.weight"));
  const { total, active } = parameterCount(spec);
  // Routed: 4 layers x 8 experts x 3 x 32 x 64, of which 2/8 active; the shared expert counts whole.
  const routed = 4 * 8 * 3 * 32 * 64;
  assertEquals(total - active, routed - routed / 4);
  assertEquals(parseModelSpec({ ...QWEN35_MOE, architectures: ["Qwen3_5MoeForCausalLM"] }).architecture, "qwen35_moe");
  const { shared_expert_intermediate_size: _, ...missing } = QWEN35_MOE.text_config;
  assertThrows(() => parseModelSpec({ ...QWEN35_MOE, text_config: missing }), CheckpointError, `"shared_expert_intermediate_size"`);
});
