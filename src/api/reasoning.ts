/**
 * Reasoning output: the part of a completion a thinking model writes before its answer, split
 * off the text as it streams. Which parser a model gets comes from its chat template (a
 * template that writes `<think>` blocks gets "think", as Qwen3, QwQ and DeepSeek-R1 do); a
 * server may override it. Each parser is a {@link ReasoningStreamParser}; gpt-oss's harmony
 * channels are the "harmony" entry (src/api/harmony.ts).
 * @module
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import { InvalidRequestError, type ReasoningGate } from "../types/api.ts";
import { HARMONY_MARKERS, HarmonyStreamParser } from "./harmony.ts";

/** Text split into reasoning and answer. */
export interface ReasoningSplit {
  reasoning: string;
  content: string;
}

/** Splits a completion's text, fed in pieces as it is decoded. */
export interface ReasoningStreamParser {
  /** The next decoded text; returns what is known to be reasoning or answer so far. */
  push(text: string): ReasoningSplit;
  /** The end of the output: what was held back (a possible marker's start) goes out. */
  finish(): ReasoningSplit;
}

/** A reasoning format: its markers, and how to parse an output. */
export interface ReasoningFormat {
  /** Text that opens a reasoning block. */
  start: string;
  /** Text that ends it; the answer follows. */
  end: string;
  /** A parser for one completion that starts where its prompt leaves it. */
  parser(start: ReasoningStart): ReasoningStreamParser;
  /** Special tokens the parser reads, kept in the decoded text (beyond `start` and `end`). */
  markers?: readonly string[];
  /**
   * Where the answer starts when that is not simply after `end`: `marker`, harmony's final
   * channel header, which may follow any number of messages (each opened by `messageStart`).
   * A response grammar then starts after the marker's tokens and everything before them is
   * free (see {@link reasoningStart}).
   */
  answer?: { marker: string; messageStart: string };
}

/** The reasoning parsers this engine knows, by name (vLLM's names are aliases). */
export const REASONING_PARSERS: Record<string, ReasoningFormat> = {
  think: {
    start: "<think>",
    end: "</think>",
    parser: (start) => new ThinkStreamParser("<think>", "</think>", start),
  },
  // gpt-oss: the analysis channel is the reasoning (src/api/harmony.ts); a request with tools
  // parses calls with the same parser (the client's HarmonyOutputParser).
  harmony: {
    start: "<|channel|>analysis<|message|>",
    end: "<|end|>",
    parser: () => new HarmonyStreamParser({ tools: false }),
    markers: HARMONY_MARKERS,
    answer: { marker: "<|channel|>final<|message|>", messageStart: "<|start|>" },
  },
};

/** Other names of the parsers (vLLM's `--reasoning-parser` values). */
const ALIASES: Record<string, string> = { qwen3: "think", deepseek_r1: "think", openai_gptoss: "harmony", gpt_oss: "harmony" };

/** The canonical name of a parser, or null when there is none of that name. */
export function reasoningParserName(name: string): string | null {
  const canonical = ALIASES[name] ?? name;
  return REASONING_PARSERS[canonical] ? canonical : null;
}

/** Every accepted parser name (for help and error messages). */
export function reasoningParserNames(): string[] {
  return [...Object.keys(REASONING_PARSERS), ...Object.keys(ALIASES)];
}

/**
 * The parser a model's chat template calls for: one whose markers the template writes and the
 * tokenizer has, or null (the model does not reason in a format this engine knows). gpt-oss
 * (`architecture` "gpt_oss", or a template that writes harmony's analysis channel) gets
 * "harmony".
 */
export function detectReasoningParser(tokenizer: Tokenizer, architecture: string | null = null): string | null {
  const template = tokenizer.chatTemplate ?? "";
  if (architecture === "gpt_oss" || template.includes(REASONING_PARSERS.harmony.start)) return "harmony";
  for (const [name, f] of Object.entries(REASONING_PARSERS)) {
    if (template.includes(f.start) && template.includes(f.end) && tokenizer.pieceToToken(f.end) !== undefined) return name;
  }
  return null;
}

/** Where a completion starts, from its prompt (see {@link reasoningStart}). */
export type ReasoningStart = "open" | "closed" | "expect";

/**
 * Where a completion of `promptIds` starts: "open" (in reasoning) when the prompt's last
 * marker opens a block; "closed" (no reasoning: all answer) when the prompt ends with a closed
 * block, as templates write one to turn thinking off (`enable_thinking: false`); else
 * "expect" (the model may open a block first). `gate`: the markers' token ids for the
 * grammar, when they are single tokens and the output may reason; for a format with an
 * `answer` marker (harmony), that marker's ids (see `answerGate`).
 */
export function reasoningStart(
  format: ReasoningFormat,
  tokenizer: Tokenizer,
  promptIds: readonly number[],
): { start: ReasoningStart; gate: ReasoningGate | null } {
  // Ids past the tokenizer's table (a model may have more logits than pieces) decode to nothing.
  const tail = tokenizer.decode(promptIds.slice(-64).filter((id) => id < tokenizer.vocabSize));
  const end = tail.lastIndexOf(format.end);
  const start: ReasoningStart = tail.lastIndexOf(format.start) > end
    ? "open"
    : end >= 0 && !tail.slice(end + format.end.length).trim()
    ? "closed"
    : "expect";
  if (format.answer) return { start, gate: answerGate(format, format.answer, tokenizer, promptIds) };
  const startId = tokenizer.pieceToToken(format.start);
  const endId = tokenizer.pieceToToken(format.end);
  const gate = startId !== undefined && endId !== undefined && start !== "closed"
    ? { startTokenId: startId, endTokenIds: [endId], open: start === "open" }
    : null;
  return { start, gate };
}

/**
 * The gate of a format whose answer starts at a header (harmony): open from the first token,
 * ended by the header's token ids as the tokenizer encodes it, which is how the model writes
 * it when its markers are special tokens. null when they are not (a tokenizer without the
 * format's special tokens, such as gpt-oss-tiny's: the header is then ordinary text the model
 * may spell with many different ids, so no id sequence marks it, and the grammar applies from
 * the first token as without a gate), or when the prompt's last message is already the answer.
 */
function answerGate(
  format: ReasoningFormat,
  answer: { marker: string; messageStart: string },
  tokenizer: Tokenizer,
  promptIds: readonly number[],
): ReasoningGate | null {
  const ids = tokenizer.encode(answer.marker, { addSpecialTokens: false });
  for (const marker of format.markers ?? []) {
    if (!answer.marker.includes(marker)) continue;
    const id = tokenizer.pieceToToken(marker);
    if (id === undefined || !tokenizer.isSpecial(id) || !ids.includes(id)) return null;
  }
  const at = lastIndexOfSequence(promptIds, ids);
  const start = tokenizer.pieceToToken(answer.messageStart);
  if (at >= 0 && (start === undefined || promptIds.lastIndexOf(start) < at)) return null;
  return { endTokenIds: ids, open: true };
}

/** Where `seq` last occurs in `ids` (-1: nowhere). */
function lastIndexOfSequence(ids: readonly number[], seq: readonly number[]): number {
  for (let i = ids.length - seq.length; i >= 0; i--) {
    if (seq.every((id, j) => ids[i + j] === id)) return i;
  }
  return -1;
}

/** Checks a parser name a request gives (throws {@link InvalidRequestError}). */
export function reasoningFormatOf(name: string): ReasoningFormat {
  const canonical = reasoningParserName(name);
  if (!canonical) {
    throw new InvalidRequestError("reasoningParser", `must be one of ${reasoningParserNames().join(", ")}, got ${JSON.stringify(name)}`);
  }
  return REASONING_PARSERS[canonical];
}

/** The longest suffix of `text` that is a proper prefix of `marker`. */
function heldSuffix(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (marker.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}

/**
 * `<start>reasoning<end>answer`. At the start of an output the prompt left undecided the
 * parser waits to see whether the text opens a block: leading whitespace then the start
 * marker means reasoning; anything else means the output is all answer. A block the output
 * never closes (cut by max_tokens) stays reasoning. Whitespace right after either marker is
 * dropped (templates put newlines there).
 */
export class ThinkStreamParser implements ReasoningStreamParser {
  #start: string;
  #end: string;
  #state: "start" | "reasoning" | "content";
  /** Text not yet given out (a possible marker's beginning). */
  #held = "";
  /** Dropping whitespace after a marker. */
  #trim: boolean;

  constructor(start: string, end: string, from: ReasoningStart) {
    this.#start = start;
    this.#end = end;
    this.#state = from === "open" ? "reasoning" : from === "closed" ? "content" : "start";
    this.#trim = from === "open";
  }

  /** Whether the output is inside a reasoning block now. */
  get inReasoning(): boolean {
    return this.#state === "reasoning";
  }

  push(text: string): ReasoningSplit {
    const out: ReasoningSplit = { reasoning: "", content: "" };
    let s = this.#held + text;
    this.#held = "";
    while (s.length > 0) {
      if (this.#trim) {
        s = s.replace(/^\s+/, "");
        if (!s) break;
        this.#trim = false;
      }
      if (this.#state === "start") {
        const lead = s.length - s.trimStart().length;
        const rest = s.slice(lead);
        if (rest.startsWith(this.#start)) {
          this.#state = "reasoning";
          this.#trim = true;
          s = rest.slice(this.#start.length);
          continue;
        }
        if (this.#start.startsWith(rest)) {
          this.#held = s; // whitespace, or part of the marker: wait
          break;
        }
        this.#state = "content";
        continue;
      }
      if (this.#state === "content") {
        out.content += s;
        break;
      }
      const at = s.indexOf(this.#end);
      if (at >= 0) {
        out.reasoning += s.slice(0, at);
        this.#state = "content";
        this.#trim = true;
        s = s.slice(at + this.#end.length);
        continue;
      }
      const keep = heldSuffix(s, this.#end);
      out.reasoning += s.slice(0, s.length - keep);
      this.#held = s.slice(s.length - keep);
      break;
    }
    return out;
  }

  finish(): ReasoningSplit {
    const held = this.#held;
    this.#held = "";
    if (this.#state === "reasoning") return { reasoning: held, content: "" };
    // An output that is only whitespace (or a cut-off start marker) is answer text.
    return { reasoning: "", content: held };
  }
}
