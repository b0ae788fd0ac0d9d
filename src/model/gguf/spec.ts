/**
 * GGUF metadata -> {@link ModelSpec} for llama (and Mistral, which llama.cpp runs as llama
 * with `llama.attention.sliding_window`), qwen2, qwen3, gemma2, gemma3 and qwen35, with
 * llama.cpp's keys and defaults. Missing required metadata is a named `CheckpointError`; sizes
 * are checked against the tensors first (validate.ts).
 * @module
 */
import type { Architecture, LinearAttentionSpec, ModelSpec, RopeSpec } from "../config.ts";
import { UnsupportedArchitectureError } from "../errors.ts";
import type { GgufHeader } from "./reader.ts";
import { checkGgufSizes, GGUF_ARCHS, GgufMeta } from "./validate.ts";

const ARCHS = Object.keys(GGUF_ARCHS);

/** llama.cpp's Gemma-3: every 6th layer is global, the others slide (`set_swa_pattern(6)`). */
export const GEMMA3_SWA_PATTERN = 6;
/** llama.cpp's Gemma-3 local RoPE base when the file has no `rope.freq_base_swa`. */
const GEMMA3_LOCAL_BASE = 10000;


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
  const qwen35 = gguf === "qwen35";
  const gemma3 = gguf === "gemma3";
  // llama.cpp's Gemma scale: 1/sqrt(head_dim), but hidden/heads for the 27B (46 / 62 layers).
  const big = numLayers === (gemma3 ? 62 : 46);
  const rope = ropeOf(m, k, ropeFactors, headDim);
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
  const architecture: Architecture = gguf === "llama" && window !== null ? "mistral" : gguf as Architecture;
  const layers = Array.from({ length: numLayers }, (_, i) => i);
  const eos = [m.id("tokenizer.ggml.eos_token_id"), m.id("tokenizer.ggml.eot_token_id"), m.id("tokenizer.ggml.eom_token_id")]
    .filter((id): id is number => id !== null);
  return {
    architecture,
    hiddenSize,
    intermediateSize: m.int(k("feed_forward_length")),
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
    attnScale: gemma && big ? (hiddenSize / numHeads) ** -0.5 : headDim ** -0.5,
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
      : layers.map(() => null),
    bosTokenId: m.id("tokenizer.ggml.bos_token_id"),
    eosTokenIds: [...new Set(eos)],
    dtype: dtypeOf(header),
    linearAttention: qwen35 ? linearAttentionOf(m, k, numLayers) : null,
    attnOutputGate: qwen35,
    rotaryDim: qwen35 ? m.int(k("rope.dimension_count")) : headDim,
  };
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

function ropeOf(m: GgufMeta, k: (key: string) => string, factors: Float32Array | null, headDim: number): RopeSpec {
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
  return m.fail(`unsupported ${k("rope.scaling.type")} ${JSON.stringify(type)} (supported: none, linear)`);
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
