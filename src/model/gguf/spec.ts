/**
 * GGUF metadata -> {@link ModelSpec} for llama (and Mistral, which llama.cpp runs as llama
 * with `llama.attention.sliding_window`), qwen2, qwen3, gemma2 and gemma3, with llama.cpp's keys
 * and defaults. Missing required metadata is a named {@link CheckpointError}.
 * @module
 */
import type { Architecture, ModelSpec, RopeSpec } from "../config.ts";
import { CheckpointError, UnsupportedArchitectureError } from "../errors.ts";
import type { GgufHeader, GgufMetaValue } from "./reader.ts";

const ARCHS = ["llama", "qwen2", "qwen3", "gemma2", "gemma3"] as const;

/** llama.cpp's Gemma-3: every 6th layer is global, the others slide (`set_swa_pattern(6)`). */
export const GEMMA3_SWA_PATTERN = 6;
/** llama.cpp's Gemma-3 local RoPE base when the file has no `rope.freq_base_swa`. */
const GEMMA3_LOCAL_BASE = 10000;

/** Typed metadata access naming the file and key on every failure. */
class Meta {
  constructor(readonly header: GgufHeader) {}

  fail(reason: string): never {
    throw new CheckpointError(this.header.path, reason);
  }

  raw(key: string): GgufMetaValue | undefined {
    return this.header.metadata.get(key);
  }

  /** A positive integer (an array of equal ones is accepted: per-layer values). */
  int(key: string, fallback?: number): number {
    let v = this.raw(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      return this.fail(`missing required metadata ${key}`);
    }
    if (Array.isArray(v) && v.length > 0) {
      const first = v[0];
      if (v.every((x) => x === first)) v = first;
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      return this.fail(`metadata ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  num(key: string, fallback?: number): number {
    const v = this.raw(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      return this.fail(`missing required metadata ${key}`);
    }
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      return this.fail(`metadata ${key} must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  }

  str(key: string): string | undefined {
    const v = this.raw(key);
    if (v !== undefined && typeof v !== "string") this.fail(`metadata ${key} must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  id(key: string): number | null {
    const v = this.raw(key);
    if (v === undefined) return null;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) this.fail(`metadata ${key} must be a token id, got ${JSON.stringify(v)}`);
    return v;
  }
}

/**
 * The spec of a GGUF model. `ropeFactors` are the values of a `rope_freqs.weight` tensor
 * (llama.cpp's form of Llama-3.1 rope scaling), when the file has one.
 */
export function ggufModelSpec(header: GgufHeader, ropeFactors: Float32Array | null = null): ModelSpec {
  const m: Meta = new Meta(header);
  const gguf = m.str("general.architecture");
  if (gguf === undefined) m.fail("missing required metadata general.architecture");
  if (!(ARCHS as readonly string[]).includes(gguf)) {
    throw new UnsupportedArchitectureError(header.path, gguf, ARCHS);
  }
  const k = (key: string) => `${gguf}.${key}`;
  const has = (t: string) => header.tensors.has(t);
  const hiddenSize = m.int(k("embedding_length"));
  const numHeads = m.int(k("attention.head_count"));
  const numKvHeads = m.int(k("attention.head_count_kv"), numHeads);
  const numLayers = m.int(k("block_count"));
  if (numHeads % numKvHeads !== 0) m.fail(`${k("attention.head_count")} (${numHeads}) is not divisible by ${k("attention.head_count_kv")} (${numKvHeads})`);
  const headDim = m.int(k("attention.key_length"), Math.floor(hiddenSize / numHeads));
  const embd = header.tensors.get("token_embd.weight");
  if (!embd) m.fail("missing tensor token_embd.weight");
  if (embd.dims.length !== 2) m.fail(`tensor token_embd.weight has ${embd.dims.length} dimensions, expected 2`);
  const window = m.raw(k("attention.sliding_window")) === undefined ? null : m.int(k("attention.sliding_window"));
  const gemma = gguf === "gemma2" || gguf === "gemma3";
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
    vocabSize: embd.dims[1],
    maxPositionEmbeddings: m.int(k("context_length")),
    rmsNormEps: m.num(k("attention.layer_norm_rms_epsilon")),
    rope,
    ...(localRope ? { localRope } : {}),
    tieWordEmbeddings: !has("output.weight"),
    qkvBias: has("blk.0.attn_q.bias"),
    oProjBias: has("blk.0.attn_output.bias"),
    mlpBias: has("blk.0.ffn_gate.bias"),
    qkNorm: has("blk.0.attn_q_norm.weight"),
    hiddenAct: gemma ? "gelu_tanh" : "silu",
    // convert_hf_to_gguf stores Gemma's norm weights as 1 + w already.
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
  };
}

function ropeOf(m: Meta, k: (key: string) => string, factors: Float32Array | null, headDim: number): RopeSpec {
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
