/**
 * Tool-call formats of the supported model families, and how a model's format is chosen.
 *
 * - `hermes` (Qwen 2/2.5/3, Hermes, SmolLM3): `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
 *   one block per call, anywhere in the answer.
 * - `llama3_json` (Llama 3.1/3.2/3.3): the answer is `{"name": ..., "parameters": {...}}`, optionally
 *   after `<|python_tag|>`; several calls separated by `;`.
 * - `mistral` (Mistral v3 tokenizers): `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`.
 * - `harmony` (gpt-oss): a message to `functions.NAME` on the commentary channel,
 *   `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>`; parsed
 *   with the reasoning by src/api/harmony.ts, not by the tool-call parser.
 * @module
 */
import type { ToolCallFormat } from "../types/api.ts";

// Request data, declared with the request options in types/api.ts.
export type { ToolCallFormat, ToolFunction } from "../types/api.ts";

/** The literal pieces of a format. */
export interface FormatSyntax {
  /** Text that opens a tool-call section (for llama3_json also a bare `{` at the start). */
  start: string;
  /** Key of the arguments object in a call. */
  argumentsKey: "arguments" | "parameters";
  /** Special tokens the grammar must be able to produce (kept as text in the vocabulary). */
  literalTokens: string[];
}

/** Syntax of each format. */
export const FORMAT_SYNTAX: Record<ToolCallFormat, FormatSyntax> = {
  hermes: {
    start: "<tool_call>",
    argumentsKey: "arguments",
    literalTokens: ["<tool_call>", "</tool_call>"],
  },
  llama3_json: {
    start: "<|python_tag|>",
    argumentsKey: "parameters",
    literalTokens: ["<|python_tag|>"],
  },
  mistral: { start: "[TOOL_CALLS]", argumentsKey: "arguments", literalTokens: ["[TOOL_CALLS]"] },
  harmony: {
    start: " to=functions.",
    argumentsKey: "arguments",
    literalTokens: ["<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|return|>", "<|constrain|>"],
  },
};

/** What {@link detectToolCallFormat} looks at. */
export interface FormatHints {
  /** The chat template text (tokenizer_config.json's or chat_template.jinja). */
  chatTemplate?: string | null;
  /** config.json's `model_type` (e.g. "qwen2", "llama", "mistral"). */
  modelType?: string | null;
  /** Whether the vocabulary has a piece (to tell Llama 3 from Llama 2 by `<|eot_id|>`). */
  hasToken?: (piece: string) => boolean;
}

/**
 * The tool-call format of a model, or null when it has none we know. The chat template
 * decides first, because it is what teaches the model its format: `<tool_call>` means hermes,
 * harmony channels with `<|call|>` harmony,
 * `[TOOL_CALLS]` mistral, `<|python_tag|>` or a Llama 3 `ipython` role llama3_json. Without a
 * telling template, the architecture decides: qwen2/qwen3 hermes, mistral/mixtral mistral,
 * gpt_oss harmony, llama with a `<|eot_id|>` token llama3_json.
 */
export function detectToolCallFormat(hints: FormatHints): ToolCallFormat | null {
  const t = hints.chatTemplate ?? "";
  if (t.includes("<tool_call>")) return "hermes";
  if (t.includes("<|channel|>") && t.includes("<|call|>")) return "harmony";
  if (t.includes("[TOOL_CALLS]")) return "mistral";
  if (t.includes("<|python_tag|>") || (t.includes("ipython") && t.includes("<|eot_id|>"))) {
    return "llama3_json";
  }
  switch (hints.modelType) {
    case "qwen2":
    case "qwen2_moe":
    case "qwen3":
    case "qwen3_moe":
      return "hermes";
    case "mistral":
    case "mixtral":
      return "mistral";
    case "gpt_oss":
      return "harmony";
    case "llama":
      return hints.hasToken?.("<|eot_id|>") ? "llama3_json" : null;
    default:
      return null;
  }
}
