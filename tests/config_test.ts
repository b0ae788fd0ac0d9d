/** config.json normalisation over the reference models, legacy vs new layouts, shape checks. */
import { test } from "./helpers/test.ts";
import { MODELS_DIR } from "./helpers/fixtures.ts";
import * as sys from "./helpers/platform.ts";
import {
  attentionLayers,
  checkTensorShapes,
  expectedTensors,
  loadModelSpec,
  type ModelSpec,
  parseModelSpec,
} from "../src/model/config.ts";
import { CheckpointError, UnsupportedArchitectureError } from "../src/model/errors.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  withTempDir,
  writeSyntheticCheckpoint,
} from "./helpers/synthetic_checkpoint.ts";
import { HYBRID_MODEL_NAMES, HYBRID_MOE_MODEL_NAMES, MODEL_NAMES } from "./helpers/reference.ts";

const specs = new Map<string, ModelSpec>();
async function spec(name: string): Promise<ModelSpec> {
  if (!specs.has(name)) specs.set(name, await loadModelSpec(MODELS_DIR + name));
  return specs.get(name)!;
}

async function rawConfig(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await sys.readTextFile(`${MODELS_DIR}${name}/config.json`));
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}

test("config: stories260K (legacy llama, tied, f32)", async () => {
  const s = await spec("stories260K");
  assertEquals(
    pick(s, [
      "architecture",
      "hiddenSize",
      "intermediateSize",
      "numLayers",
      "numHeads",
      "numKvHeads",
      "headDim",
    ]),
    {
      architecture: "llama",
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
    },
  );
  assertEquals(s.rope, {
    theta: 10000,
    type: "default",
    factor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 1,
    originalMaxPositionEmbeddings: 512,
  });
  assertEquals(
    pick(s, [
      "tieWordEmbeddings",
      "qkvBias",
      "oProjBias",
      "mlpBias",
      "qkNorm",
      "hiddenAct",
      "normOffset",
      "sandwichNorm",
    ]),
    {
      tieWordEmbeddings: true,
      qkvBias: false,
      oProjBias: false,
      mlpBias: false,
      qkNorm: false,
      hiddenAct: "silu",
      normOffset: 0,
      sandwichNorm: false,
    },
  );
  assertEquals([s.rmsNormEps, s.maxPositionEmbeddings, s.vocabSize, s.dtype], [
    1e-5,
    512,
    512,
    "float32",
  ]);
  assertEquals([s.embeddingScale, s.attnScale, s.attnLogitSoftcap, s.finalLogitSoftcap], [
    1,
    8 ** -0.5,
    null,
    null,
  ]);
  assertEquals(s.layerWindows, [null, null, null, null, null]);
  assertEquals([s.bosTokenId, s.eosTokenIds], [1, [2]]);
});

test("config: llama-tiny (GQA, untied, bf16)", async () => {
  const s = await spec("llama-tiny");
  assertEquals([s.numHeads, s.numKvHeads, s.headDim, s.tieWordEmbeddings, s.dtype], [
    4,
    2,
    32,
    false,
    "bfloat16",
  ]);
  assertEquals(s.rope.type, "default");
  assertEquals(s.layerWindows, [null, null, null]);
});

test("config: llama3-rope-tiny (llama3 rope scaling, tied, f16)", async () => {
  const s = await spec("llama3-rope-tiny");
  assertEquals(s.rope, {
    theta: 500000,
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 64,
  });
  assertEquals([s.headDim, s.numHeads, s.numKvHeads, s.tieWordEmbeddings, s.dtype], [
    64,
    2,
    1,
    true,
    "float16",
  ]);
  assertEquals(s.attnScale, 64 ** -0.5);
});

test("config: qwen2-tiny (qkv bias, no o bias, no sliding)", async () => {
  const s = await spec("qwen2-tiny");
  assertEquals(
    pick(s, [
      "architecture",
      "qkvBias",
      "oProjBias",
      "qkNorm",
      "numHeads",
      "numKvHeads",
      "headDim",
      "tieWordEmbeddings",
    ]),
    {
      architecture: "qwen2",
      qkvBias: true,
      oProjBias: false,
      qkNorm: false,
      numHeads: 8,
      numKvHeads: 2,
      headDim: 16,
      tieWordEmbeddings: true,
    },
  );
  assertEquals(s.layerWindows, [null, null]);
  assertEquals(s.rope.theta, 1e6);
});

test("config: qwen3-tiny (new layout, q/k norm, head_dim != hidden/heads)", async () => {
  const s = await spec("qwen3-tiny");
  assertEquals(
    pick(s, ["architecture", "headDim", "numHeads", "qkNorm", "qkvBias", "oProjBias", "dtype"]),
    {
      architecture: "qwen3",
      headDim: 64,
      numHeads: 4,
      qkNorm: true,
      qkvBias: false,
      oProjBias: false,
      dtype: "bfloat16",
    },
  );
  assertEquals([s.rope.theta, s.rope.type], [1e6, "default"]);
  assertEquals(s.layerWindows, [null, null]);
  assertEquals(s.attnScale, 64 ** -0.5);
});

test("config: mistral-tiny (sliding window on every layer, MQA)", async () => {
  const s = await spec("mistral-tiny");
  assertEquals([s.architecture, s.numKvHeads, s.layerWindows, s.dtype], [
    "mistral",
    1,
    [16, 16],
    "float32",
  ]);
  assertEquals([s.qkvBias, s.oProjBias, s.tieWordEmbeddings], [false, false, false]);
});

test("config: gemma2-tiny (softcaps, scaled embeddings, sandwich norms, alternating windows)", async () => {
  const s = await spec("gemma2-tiny");
  assertEquals(s.layerWindows, [16, null, 16, null]);
  assertEquals(s.attnScale, 32 ** -0.5);
  assertEquals(s.embeddingScale, Math.sqrt(128));
  assertEquals([s.attnLogitSoftcap, s.finalLogitSoftcap], [50, 30]);
  assertEquals([s.hiddenAct, s.normOffset, s.sandwichNorm, s.tieWordEmbeddings], [
    "gelu_tanh",
    1,
    true,
    true,
  ]);
  assertEquals([s.headDim, s.numHeads, s.numKvHeads, s.rmsNormEps, s.dtype], [
    32,
    4,
    2,
    1e-6,
    "bfloat16",
  ]);
});

test("config: qwen35-tiny (text_config nested, hybrid layer types, gated attention, partial rotary, (1+w) norms)", async () => {
  const s = await spec("qwen35-tiny");
  assertEquals(
    pick(s, ["architecture", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "headDim", "qkNorm", "normOffset", "attnOutputGate", "rotaryDim", "tieWordEmbeddings", "linearAttention"]),
    {
      architecture: "qwen35",
      hiddenSize: 128,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 64,
      qkNorm: true,
      normOffset: 1,
      attnOutputGate: true,
      rotaryDim: 16,
      tieWordEmbeddings: true,
      linearAttention: { layers: [true, true, true, false], numKeyHeads: 2, numValueHeads: 4, keyHeadDim: 32, valueHeadDim: 32, convKernel: 4, valueHeadOrder: "grouped" },
    },
  );
  assertEquals(s.rope.theta, 1e7);
  assertEquals(attentionLayers(s), [3]);
  // mrope_section (kept for GGUF's rope.dimension_sections); transformers' default where absent.
  assertEquals(s.mropeSection, [2, 1, 1]);
  const raw0 = await rawConfig("qwen35-tiny");
  const t0 = raw0.text_config as Record<string, unknown>;
  const { mrope_section: _, ...rp } = t0.rope_parameters as Record<string, unknown>;
  assertEquals(parseModelSpec({ ...raw0, text_config: { ...t0, rope_parameters: rp } }).mropeSection, [11, 11, 10]);
  assertThrows(() => parseModelSpec({ ...raw0, text_config: { ...t0, rope_parameters: { ...rp, mrope_section: [1, 2, 3, 4, 5] } } }), CheckpointError, "mrope_section");
  // A layer type the engine does not run is a named error naming the field.
  const raw = await rawConfig("qwen35-tiny");
  const text = raw.text_config as Record<string, unknown>;
  const bad = { ...raw, text_config: { ...text, layer_types: ["linear_attention", "mamba", "linear_attention", "full_attention"] } };
  const e = assertThrows(() => parseModelSpec(bad, "config.json"), CheckpointError);
  assert(e.message.includes('field "layer_types[1]"') && e.message.includes('"mamba"'), e.message);
  assertEquals(e.code, "checkpoint_invalid");
  const conv = { ...raw, text_config: { ...text, linear_conv_kernel_dim: 3 } };
  assertThrows(() => parseModelSpec(conv, "config.json"), CheckpointError, "linear_conv_kernel_dim");
});

test("config: every reference checkpoint matches its expected tensors exactly", async () => {
  for (const name of [...MODEL_NAMES, ...HYBRID_MODEL_NAMES, ...HYBRID_MOE_MODEL_NAMES]) {
    const s = await spec(name);
    const index = await openCheckpointTensors(MODELS_DIR + name);
    try {
      checkTensorShapes(s, index);
      // No tensor in the file goes unused (so expectedTensors is complete, not just a subset).
      assertEquals(index.names().sort(), expectedTensors(s).map((t) => t.name).sort(), name);
    } finally {
      index.close();
    }
  }
});

/** Rewrites a transformers-5 config in the legacy layout. */
function toLegacy(c: Record<string, unknown>): Record<string, unknown> {
  const out = { ...c };
  const rp = out.rope_parameters as Record<string, unknown>;
  delete out.rope_parameters;
  delete out.layer_types;
  out.rope_theta = rp.rope_theta;
  const { rope_theta: _, ...scaling } = rp;
  out.rope_scaling = scaling.rope_type === "default"
    ? null
    : { ...scaling, type: scaling.rope_type };
  if (out.dtype) {
    out.torch_dtype = out.dtype;
    delete out.dtype;
  }
  return out;
}

/** Rewrites a legacy config in the transformers-5 layout. */
function toNew(c: Record<string, unknown>, layerTypes: string[]): Record<string, unknown> {
  const out = { ...c };
  const scaling = (out.rope_scaling ?? {}) as Record<string, unknown>;
  out.rope_parameters = { rope_type: "default", ...scaling, rope_theta: out.rope_theta };
  delete out.rope_scaling;
  delete out.rope_theta;
  out.layer_types = layerTypes;
  out.dtype = out.torch_dtype;
  delete out.torch_dtype;
  return out;
}

test("config: legacy and new layouts give the same spec", async () => {
  for (const name of ["qwen3-tiny", "gemma2-tiny"]) {
    const c = await rawConfig(name);
    assertEquals(parseModelSpec(toLegacy(c)), parseModelSpec(c), name);
  }
  const l3 = await rawConfig("llama3-rope-tiny");
  assertEquals(parseModelSpec(toNew(l3, ["full_attention", "full_attention"])), parseModelSpec(l3));
  const mistral = await rawConfig("mistral-tiny");
  assertEquals(
    parseModelSpec(toNew(mistral, ["sliding_attention", "sliding_attention"])),
    parseModelSpec(mistral),
  );
  // rope_scaling may name its type under the old key "type".
  const linear = { ...l3, rope_scaling: { type: "linear", factor: 2 } };
  assertEquals([parseModelSpec(linear).rope.type, parseModelSpec(linear).rope.factor], [
    "linear",
    2,
  ]);
});

test("config: gemma3-tiny (5:1 sliding pattern, a RoPE per layer type, q/k norm, no soft-caps)", async () => {
  const s = await spec("gemma3-tiny");
  assertEquals(s.architecture, "gemma3");
  assertEquals(s.layerWindows, [16, 16, 16, 16, 16, null]);
  assertEquals(pick(s.rope, ["theta", "type", "factor"]), { theta: 1e6, type: "linear", factor: 8 });
  assertEquals(pick(s.localRope!, ["theta", "type", "factor"]), { theta: 1e4, type: "default", factor: 1 });
  assertEquals([s.qkNorm, s.normOffset, s.sandwichNorm, s.hiddenAct], [true, 1, true, "gelu_tanh"]);
  assertEquals([s.attnLogitSoftcap, s.finalLogitSoftcap], [null, null]);
  assertEquals([s.attnScale, s.embeddingScale, s.numKvHeads], [32 ** -0.5, Math.sqrt(128), 1]);
  // The q/k norm weights are expected (and used: no tensor is left over, see below).
  assert(expectedTensors(s).some((t) => t.name === "model.layers.5.self_attn.k_norm.weight"));

  // transformers 4's layout: rope_theta + rope_scaling are the global layers', the local base
  // is rope_local_base_freq, and sliding_window_pattern replaces layer_types.
  const raw = await rawConfig("gemma3-tiny");
  const { rope_parameters: _r, layer_types: _l, _sliding_window_pattern: _p, ...rest } = raw;
  const legacy = parseModelSpec({
    ...rest,
    rope_theta: 1e6,
    rope_local_base_freq: 1e4,
    rope_scaling: { rope_type: "linear", factor: 8 },
    sliding_window_pattern: 3,
  });
  assertEquals(legacy.rope, s.rope);
  assertEquals(legacy.localRope, s.localRope);
  assertEquals(legacy.layerWindows, [16, 16, null, 16, 16, null]);
  // Its defaults: 1M global, 10k local, a 6-layer pattern.
  const bare = parseModelSpec(rest);
  assertEquals([bare.rope.theta, bare.localRope!.theta, bare.rope.type], [1e6, 1e4, "default"]);
  assertEquals(bare.layerWindows, [16, 16, 16, 16, 16, null]);
  // model_type alone names the architecture; a per-type rope_parameters missing one is named.
  const { architectures: _a, ...untyped } = raw;
  assertEquals(parseModelSpec(untyped).architecture, "gemma3");
  const e = assertThrows(
    () => parseModelSpec({ ...raw, rope_parameters: { full_attention: { rope_theta: 1e6 } } }),
    CheckpointError,
  );
  assert(e.message.includes("rope_parameters.sliding_attention"), e.message);
});

test("config: sliding-window rules per architecture", async () => {
  const qwen2 = await rawConfig("qwen2-tiny");
  const slide = { ...qwen2, use_sliding_window: true, sliding_window: 8, max_window_layers: 1 };
  assertEquals(parseModelSpec(slide).layerWindows, [null, 8]);
  assertEquals(parseModelSpec({ ...slide, max_window_layers: 0 }).layerWindows, [8, 8]);
  // sliding_window without use_sliding_window does nothing for Qwen.
  assertEquals(parseModelSpec({ ...slide, use_sliding_window: false }).layerWindows, [null, null]);
  const mistral = await rawConfig("mistral-tiny");
  assertEquals(parseModelSpec({ ...mistral, sliding_window: null }).layerWindows, [null, null]);
  const gemma = toLegacy(await rawConfig("gemma2-tiny"));
  assertEquals(parseModelSpec({ ...gemma, num_hidden_layers: 5 }).layerWindows, [
    16,
    null,
    16,
    null,
    16,
  ]);
  const g = await rawConfig("gemma2-tiny");
  assertEquals(
    parseModelSpec({
      ...g,
      layer_types: ["full_attention", "sliding_attention", "full_attention", "full_attention"],
    })
      .layerWindows,
    [null, 16, null, null],
  );
});

test("config: biases, activations, softcap defaults, eos lists", async () => {
  const llama = await rawConfig("llama-tiny");
  const biased = parseModelSpec({ ...llama, attention_bias: true, mlp_bias: true });
  assertEquals([biased.qkvBias, biased.oProjBias, biased.mlpBias], [true, true, true]);
  const names = expectedTensors(biased).map((t) => t.name);
  for (const n of ["q_proj.bias", "o_proj.bias"]) {
    assert(names.includes(`model.layers.0.self_attn.${n}`), n);
  }
  assert(names.includes("model.layers.2.mlp.down_proj.bias"));
  const gemma = await rawConfig("gemma2-tiny");
  const { attn_logit_softcapping: _a, final_logit_softcapping: _f, ...noCaps } = gemma;
  const defaults = parseModelSpec(noCaps);
  assertEquals([defaults.attnLogitSoftcap, defaults.finalLogitSoftcap], [50, 30]);
  const off = parseModelSpec({
    ...gemma,
    attn_logit_softcapping: null,
    final_logit_softcapping: null,
  });
  assertEquals([off.attnLogitSoftcap, off.finalLogitSoftcap], [null, null]);
  const { hidden_activation: _h, ...legacyAct } = gemma;
  assertEquals(parseModelSpec({ ...legacyAct, hidden_act: "gelu" }).hiddenAct, "gelu_tanh");
  assertEquals(parseModelSpec({ ...llama, eos_token_id: [2, 7] }).eosTokenIds, [2, 7]);
  assertEquals(parseModelSpec({ ...llama, bos_token_id: null }).bosTokenId, null);
  // head_dim absent: hidden / heads; num_key_value_heads absent: MHA.
  const { head_dim: _d, num_key_value_heads: _k, ...plain } = llama;
  assertEquals([parseModelSpec(plain).headDim, parseModelSpec(plain).numKvHeads], [32, 4]);
  // model_type is enough when architectures is absent.
  const { architectures: _x, ...byType } = llama;
  assertEquals(parseModelSpec(byType).architecture, "llama");
});

test("config: malformed configs name config.json and the field", async () => {
  const llama = await rawConfig("llama-tiny");
  const { hidden_size: _, ...missing } = llama;
  assertThrows(
    () => parseModelSpec(missing),
    CheckpointError,
    `config.json: missing required field "hidden_size"`,
  );
  assertThrows(
    () => parseModelSpec({ ...llama, num_hidden_layers: "3" }),
    CheckpointError,
    `"num_hidden_layers"`,
  );
  assertThrows(
    () => parseModelSpec({ ...llama, intermediate_size: 3.5 }),
    CheckpointError,
    `"intermediate_size"`,
  );
  assertThrows(
    () => parseModelSpec({ ...llama, num_key_value_heads: 3 }),
    CheckpointError,
    "not divisible",
  );
  assertThrows(
    () => parseModelSpec({ ...llama, rms_norm_eps: "x" }),
    CheckpointError,
    `"rms_norm_eps"`,
  );
  assertThrows(
    () => parseModelSpec({ ...llama, rope_scaling: { rope_type: "dynamic", factor: 4 } }),
    CheckpointError,
    `unsupported rope_type "dynamic"`,
  );
  assertThrows(
    () => parseModelSpec({ ...llama, rope_scaling: { rope_type: "llama3", factor: 8 } }),
    CheckpointError,
    "low_freq_factor",
  );
  assertThrows(
    () => parseModelSpec({ ...llama, layer_types: ["full_attention"] }),
    CheckpointError,
    "layer_types",
  );
  assertThrows(() => parseModelSpec({ ...llama, hidden_act: "relu" }), CheckpointError, "relu");
  assertThrows(() => parseModelSpec({ ...llama, torch_dtype: "int8" }), CheckpointError, "int8");
  const err = assertThrows(
    () => parseModelSpec({ ...llama, architectures: ["GPT2LMHeadModel"] }, "/x/config.json"),
    UnsupportedArchitectureError,
    "/x/config.json: unsupported architecture GPT2LMHeadModel",
  );
  assert(err instanceof CheckpointError);
  assertEquals(err.file, "/x/config.json");
});

test("config: loadModelSpec reads generation_config.json eos ids and names missing files", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, { eos_token_id: 2 });
    await sys.writeTextFile(
      `${dir}/generation_config.json`,
      JSON.stringify({ eos_token_id: [2, 9] }),
    );
    assertEquals((await loadModelSpec(dir)).eosTokenIds, [2, 9]);
    await sys.remove(`${dir}/config.json`);
    const err = await loadModelSpec(dir).then(() => null, (e) => e);
    assert(err instanceof CheckpointError, String(err));
    assertEquals(err.file, `${dir}/config.json`);
  });
});
