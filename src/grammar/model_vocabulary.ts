/**
 * A checkpoint's vocabulary for xgrammar and its tool-call format, built the same way on the
 * caller's thread (where specs are checked) and in the engine Worker (where they are compiled
 * and matched), so both see the same token table.
 * @module
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import { readTextFile } from "../runtime/runtime.ts";
import { detectToolCallFormat, FORMAT_SYNTAX, type ToolCallFormat } from "./tool_format.ts";
import { buildVocabulary, type Vocabulary } from "./vocabulary.ts";

/**
 * A model's tool-call format from its chat template and architecture (config.json's
 * `model_type`), or null when it has none we know.
 */
export function modelToolFormat(
  tokenizer: Tokenizer,
  architecture: string | null,
): ToolCallFormat | null {
  return detectToolCallFormat({
    chatTemplate: tokenizer.chatTemplate,
    modelType: architecture,
    hasToken: (piece) => tokenizer.pieceToToken(piece) !== undefined,
  });
}

/** Options of {@link loadModelVocabulary}. */
export interface ModelVocabularyOptions {
  /** Logits per row (the model's vocab_size). */
  vocabSize: number;
  /** config.json's `model_type`. */
  architecture: string | null;
}

/**
 * The vocabulary of checkpoint `dir` (its tokenizer.json read again for the decoder and added
 * tokens), with the special tokens of its tool-call format kept as text so that tool-call
 * grammars can produce them.
 */
export async function loadModelVocabulary(
  dir: string,
  tokenizer: Tokenizer,
  options: ModelVocabularyOptions,
): Promise<{ vocabulary: Vocabulary; toolFormat: ToolCallFormat | null }> {
  const json = JSON.parse(await readTextFile(`${dir.replace(/\/+$/, "")}/tokenizer.json`));
  const toolFormat = modelToolFormat(tokenizer, options.architecture);
  const vocabulary = buildVocabulary(tokenizer, {
    tokenizerJson: json,
    vocabSize: options.vocabSize,
    literalTokens: toolFormat ? FORMAT_SYNTAX[toolFormat].literalTokens : [],
  });
  return { vocabulary, toolFormat };
}
