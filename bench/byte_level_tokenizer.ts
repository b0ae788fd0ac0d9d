/**
 * A GPT-2 style byte-level BPE `tokenizer.json` (the layout SmolLM2 and Qwen ship), built from
 * a vocabulary, merges and special tokens: the synthetic vocabularies of the grammar bench and
 * of the vocabulary tests.
 * @module
 */

/** tokenizer.json for a byte-level BPE; `specials` are added tokens (id from `vocab`). */
export function byteLevelTokenizerJson(
  vocab: Record<string, number>,
  merges: readonly string[],
  specials: readonly string[],
): Record<string, unknown> {
  return {
    version: "1.0",
    added_tokens: specials.map((content) => ({
      id: vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: "ByteLevel",
      add_prefix_space: false,
      trim_offsets: true,
      use_regex: true,
    },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}
