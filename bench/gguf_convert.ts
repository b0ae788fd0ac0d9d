/**
 * Converts a Hugging Face llama-family checkpoint (safetensors + tokenizer.json) into a
 * GGUF file llama.cpp loads: `llama` architecture metadata, the SentencePiece-style vocab
 * from tokenizer.json, f32/f16 tensors under llama.cpp's names, with q/k rows permuted
 * from HF's rotate-half RoPE layout back to llama.cpp's interleaved pairs.
 * @module
 */
import { loadModelSpec, type ModelSpec } from "../src/model/config.ts";
import {
  openCheckpointTensors,
  type TensorIndex,
  type TensorInfo,
} from "../src/model/safetensors.ts";
import { type GgufTensor, type GgufValue, writeGguf } from "./gguf_writer.ts";
import { readTextFile } from "../src/runtime/runtime.ts";

/** llama.cpp token types. */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, unused: 5, byte: 6 } as const;

/** What {@link convertToGguf} wrote. */
export interface GgufConversion {
  path: string;
  bytes: number;
  tensors: number;
  /** "F32" when every matrix is f32, else "F16". */
  fileType: "F32" | "F16";
}

/**
 * HF -> GGUF row permutation of a q or k projection (llama.cpp's convert_hf_to_gguf
 * `permute`): within each head, row `half * hd/2 + j` moves to row `2j + half`.
 * `bytes` holds [heads * hd, rowBytes] row-major.
 */
export function permuteQkRows(bytes: Uint8Array, heads: number, rowBytes: number): Uint8Array {
  const rows = bytes.length / rowBytes;
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) {
    throw new RangeError(`cannot permute ${rows} rows over ${heads} heads`);
  }
  const out = new Uint8Array(bytes.length);
  for (let h = 0; h < heads; h++) {
    for (let half = 0; half < 2; half++) {
      for (let j = 0; j < hd / 2; j++) {
        const src = (h * hd + half * (hd / 2) + j) * rowBytes;
        const dst = (h * hd + 2 * j + half) * rowBytes;
        out.set(bytes.subarray(src, src + rowBytes), dst);
      }
    }
  }
  return out;
}

/** bf16 bytes -> f32 bytes (llama.cpp's F16 path cannot hold bf16's range). */
function bf16ToF32(bytes: Uint8Array): Uint8Array {
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Uint8Array(out.buffer);
}

/** The tokenizer.json vocab as GGUF arrays, padded to `vocabSize`. */
export function ggufVocab(tokenizerJson: any, vocabSize: number): {
  tokens: string[];
  scores: Float32Array;
  types: Int32Array;
  unk: number;
} {
  const vocab = tokenizerJson?.model?.vocab as Record<string, number> | undefined;
  if (!vocab || typeof vocab !== "object") throw new Error("tokenizer.json has no model.vocab");
  const tokens = new Array<string>(vocabSize);
  const special = new Set<number>(
    (tokenizerJson.added_tokens ?? []).filter((t: any) => t.special).map((t: any) => t.id),
  );
  const unkPiece = tokenizerJson.model.unk_token ?? "<unk>";
  for (const [piece, id] of Object.entries(vocab)) if (id < vocabSize) tokens[id] = piece;
  for (const t of tokenizerJson.added_tokens ?? []) if (t.id < vocabSize) tokens[t.id] = t.content;
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  let unk = 0;
  for (let id = 0; id < vocabSize; id++) {
    const piece = tokens[id];
    if (piece === undefined) {
      tokens[id] = `<unused${id}>`;
      types[id] = TOKEN_TYPE.unused;
    } else if (piece === unkPiece) {
      types[id] = TOKEN_TYPE.unknown;
      unk = id;
    } else if (special.has(id)) {
      types[id] = TOKEN_TYPE.control;
    } else if (/^<0x[0-9A-F]{2}>$/.test(piece)) {
      types[id] = TOKEN_TYPE.byte;
    } else {
      types[id] = TOKEN_TYPE.normal;
      scores[id] = -id; // BPE rank order: earlier pieces merge first.
    }
  }
  return { tokens, scores, types, unk };
}

function metadata(
  spec: ModelSpec,
  name: string,
  vocab: ReturnType<typeof ggufVocab>,
  fileType: number,
) {
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const f32 = (value: number): GgufValue => ({ type: "f32", value });
  const out: [string, GgufValue][] = [
    ["general.architecture", { type: "string", value: "llama" }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(fileType)],
    ["llama.context_length", u32(spec.maxPositionEmbeddings)],
    ["llama.embedding_length", u32(spec.hiddenSize)],
    ["llama.block_count", u32(spec.numLayers)],
    ["llama.feed_forward_length", u32(spec.intermediateSize)],
    ["llama.rope.dimension_count", u32(spec.headDim)],
    ["llama.attention.head_count", u32(spec.numHeads)],
    ["llama.attention.head_count_kv", u32(spec.numKvHeads)],
    ["llama.attention.key_length", u32(spec.headDim)],
    ["llama.attention.value_length", u32(spec.headDim)],
    ["llama.attention.layer_norm_rms_epsilon", f32(spec.rmsNormEps)],
    ["llama.rope.freq_base", f32(spec.rope.theta)],
    ["llama.vocab_size", u32(spec.vocabSize)],
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: vocab.types }],
    ["tokenizer.ggml.unknown_token_id", u32(vocab.unk)],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: spec.bosTokenId !== null }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  ];
  if (spec.bosTokenId !== null) out.push(["tokenizer.ggml.bos_token_id", u32(spec.bosTokenId)]);
  if (spec.eosTokenIds.length) out.push(["tokenizer.ggml.eos_token_id", u32(spec.eosTokenIds[0])]);
  return out;
}

/**
 * Writes `outPath` from the checkpoint in `dir`. Llama and Mistral-without-window only (the
 * architectures llama.cpp runs as `llama`); matrices keep f16 or f32 (bf16 becomes f32),
 * norms are f32.
 */
export async function convertToGguf(dir: string, outPath: string): Promise<GgufConversion> {
  const spec = await loadModelSpec(dir);
  if (spec.architecture !== "llama" && spec.architecture !== "mistral") {
    throw new Error(`GGUF conversion supports llama only, not ${spec.architecture}`);
  }
  if (spec.qkvBias || spec.oProjBias || spec.mlpBias || spec.rope.type !== "default") {
    throw new Error("GGUF conversion: biases and rope scaling are not supported");
  }
  if (spec.layerWindows.some((w) => w !== null)) {
    throw new Error("GGUF conversion: sliding-window attention is not supported");
  }
  const tokenizerJson = JSON.parse(await readTextFile(`${dir}/tokenizer.json`));
  const vocab = ggufVocab(tokenizerJson, spec.vocabSize);
  const index = await openCheckpointTensors(dir);
  try {
    const tensors: GgufTensor[] = [];
    let anyF16 = false;
    const add = (ggufName: string, hfName: string, permuteHeads = 0, forceF32 = false) => {
      const info = index.get(hfName);
      const f16 = info.dtype === "F16" && !forceF32;
      anyF16 ||= f16;
      tensors.push({
        name: ggufName,
        dims: [...info.shape].reverse(),
        type: f16 ? "F16" : "F32",
        bytes: () => tensorBytes(index, info, f16, permuteHeads),
      });
    };
    add("token_embd.weight", "model.embed_tokens.weight");
    for (let l = 0; l < spec.numLayers; l++) {
      const p = `model.layers.${l}`;
      add(`blk.${l}.attn_norm.weight`, `${p}.input_layernorm.weight`, 0, true);
      add(`blk.${l}.attn_q.weight`, `${p}.self_attn.q_proj.weight`, spec.numHeads);
      add(`blk.${l}.attn_k.weight`, `${p}.self_attn.k_proj.weight`, spec.numKvHeads);
      add(`blk.${l}.attn_v.weight`, `${p}.self_attn.v_proj.weight`);
      add(`blk.${l}.attn_output.weight`, `${p}.self_attn.o_proj.weight`);
      add(`blk.${l}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`, 0, true);
      add(`blk.${l}.ffn_gate.weight`, `${p}.mlp.gate_proj.weight`);
      add(`blk.${l}.ffn_up.weight`, `${p}.mlp.up_proj.weight`);
      add(`blk.${l}.ffn_down.weight`, `${p}.mlp.down_proj.weight`);
    }
    add("output_norm.weight", "model.norm.weight", 0, true);
    if (!spec.tieWordEmbeddings) add("output.weight", "lm_head.weight");
    const name = dir.replace(/\/+$/, "").split("/").at(-1) ?? "model";
    const fileType = anyF16 ? 1 : 0;
    const bytes = await writeGguf(outPath, {
      metadata: metadata(spec, name, vocab, fileType),
      tensors,
      alignment: 32,
    });
    return { path: outPath, bytes, tensors: tensors.length, fileType: anyF16 ? "F16" : "F32" };
  } finally {
    index.close();
  }
}

async function tensorBytes(
  index: TensorIndex,
  info: TensorInfo,
  f16: boolean,
  permuteHeads: number,
) {
  let bytes: Uint8Array = await index.read(info);
  if (info.dtype === "BF16") bytes = bf16ToF32(bytes);
  else if (info.dtype === "F16" && !f16) bytes = f16BytesToF32(bytes);
  if (permuteHeads > 0) bytes = permuteQkRows(bytes, permuteHeads, info.shape[1] * (f16 ? 2 : 4));
  return bytes;
}

function f16BytesToF32(bytes: Uint8Array): Uint8Array {
  const src = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    out[i] = exp === 0
      ? sign * mant * 2 ** -24
      : exp === 0x1f
      ? (mant ? NaN : sign * Infinity)
      : sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return new Uint8Array(out.buffer);
}
