/**
 * Our tokenizer's vocabulary in the form xgrammar's `TokenizerInfo` takes: one encoded piece
 * per token id, the vocabulary type that says how to turn pieces into bytes, the stop tokens,
 * and which tokens are special (given as "" so that no grammar ever allows them).
 * @module
 */
import type { Tokenizer } from "../model/tokenizer.ts";

/**
 * How a piece decodes to bytes (xgrammar's VocabType): `byte_fallback` for SentencePiece-style
 * BPE (Llama 2, Mistral, Gemma: "▁" is a space, `<0x0A>` is one byte), `byte_level` for GPT-2
 * style BPE (Llama 3, Qwen, SmolLM: every byte mapped to a printable character), `raw` when
 * pieces are the text itself.
 */
export type VocabType = "byte_fallback" | "byte_level" | "raw";

/** The input of xgrammar's `TokenizerInfo.createTokenizerInfo`. */
export interface Vocabulary {
  /** Piece per id, ordered by id; "" for special tokens. */
  encoded: string[];
  vocabType: VocabType;
  /** Whether tokenization prepends a space (SentencePiece's "▁" prefix). */
  addPrefixSpace: boolean;
  /** Ids that end a constrained sequence once its grammar is complete. */
  stopTokenIds: number[];
  /** Logits per row (the model's vocab_size, at least the tokenizer's). */
  vocabSize: number;
}

/** Options of {@link buildVocabulary}. */
export interface VocabularyOptions {
  /** The parsed tokenizer.json the tokenizer was built from (decoder, model, added tokens). */
  tokenizerJson: Record<string, unknown>;
  /** Logits per row when the model pads its vocabulary past the tokenizer's (config.json). */
  vocabSize?: number;
  /** Stop tokens (default: the tokenizer's EOS ids). */
  stopTokenIds?: readonly number[];
  /**
   * Special tokens kept as text, because a grammar must be able to produce them: tool-call
   * markers such as Mistral's `[TOOL_CALLS]` or Llama 3's `<|python_tag|>`.
   */
  literalTokens?: readonly string[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The type of each decoder (a `Sequence` is flattened). */
function decoderTypes(json: Json): string[] {
  const d = json.decoder;
  if (!isObject(d)) return [];
  const list = d.type === "Sequence" && Array.isArray(d.decoders) ? d.decoders : [d];
  return list.filter(isObject).map((x) => String(x.type));
}

/**
 * The vocabulary type of a tokenizer.json: a `ByteLevel` decoder means byte-level; a
 * `ByteFallback` or `Metaspace` decoder, or `model.byte_fallback`, means byte-fallback
 * ("▁" for space, `<0xXX>` pieces); anything else is raw. xgrammar's own detection is the
 * same except that it reads a Metaspace-only decoder as raw, which would keep "▁" as text.
 */
export function detectVocabType(tokenizerJson: Json): VocabType {
  const types = decoderTypes(tokenizerJson);
  if (types.includes("ByteLevel")) return "byte_level";
  if (types.includes("ByteFallback") || types.includes("Metaspace")) return "byte_fallback";
  const model = tokenizerJson.model;
  if (isObject(model) && model.byte_fallback === true) return "byte_fallback";
  return "raw";
}

/** Whether tokenization prepends "▁" (a `Prepend "▁"` normalizer or a prepending Metaspace). */
export function detectAddPrefixSpace(tokenizerJson: Json): boolean {
  const n = tokenizerJson.normalizer;
  if (isObject(n)) {
    const list = n.type === "Sequence" && Array.isArray(n.normalizers) ? n.normalizers : [n];
    if (list.some((x) => isObject(x) && x.type === "Prepend" && x.prepend === "▁")) return true;
  }
  const p = tokenizerJson.pre_tokenizer;
  if (isObject(p)) {
    const list = p.type === "Sequence" && Array.isArray(p.pretokenizers) ? p.pretokenizers : [p];
    return list.some((x) =>
      isObject(x) && x.type === "Metaspace" &&
      (x.prepend_scheme === "always" || x.prepend_scheme === "first")
    );
  }
  return false;
}

let byteToChar: string[] | null = null;
/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 upwards. */
export function byteLevelChars(): readonly string[] {
  if (byteToChar) return byteToChar;
  const table: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
      (b >= 0xae && b <= 0xff);
    table.push(String.fromCodePoint(printable ? b : next++));
  }
  return (byteToChar = table);
}

let charToByte: Map<string, number> | null = null;

/**
 * The bytes a token stands for, decoded the way xgrammar decodes `encoded[id]` (empty for
 * special tokens): `<0xXX>` is one byte and "▁" a space in a byte-fallback vocabulary, each
 * character one byte in a byte-level one (a piece with a character outside the byte map is
 * taken as text, as xgrammar does), UTF-8 otherwise.
 */
export function tokenBytes(vocabulary: Vocabulary, id: number): Uint8Array {
  const piece = vocabulary.encoded[id] ?? "";
  const utf8 = (text: string) => new TextEncoder().encode(text);
  if (vocabulary.vocabType === "byte_fallback") {
    const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
    return m ? Uint8Array.of(parseInt(m[1], 16)) : utf8(piece.replaceAll("\u2581", " "));
  }
  if (vocabulary.vocabType === "byte_level") {
    charToByte ??= new Map(byteLevelChars().map((c, b) => [c, b] as [string, number]));
    const out: number[] = [];
    for (const ch of piece) {
      const b = charToByte.get(ch);
      if (b === undefined) return utf8(piece);
      out.push(b);
    }
    return Uint8Array.from(out);
  }
  return utf8(piece);
}

/** Text as a byte-level piece (what a byte-level vocabulary stores for it). */
export function toByteLevel(text: string): string {
  const chars = byteLevelChars();
  let out = "";
  for (const b of new TextEncoder().encode(text)) out += chars[b];
  return out;
}

/**
 * Builds the vocabulary xgrammar needs from our tokenizer. Special tokens (BOS/EOS and added
 * tokens flagged special) become "" — xgrammar's marker for a token no grammar may produce —
 * except `literalTokens`. Added tokens that are not special are plain text; in a byte-level
 * vocabulary their content is stored raw, so it is mapped to byte-level characters here.
 */
export function buildVocabulary(tokenizer: Tokenizer, options: VocabularyOptions): Vocabulary {
  const json = options.tokenizerJson;
  const vocabType = detectVocabType(json);
  const literal = new Set(options.literalTokens ?? []);
  const added = new Set<number>();
  if (Array.isArray(json.added_tokens)) {
    for (const t of json.added_tokens) if (isObject(t) && typeof t.id === "number") added.add(t.id);
  }
  const encoded: string[] = [];
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const piece = tokenizer.tokenToPiece(id) ?? "";
    if (tokenizer.isSpecial(id) && !literal.has(piece)) {
      encoded.push("");
    } else if (added.has(id) && vocabType === "byte_level") {
      encoded.push(toByteLevel(piece));
    } else {
      encoded.push(piece);
    }
  }
  return {
    encoded,
    vocabType,
    addPrefixSpace: detectAddPrefixSpace(json),
    stopTokenIds: [...(options.stopTokenIds ?? tokenizer.eosTokenIds)],
    vocabSize: Math.max(options.vocabSize ?? 0, tokenizer.vocabSize),
  };
}
