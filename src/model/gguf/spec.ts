/**
 * GGUF metadata -> {@link ModelSpec} for llama (and Mistral, which llama.cpp runs as llama
 * with `llama.attention.sliding_window`), qwen2, qwen3, gemma2, gemma3, qwen35 and the
 * mixture-of-experts qwen3moe, gpt-oss and qwen35moe (qwen35's hybrid layers, sparse), with
 * llama.cpp's keys and defaults. Missing required metadata is a named `CheckpointError`; sizes
 * are checked against the tensors first (validate.ts).
 * @module
 */
import { type Architecture, type LinearAttentionSpec, type ModelSpec, type RopeSpec, yarnAttentionFactor } from "../config.ts";
import { UnsupportedArchitectureError } from "../errors.ts";
import type { GgufHeader } from "./reader.ts";
import type { MoeSpec } from "../moe_config.ts";
import { checkGgufExperts, checkGgufSizes, GGUF_ARCHS, GgufMeta } from "./validate.ts";

const ARCHS = Object.keys(GGUF_ARCHS);

/** llama.cpp's Gemma-3: every 6th layer is global, the others slide (`set_swa_pattern(6)`). */
export const GEMMA3_SWA_PATTERN = 6;
/** llama.cpp's Gemma-3 local RoPE base when the file has no `rope.freq_base_swa`. */
const GEMMA3_LOCAL_BASE = 10000;
/** llama.cpp's gpt-oss: even layers slide, odd ones attend to everything (`set_swa_pattern(2)`). */
export const GPT_OSS_SWA_PATTERN = 2;
/** GGUF architecture names that are not ours verbatim. */
const OURS: Readonly<Record<string, Architecture>> = { qwen3moe: "qwen3_moe", "gpt-oss": "gpt_oss", qwen35moe: "qwen35_moe" };


/**
 * The spec of a GGUF model. `ropeFactors` are the values of a `rope_freqs.weight` tensor
 * (llama.cpp's form of Llama-3.1 rope scaling), when the file has one.
 */
export function ggufModelSpec(header: GgufHeader, ropeFactors: Float32Array | null = null): ModelSpec {
  const m: GgufMeta = new GgufMeta(header);
  const gguf = m.str("general.architecture");
  if (gguf === undefined) m.fail("missing required metadata general.architecture");
  if (!ARCHS.includes(gguf)) {
    throw new UnsupportedArchitectureError(header.path, gguf, ARCHS);
  }
  const k = (key: string) => `${gguf}.${key}`;
  const has = (t: string) => header.tensors.has(t);
  // Checked against the tensors before anything is sized from them.
  const { numLayers, hiddenSize, numHeads, numKvHeads, headDim, vocabSize, maxPositionEmbeddings } = checkGgufSizes(m, gguf);
  const window = m.raw(k("attention.sliding_window")) === undefined ? null : m.int(k("attention.sliding_window"));
  const gemma = gguf === "gemma2" || gguf === "gemma3";
  // Qwen3.5-MoE: Qwen3.5's hybrid layers with sparse feed-forwards.
  const qwen35 = gguf === "qwen35" || gguf === "qwen35moe";
  const gemma3 = gguf === "gemma3";
  const gptOss = gguf === "gpt-oss";
  const moe = GGUF_ARCHS[gguf].experts ? moeOf(m, gguf, hiddenSize, numLayers, numHeads) : null;
  // llama.cpp's Gemma scale: 1/sqrt(head_dim), but hidden/heads for the 27B (46 / 62 layers).
  const big = numLayers === (gemma3 ? 62 : 46);
  // gpt-oss checkpoints ask for YaRN without rounding the ramp's ends (`truncate: false`).
  const rope = ropeOf(m, k, ropeFactors, headDim, gptOss ? false : null);
  // Gemma-3's sliding layers rotate with their own base and no scaling.
  const localRope = gemma3 && window !== null
    ? {
      theta: m.num(k("rope.freq_base_swa"), GEMMA3_LOCAL_BASE),
      type: "default" as const,
      factor: 1,
      lowFreqFactor: 1,
      highFreqFactor: 1,
      originalMaxPositionEmbeddings: rope.originalMaxPositionEmbeddings,
    }
    : undefined;
  const architecture: Architecture = gguf === "llama" && window !== null ? "mistral" : OURS[gguf] ?? gguf as Architecture;
  if (gptOss && window === null) m.fail(`missing required metadata ${k("attention.sliding_window")}`);
  const layers = Array.from({ length: numLayers }, (_, i) => i);
  const eos = [m.id("tokenizer.ggml.eos_token_id"), m.id("tokenizer.ggml.eot_token_id"), m.id("tokenizer.ggml.eom_token_id")]
    .filter((id): id is number => id !== null);
  return {
    architecture,
    hiddenSize,
    // Qwen3.5-MoE's one dense SwiGLU is its shared expert (config.ts).
    intermediateSize: m.int(k("feed_forward_length"), moe?.sharedExpertIntermediateSize ?? moe?.expertIntermediateSize),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    rmsNormEps: m.num(k("attention.layer_norm_rms_epsilon")),
    rope,
    ...(localRope ? { localRope } : {}),
    tieWordEmbeddings: !has("output.weight"),
    qkvBias: has("blk.0.attn_q.bias"),
    oProjBias: has("blk.0.attn_output.bias"),
    mlpBias: has("blk.0.ffn_gate.bias"),
    qkNorm: has("blk.0.attn_q_norm.weight") || qwen35,
    hiddenAct: gemma ? "gelu_tanh" : "silu",
    // convert_hf_to_gguf stores Gemma's and Qwen3.5's norm weights as 1 + w already.
    normOffset: 0,
    sandwichNorm: gemma,
    embeddingScale: gemma ? Math.sqrt(hiddenSize) : 1,
    // YaRN scales cos and sin, so both q and k: the scores by the factor squared.
    attnScale: (gemma && big ? (hiddenSize / numHeads) ** -0.5 : headDim ** -0.5) * (rope.yarn?.attentionFactor ?? 1) ** 2,
    // Gemma-3 caps nothing unless the file says so.
    attnLogitSoftcap: gguf === "gemma2" ? m.num(k("attn_logit_softcapping"), 50) : null,
    finalLogitSoftcap: gguf === "gemma2"
      ? m.num(k("final_logit_softcapping"), 30)
      : gemma3 && m.raw(k("final_logit_softcapping")) !== undefined
      ? m.num(k("final_logit_softcapping"))
      : null,
    layerWindows: gemma3
      ? layers.map((i) => (i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1 ? window : null))
      : gemma
      ? layers.map((i) => (i % 2 === 0 ? window ?? 4096 : null))
      : architecture === "mistral"
      ? layers.map(() => window)
      : gptOss
      ? layers.map((i) => (i % GPT_OSS_SWA_PATTERN < GPT_OSS_SWA_PATTERN - 1 ? window : null))
      : layers.map(() => null),
    bosTokenId: m.id("tokenizer.ggml.bos_token_id"),
    eosTokenIds: [...new Set(eos)],
    dtype: dtypeOf(header),
    linearAttention: qwen35 ? linearAttentionOf(m, k, numLayers) : null,
    attnOutputGate: qwen35,
    rotaryDim: qwen35 ? m.int(k("rope.dimension_count")) : headDim,
    ...(moe ? { moe } : {}),
    ...(gptOss ? { attnSinks: true } : {}),
  };
}

/**
 * The experts of a qwen3moe, qwen35moe or gpt-oss file. qwen3moe and qwen35moe renormalize
 * the top-k weights unless `expert_weights_norm` says otherwise (llama.cpp's converter writes
 * no key for either: Qwen3-MoE's `norm_topk_prob` is true, Qwen3.5-MoE always renormalizes);
 * qwen35moe adds its shared expert; gpt-oss takes the softmax over the top k of the biased
 * logits.
 */
function moeOf(m: GgufMeta, arch: string, hiddenSize: number, numLayers: number, numHeads: number): MoeSpec {
  const e = checkGgufExperts(m, arch, hiddenSize, numLayers, numHeads);
  const base = {
    numExperts: e.numExperts,
    topK: e.topK,
    expertIntermediateSize: e.expertIntermediateSize,
    sparseLayers: e.sparseLayers,
    ...(e.sharedExpertIntermediateSize ? { sharedExpertIntermediateSize: e.sharedExpertIntermediateSize } : {}),
  };
  if (arch === "gpt-oss") return { ...base, router: "topk_softmax", experts: "gpt_oss", normTopkProb: false, mxfp4: e.type === "MXFP4" };
  const norm = m.raw(`${arch}.expert_weights_norm`) ?? true;
  if (typeof norm !== "boolean") m.fail(`metadata ${arch}.expert_weights_norm must be true or false, got ${JSON.stringify(norm)}`);
  return { ...base, router: "softmax_topk", experts: "qwen", normTopkProb: norm };
}

/** llama.cpp's `qwen35` Gated DeltaNet metadata (ssm.*); value heads are tiled in its files. */
function linearAttentionOf(m: GgufMeta, k: (key: string) => string, numLayers: number): LinearAttentionSpec {
  const interval = m.int(k("full_attention_interval"), 4);
  const numValueHeads = m.int(k("ssm.time_step_rank"));
  const numKeyHeads = m.int(k("ssm.group_count"));
  const inner = m.int(k("ssm.inner_size"));
  if (numValueHeads % numKeyHeads !== 0 || inner % numValueHeads !== 0) {
    m.fail(`${k("ssm.time_step_rank")} (${numValueHeads}) must be a multiple of ${k("ssm.group_count")} (${numKeyHeads}) and divide ${k("ssm.inner_size")} (${inner})`);
  }
  const convKernel = m.int(k("ssm.conv_kernel"));
  if (convKernel !== 4) m.fail(`metadata ${k("ssm.conv_kernel")} must be 4 (the conv kernel length this engine runs), got ${convKernel}`);
  return {
    layers: Array.from({ length: numLayers }, (_, i) => (i + 1) % interval !== 0),
    numKeyHeads,
    numValueHeads,
    keyHeadDim: m.int(k("ssm.state_size")),
    valueHeadDim: inner / numValueHeads,
    convKernel,
    valueHeadOrder: numKeyHeads === numValueHeads ? "grouped" : "tiled",
  };
}

/** `yarnTruncate`: how YaRN rounds its ramp for this architecture, or null where it is not read. */
function ropeOf(m: GgufMeta, k: (key: string) => string, factors: Float32Array | null, headDim: number, yarnTruncate: boolean | null): RopeSpec {
  const theta = m.num(k("rope.freq_base"), 10000);
  const maxPos = m.int(k("context_length"));
  const type = m.str(k("rope.scaling.type")) ?? "none";
  const base: RopeSpec = { theta, type: "default", factor: 1, lowFreqFactor: 1, highFreqFactor: 1, originalMaxPositionEmbeddings: maxPos };
  if (factors) {
    if (factors.length !== headDim / 2) m.fail(`tensor rope_freqs.weight has ${factors.length} values, expected ${headDim / 2}`);
    base.freqFactors = [...factors];
  }
  if (type === "none") return base;
  if (type === "linear") return { ...base, type: "linear", factor: m.num(k("rope.scaling.factor")) };
  if (type === "yarn" && yarnTruncate !== null) {
    // llama.cpp's yarn_attn_factor multiplies its own mscale, transformers' attention_factor
    // replaces it: only the default (absent or 1) means the same to both.
    const attn = m.raw(k("rope.scaling.yarn_attn_factor"));
    if (attn !== undefined && attn !== 1) m.fail(`metadata ${k("rope.scaling.yarn_attn_factor")} is ${JSON.stringify(attn)}: only the default YaRN attention factor is supported`);
    const factor = m.num(k("rope.scaling.factor"));
    return {
      ...base,
      type: "yarn",
      factor,
      originalMaxPositionEmbeddings: m.int(k("rope.scaling.original_context_length")),
      yarn: {
        betaFast: m.num(k("rope.scaling.yarn_beta_fast"), 32),
        betaSlow: m.num(k("rope.scaling.yarn_beta_slow"), 1),
        truncate: yarnTruncate,
        attentionFactor: yarnAttentionFactor(factor),
      },
    };
  }
  const supported = yarnTruncate === null ? "none, linear" : "none, linear, yarn";
  return m.fail(`unsupported ${k("rope.scaling.type")} ${JSON.stringify(type)} (supported: ${supported})`);
}

/**
 * The checkpoint dtype a GGUF file stands for, from its plain float matrices (block tensors
 * dequantize to whichever): f32 when they are all F32, as a quantized f32 checkpoint's are.
 */
function dtypeOf(header: GgufHeader): ModelSpec["dtype"] {
  const matrices = [...header.tensors.values()].filter((t) => t.dims.length === 2 && t.type.blockElems === 1);
  if (matrices.every((t) => t.type.name === "F32")) return "float32";
  if (matrices.some((t) => t.type.name === "BF16")) return "bfloat16";
  return "float16";
}
