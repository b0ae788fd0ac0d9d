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
