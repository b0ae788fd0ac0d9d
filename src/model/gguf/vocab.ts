/**
 * A Hugging Face tokenizer.json's vocabulary as llama.cpp's `tokenizer.ggml.*` metadata:
 * "llama" (SentencePiece-style BPE with byte fallback: pieces, scores in merge order, token
 * types) or "gpt2" (byte-level BPE: pieces and merges).
 * @module
 */

/** llama.cpp token types. */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** The vocabulary as GGUF arrays. */
export interface GgufVocab {
  model: "llama" | "gpt2";
  tokens: string[];
  scores: Float32Array;
  types: Int32Array;
  /** gpt2 only: "left right" pairs in merge order. */
  merges: string[];
  unk: number | null;
}

/** Whether a tokenizer.json is byte-level BPE (GPT-2 style) rather than SentencePiece-style. */
function isByteLevel(json: any): boolean {
  const pre = json?.pre_tokenizer;
  const list = pre?.type === "Sequence" ? pre.pretokenizers ?? [] : [pre];
  return list.some((p: any) => p?.type === "ByteLevel");
}

/** Builds the vocabulary arrays from a tokenizer.json, padded to `vocabSize`. */
export function ggufVocab(json: any, vocabSize: number): GgufVocab {
  const model = json?.model;
  if (model?.type !== "BPE" || typeof model.vocab !== "object") {
    throw new Error(`tokenizer.json model type ${JSON.stringify(model?.type)} cannot be written to GGUF (supported: BPE)`);
  }
  const byteLevel = isByteLevel(json);
  const tokens = new Array<string>(vocabSize);
  const added = new Map<number, any>((json.added_tokens ?? []).map((t: any) => [t.id, t]));
  for (const [piece, id] of Object.entries(model.vocab as Record<string, number>)) if (id < vocabSize) tokens[id] = piece;
  for (const t of added.values()) if (t.id < vocabSize) tokens[t.id] = t.content;
  const scores = new Float32Array(vocabSize);
  const types = new Int32Array(vocabSize);
  const unkPiece = model.unk_token ?? (byteLevel ? null : "<unk>");
  let unk: number | null = null;
  for (let id = 0; id < vocabSize; id++) {
    const piece = tokens[id];
    const a = added.get(id);
    if (piece === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TOKEN_TYPE.unused;
    } else if (piece === unkPiece) {
      types[id] = TOKEN_TYPE.unknown;
      unk = id;
    } else if (a) {
      types[id] = a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
    } else if (!byteLevel && /^<0x[0-9A-F]{2}>$/.test(piece)) {
      types[id] = TOKEN_TYPE.byte;
    } else {
      types[id] = TOKEN_TYPE.normal;
      // BPE rank order: earlier pieces merge first.
      scores[id] = -id;
    }
  }
  const merges = byteLevel
    ? (model.merges ?? []).map((m: string | [string, string]) => (Array.isArray(m) ? m.join(" ") : m))
    : [];
  return { model: byteLevel ? "gpt2" : "llama", tokens, scores, types, merges, unk };
}
