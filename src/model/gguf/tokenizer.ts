/**
 * A tokenizer.json (and tokenizer_config) built from a GGUF file's `tokenizer.ggml.*`
 * metadata, for files with no tokenizer.json beside them. "llama" vocabularies become what
 * transformers' LlamaConverter makes of a SentencePiece BPE model: BPE with byte fallback
 * whose merges are every split of a piece into two pieces, ranked by the piece's score;
 * "gpt2" vocabularies become byte-level BPE with the file's merges and the pre-tokenizer
 * regex its `tokenizer.ggml.pre` names.
 * @module
 */
import { CheckpointError } from "../errors.ts";
import type { GgufHeader, GgufMetaValue } from "./reader.ts";
import { TOKEN_TYPE } from "./vocab.ts";

/** What the Tokenizer class needs (the shape of model/tokenizer.ts's TokenizerFiles). */
export interface GgufTokenizerFiles {
  tokenizer: Record<string, unknown>;
  config: Record<string, unknown>;
  chatTemplate: string | null;
  file: string;
}

// Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` values (llama-vocab.cpp).
const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const PRE_REGEX: Record<string, string> = {
  gpt2: GPT2_REGEX,
  default: GPT2_REGEX,
  "llama-bpe":
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2:
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  smollm: GPT2_REGEX,
};

function fail(header: GgufHeader, reason: string): never {
  throw new CheckpointError(header.path, reason);
}

function stringArray(header: GgufHeader, key: string): string[] {
  const v = header.metadata.get(key);
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    return fail(header, v === undefined ? `missing required metadata ${key} (and no tokenizer.json beside the file)` : `metadata ${key} must be an array of strings`);
  }
  return v as string[];
}

function numberArray(header: GgufHeader, key: string, length: number, fallback: number): number[] {
  const v: GgufMetaValue | undefined = header.metadata.get(key);
  if (v === undefined) return new Array(length).fill(fallback);
  if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === "number")) {
    return fail(header, `metadata ${key} must be an array of ${length} numbers`);
  }
  return v as number[];
}

/** Builds tokenizer files from the header's vocabulary metadata. */
export function ggufTokenizerFiles(header: GgufHeader): GgufTokenizerFiles {
  const meta = header.metadata;
  const model = meta.get("tokenizer.ggml.model");
  if (model === undefined) fail(header, "missing required metadata tokenizer.ggml.model (and no tokenizer.json beside the file)");
  if (model !== "llama" && model !== "gpt2") {
    fail(header, `unsupported tokenizer.ggml.model ${JSON.stringify(model)} (supported: llama, gpt2; or put a tokenizer.json beside the file)`);
  }
  const tokens = stringArray(header, "tokenizer.ggml.tokens");
  const types = numberArray(header, "tokenizer.ggml.token_type", tokens.length, TOKEN_TYPE.normal);
  const id = (key: string): number | null => {
    const v = meta.get(key);
    if (v === undefined) return null;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= tokens.length) fail(header, `metadata ${key} must be a token id below ${tokens.length}`);
    return v;
  };
  const bos = id("tokenizer.ggml.bos_token_id");
  const eos = id("tokenizer.ggml.eos_token_id");
  const unk = id("tokenizer.ggml.unknown_token_id");
  const addBos = meta.get("tokenizer.ggml.add_bos_token");
  const addEos = meta.get("tokenizer.ggml.add_eos_token");
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    if (!Object.hasOwn(vocab, t)) vocab[t] = i;
  });
  const added = tokens.flatMap((content, i) =>
    types[i] === TOKEN_TYPE.control || types[i] === TOKEN_TYPE.userDefined || types[i] === TOKEN_TYPE.unknown || i === bos || i === eos
      ? [{ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: types[i] === TOKEN_TYPE.userDefined, special: types[i] !== TOKEN_TYPE.userDefined }]
      : []
  );
  const withBos = (addBos ?? model === "llama") === true && bos !== null;
  const postProcessor = withBos
    ? {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: tokens[bos!], type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: tokens[bos!], type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: tokens[bos!], type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [tokens[bos!]]: { id: tokens[bos!], ids: [bos], tokens: [tokens[bos!]] } },
    }
    : null;
  let tokenizer: Record<string, unknown>;
  if (model === "llama") {
    const scores = numberArray(header, "tokenizer.ggml.scores", tokens.length, 0);
    const prefix = meta.get("tokenizer.ggml.add_space_prefix") ?? true;
    tokenizer = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: {
        type: "Sequence",
        normalizers: [...(prefix ? [{ type: "Prepend", prepend: "\u2581" }] : []), { type: "Replace", pattern: { String: " " }, content: "\u2581" }],
      },
      pre_tokenizer: null,
      post_processor: postProcessor,
      decoder: {
        type: "Sequence",
        decoders: [
          { type: "Replace", pattern: { String: "\u2581" }, content: " " },
          { type: "ByteFallback" },
          { type: "Fuse" },
          ...(prefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
        ],
      },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: unk === null ? null : tokens[unk],
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges: sentencePieceMerges(tokens, scores, types),
      },
    };
  } else {
    const merges = stringArray(header, "tokenizer.ggml.merges");
    const pre = meta.get("tokenizer.ggml.pre");
    const regex = PRE_REGEX[typeof pre === "string" ? pre : "default"];
    if (regex === undefined) fail(header, `unsupported tokenizer.ggml.pre ${JSON.stringify(pre)} (supported: ${Object.keys(PRE_REGEX).join(", ")}; or put a tokenizer.json beside the file)`);
    tokenizer = {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
          { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
        ],
      },
      post_processor: postProcessor ?? { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: unk === null ? null : tokens[unk],
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges,
      },
    };
  }
  const template = meta.get("tokenizer.chat_template");
  const config: Record<string, unknown> = {
    ...(bos !== null ? { bos_token: tokens[bos] } : {}),
    ...(eos !== null ? { eos_token: tokens[eos] } : {}),
    ...(unk !== null ? { unk_token: tokens[unk] } : {}),
    ...(typeof addBos === "boolean" ? { add_bos_token: addBos } : {}),
    ...(typeof addEos === "boolean" ? { add_eos_token: addEos } : {}),
  };
  return { tokenizer, config, chatTemplate: typeof template === "string" ? template : null, file: header.path };
}

/**
 * SentencePiece BPE as merges (transformers' SentencePieceExtractor): for every normal piece,
 * each split into two pieces of the vocabulary, ordered by the piece's score (best first),
 * splits of one piece by the ids of their halves.
 */
export function sentencePieceMerges(tokens: readonly string[], scores: readonly number[], types: readonly number[]): string[] {
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!ids.has(t)) ids.set(t, i);
  });
  const merges: { l: number; r: number; score: number; order: number }[] = [];
  tokens.forEach((piece, id) => {
    if (types[id] !== TOKEN_TYPE.normal && types[id] !== TOKEN_TYPE.userDefined) return;
    const chars = [...piece];
    const local: { l: number; r: number }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const l = ids.get(chars.slice(0, i).join(""));
      const r = ids.get(chars.slice(i).join(""));
      if (l !== undefined && r !== undefined) local.push({ l, r });
    }
    local.sort((a, b) => a.l - b.l || a.r - b.r);
    for (const m of local) merges.push({ ...m, score: scores[id], order: merges.length });
  });
  merges.sort((a, b) => b.score - a.score || a.order - b.order);
  return merges.map((m) => `${tokens[m.l]} ${tokens[m.r]}`);
}
