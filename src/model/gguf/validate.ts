/**
 * GGUF model metadata checked against the file's tensors before anything is sized from it: a
 * header is untrusted input (`block_count` = 0xFFFFFFFF must not become a 4-billion-entry
 * array, a `value_length` nothing reads must not be silently ignored). What differs between
 * architectures is one row of {@link GGUF_ARCHS}; a new family adds its row (and its names
 * in names.ts).
 * @module
 */
import { CheckpointError } from "../errors.ts";
import { MAX_EXPERTS } from "../moe_config.ts";
import type { GgufHeader, GgufMetaValue, GgufTensorInfo } from "./reader.ts";

/** What an architecture's metadata may say beyond the checks every architecture gets. */
export interface GgufArchRules {
  /** Rotary embedding over part of each head (`rope.dimension_count` < the head dim). */
  partialRope: boolean;
  /** Value heads of another width than key heads (`attention.value_length` != `key_length`). */
  distinctValueLength: boolean;
  /** `attn_q` also yields a per-head output gate (Qwen3.5's gated attention): twice the rows. */
  queryGate: boolean;
  /**
   * Mixture-of-experts feed-forwards in llama.cpp's stacked `ffn_{gate,up,down}_exps` tensors:
   * "qwen" (SwiGLU experts), "gpt_oss" (biases, router bias, clamped SwiGLU), or none.
   */
  experts?: "qwen" | "gpt_oss";
  /**
   * A shared expert beside the routed ones (`ffn_{gate,up,down}_shexp`, its sigmoid gate
   * `ffn_gate_inp_shexp`, width `expert_shared_feed_forward_length`).
   */
  sharedExpert?: boolean;
}

/** The GGUF `general.architecture` values this runtime loads, with their rules. */
export const GGUF_ARCHS: Readonly<Record<string, GgufArchRules>> = {
  llama: { partialRope: false, distinctValueLength: false, queryGate: false },
  qwen2: { partialRope: false, distinctValueLength: false, queryGate: false },
  qwen3: { partialRope: false, distinctValueLength: false, queryGate: false },
  gemma2: { partialRope: false, distinctValueLength: false, queryGate: false },
  gemma3: { partialRope: false, distinctValueLength: false, queryGate: false },
  qwen35: { partialRope: true, distinctValueLength: false, queryGate: true },
  qwen3moe: { partialRope: false, distinctValueLength: false, queryGate: false, experts: "qwen" },
  "gpt-oss": { partialRope: false, distinctValueLength: false, queryGate: false, experts: "gpt_oss" },
  qwen35moe: { partialRope: true, distinctValueLength: false, queryGate: true, experts: "qwen", sharedExpert: true },
};

/** Longest context a file may declare (2^24 tokens: beyond every released model). */
export const MAX_GGUF_CONTEXT = 1 << 24;

const BLOCK_TENSOR = /^blk\.(\d+)\./;

/**
 * Typed metadata access naming the file and key on every failure. Integers are positive and
 * safe; a per-layer array of equal values stands for its value.
 */
export class GgufMeta {
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

/** The model's sizes as the metadata gives them, each checked against the tensors. */
export interface GgufModelSizes {
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
}

/**
 * Reads and checks the sizes of a model of GGUF architecture `arch` (a key of
 * {@link GGUF_ARCHS}): `block_count` equals the blocks the tensors hold (blk.0 to blk.N-1,
 * none missing), the embedding length, head counts and head dims match the embedding and the
 * attention tensors of every block, `value_length` and `rope.dimension_count` are ones this
 * runtime computes, the context length is sane, and token ids (the vocabulary's, the special
 * tokens') name rows of the embedding.
 */
export function checkGgufSizes(m: GgufMeta, arch: string): GgufModelSizes {
  const rules = GGUF_ARCHS[arch];
  const k = (key: string) => `${arch}.${key}`;
  const tensors = m.header.tensors;
  const numLayers = m.int(k("block_count"));
  const blocks = new Set<number>();
  for (const name of tensors.keys()) {
    const b = BLOCK_TENSOR.exec(name);
    if (b) blocks.add(Number(b[1]));
  }
  const last = blocks.size === 0 ? -1 : Math.max(...blocks);
  if (blocks.size !== numLayers || last !== numLayers - 1) {
    m.fail(`metadata ${k("block_count")} is ${numLayers}, but the tensors hold ${blocks.size} blocks${blocks.size ? ` (blk.0 to blk.${last}${last + 1 !== blocks.size ? ", some missing" : ""})` : ""}`);
  }
  const embd = tensors.get("token_embd.weight");
  if (!embd) m.fail("missing tensor token_embd.weight");
  if (embd.dims.length !== 2) m.fail(`tensor token_embd.weight has ${embd.dims.length} dimensions, expected 2`);
  const hiddenSize = m.int(k("embedding_length"));
  if (hiddenSize !== embd.dims[0]) m.fail(`metadata ${k("embedding_length")} is ${hiddenSize}, but token_embd.weight has rows of ${embd.dims[0]}`);
  const vocabSize = embd.dims[1];
  const numHeads = m.int(k("attention.head_count"));
  const numKvHeads = m.int(k("attention.head_count_kv"), numHeads);
  if (numHeads % numKvHeads !== 0) m.fail(`${k("attention.head_count")} (${numHeads}) is not divisible by ${k("attention.head_count_kv")} (${numKvHeads})`);
  const headDim = m.int(k("attention.key_length"), Math.floor(hiddenSize / numHeads));
  const valueDim = m.int(k("attention.value_length"), headDim);
  if (valueDim !== headDim && !rules.distinctValueLength) {
    m.fail(`metadata ${k("attention.value_length")} is ${valueDim}, but ${arch} value heads are as wide as key heads (${headDim})`);
  }
  // Each block's attention: the head counts times the head dims are the projections' rows.
  const rows: [string, number, string][] = [
    ["attn_q", numHeads * headDim * (rules.queryGate ? 2 : 1), `${k("attention.head_count")} x head dim${rules.queryGate ? " x 2 (query and gate)" : ""}`],
    ["attn_k", numKvHeads * headDim, `${k("attention.head_count_kv")} x head dim`],
    ["attn_v", numKvHeads * valueDim, `${k("attention.head_count_kv")} x ${k("attention.value_length")}`],
  ];
  for (let i = 0; i < numLayers; i++) {
    for (const [name, want, what] of rows) {
      const t = tensors.get(`blk.${i}.${name}.weight`);
      if (t && (t.dims.length !== 2 || t.dims[1] !== want)) {
        m.fail(`tensor blk.${i}.${name}.weight has shape [${t.dims.join(", ")}] (GGUF order), but the metadata gives ${want} rows (${what})`);
      }
    }
  }
  const ropeDims = m.raw(k("rope.dimension_count")) === undefined ? headDim : m.int(k("rope.dimension_count"));
  if (ropeDims % 2 !== 0 || ropeDims > headDim) {
    m.fail(`metadata ${k("rope.dimension_count")} is ${ropeDims}: it must be even and at most the head dim ${headDim}`);
  }
  if (ropeDims !== headDim && !rules.partialRope) {
    m.fail(`metadata ${k("rope.dimension_count")} is ${ropeDims}: rotary embedding over part of a head (dim ${headDim}) is not supported for ${arch}`);
  }
  const maxPositionEmbeddings = m.int(k("context_length"));
  if (maxPositionEmbeddings > MAX_GGUF_CONTEXT) {
    m.fail(`metadata ${k("context_length")} is ${maxPositionEmbeddings}, beyond any model (at most ${MAX_GGUF_CONTEXT})`);
  }
  const tokens = m.raw("tokenizer.ggml.tokens");
  if (Array.isArray(tokens) && tokens.length > vocabSize) {
    m.fail(`metadata tokenizer.ggml.tokens has ${tokens.length} tokens, more than the ${vocabSize} rows of token_embd.weight`);
  }
  for (const key of ["bos", "eos", "eot", "eom", "unknown", "padding"].map((t) => `tokenizer.ggml.${t}_token_id`)) {
    const id = m.id(key);
    if (id !== null && id >= vocabSize) m.fail(`metadata ${key} is ${id}, outside the ${vocabSize}-token embedding`);
  }
  return { numLayers, hiddenSize, numHeads, numKvHeads, headDim, vocabSize, maxPositionEmbeddings };
}

/** A MoE file's experts as the metadata gives them, checked against every block's tensors. */
export interface GgufExperts {
  numExperts: number;
  topK: number;
  /** `expert_feed_forward_length`: one expert's SwiGLU width. */
  expertIntermediateSize: number;
  /** Per block: whether it has a router (else a dense `ffn_*` feed-forward). */
  sparseLayers: boolean[];
  /** `expert_shared_feed_forward_length` where the architecture has a shared expert. */
  sharedExpertIntermediateSize?: number;
  /**
   * The stored type of the first expert matrix. Every sparse block's experts are MXFP4, or
   * all block types (Q8_0, Q4_0, Q4_K, Q6_K, mixed as a Q4_K_M file mixes them), or all
   * plain floats (F32/F16/BF16).
   */
  type: "F32" | "F16" | "BF16" | "MXFP4" | "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K";
}

/**
 * Reads and checks the experts of a MoE architecture: `expert_count` (at most
 * {@link MAX_EXPERTS}), `expert_used_count` (at most the count) and
 * `expert_feed_forward_length` against each block's router `ffn_gate_inp` [H, E] and stacked
 * experts `ffn_{gate,up}_exps` [H, I, E] and `ffn_down_exps` [I, H, E] (GGUF order), gpt-oss's
 * biases and sinks. The expert kernels take one format per model: plain floats, blocks
 * (Q8_0 / Q4_0 packed from the file's, Q4_K / Q6_K transcoded to Q4X / Q8X, moe_weights.ts;
 * gate|up and down may differ, gpt-oss's gate and up may not: its rows interleave), or MXFP4
 * blocks (gpt-oss).
 */
export function checkGgufExperts(m: GgufMeta, arch: string, hiddenSize: number, numLayers: number, numHeads: number): GgufExperts {
  const kind = GGUF_ARCHS[arch].experts!;
  const k = (key: string) => `${arch}.${key}`;
  const tensors = m.header.tensors;
  const numExperts = m.int(k("expert_count"));
  if (numExperts > MAX_EXPERTS) m.fail(`metadata ${k("expert_count")} is ${numExperts}: at most ${MAX_EXPERTS} experts are supported`);
  const topK = m.int(k("expert_used_count"));
  if (topK > numExperts) m.fail(`metadata ${k("expert_used_count")} (${topK}) exceeds ${k("expert_count")} (${numExperts})`);
  const I = m.int(k("expert_feed_forward_length"));
  const S = GGUF_ARCHS[arch].sharedExpert ? m.int(k("expert_shared_feed_forward_length")) : 0;
  const H = hiddenSize;
  const E = numExperts;
  const shape = (name: string, dims: number[], what: string): GgufTensorInfo => {
    const t = tensors.get(name);
    if (!t) return m.fail(`missing tensor ${name}`);
    if (t.dims.length !== dims.length || t.dims.some((d, j) => d !== dims[j])) {
      m.fail(`tensor ${name} has shape [${t.dims.join(", ")}] (GGUF order), but the metadata gives [${dims.join(", ")}] (${what})`);
    }
    return t;
  };
  let type: GgufExperts["type"] | null = null;
  const sparseLayers: boolean[] = [];
  for (let i = 0; i < numLayers; i++) {
    const b = `blk.${i}`;
    const sparse = tensors.has(`${b}.ffn_gate_inp.weight`) || kind === "gpt_oss";
    sparseLayers.push(sparse);
    if (!sparse) continue;
    shape(`${b}.ffn_gate_inp.weight`, [H, E], `${k("embedding_length")}, ${k("expert_count")}`);
    const exps = [
      shape(`${b}.ffn_gate_exps.weight`, [H, I, E], `${k("embedding_length")}, ${k("expert_feed_forward_length")}, ${k("expert_count")}`),
      shape(`${b}.ffn_up_exps.weight`, [H, I, E], `${k("embedding_length")}, ${k("expert_feed_forward_length")}, ${k("expert_count")}`),
      shape(`${b}.ffn_down_exps.weight`, [I, H, E], `${k("expert_feed_forward_length")}, ${k("embedding_length")}, ${k("expert_count")}`),
    ];
    for (const t of exps) {
      const name = t.type.name;
      if (name === "MXFP4" && kind !== "gpt_oss") m.fail(`tensor ${t.name} holds MXFP4 experts: only gpt-oss experts run as MXFP4`);
      // The expert kernels take one format per model: MXFP4, blocks of the integer types
      // (any mix: each stack is packed or transcoded on its own), or values (any float type).
      const format = (n: string) => (n === "F32" || n === "F16" || n === "BF16" ? "plain floats" : n === "MXFP4" ? n : "blocks (Q8_0, Q4_0, Q4_K, Q6_K)");
      if (type !== null && format(type) !== format(name)) {
        m.fail(`tensor ${t.name} is ${name}, but other experts are ${type}: experts must be all MXFP4, all blocks (Q8_0, Q4_0, Q4_K, Q6_K) or all plain floats`);
      }
      type ??= name as GgufExperts["type"];
    }
    // gpt-oss's gate and up rows are interleaved again for its kernels: one type for both.
    if (kind === "gpt_oss" && exps[0].type.name !== exps[1].type.name) {
      m.fail(`tensor ${exps[1].name} is ${exps[1].type.name}, but ${exps[0].name} is ${exps[0].type.name}: gpt-oss gate and up experts must share a type`);
    }
    if (S) {
      const what = `${k("embedding_length")}, ${k("expert_shared_feed_forward_length")}`;
      shape(`${b}.ffn_gate_shexp.weight`, [H, S], what);
      shape(`${b}.ffn_up_shexp.weight`, [H, S], what);
      shape(`${b}.ffn_down_shexp.weight`, [S, H], `${k("expert_shared_feed_forward_length")}, ${k("embedding_length")}`);
      shape(`${b}.ffn_gate_inp_shexp.weight`, [H, 1], `${k("embedding_length")}, 1`);
    }
    if (kind === "gpt_oss") {
      shape(`${b}.ffn_gate_inp.bias`, [E], k("expert_count"));
      shape(`${b}.ffn_gate_exps.bias`, [I, E], `${k("expert_feed_forward_length")}, ${k("expert_count")}`);
      shape(`${b}.ffn_up_exps.bias`, [I, E], `${k("expert_feed_forward_length")}, ${k("expert_count")}`);
      shape(`${b}.ffn_down_exps.bias`, [H, E], `${k("embedding_length")}, ${k("expert_count")}`);
      shape(`${b}.attn_sinks.weight`, [numHeads], k("attention.head_count"));
    }
  }
  if (type === null) m.fail(`no block has experts (tensor blk.N.ffn_gate_inp.weight): not a ${arch} model`);
  return { numExperts, topK, expertIntermediateSize: I, sparseLayers, type, ...(S ? { sharedExpertIntermediateSize: S } : {}) };
}
