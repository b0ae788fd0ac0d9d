/**
 * One completion's decoded text to what the caller sees: the reasoning split off first (a
 * {@link ReasoningStreamParser}), then tool calls parsed out of the answer alone (a call
 * written inside the reasoning is reasoning text, not a call).
 * @module
 */
import type { ToolCallStreamParser, ToolStreamEvent } from "../grammar/tool_calls.ts";
import type { ToolCallDelta } from "../types/api.ts";
import type { ReasoningStreamParser } from "./reasoning.ts";
import { HarmonyStreamParser } from "./harmony.ts";

/** What some decoded text adds: answer text, reasoning (with a reasoning parser), call pieces. */
export interface ParsedOutput {
  text: string;
  reasoning?: string;
  calls?: ToolCallDelta[];
}

/** Content text and tool-call deltas out of parser events. */
function split(events: ToolStreamEvent[]): { text: string; calls: ToolCallDelta[] } {
  let text = "";
  const calls: ToolCallDelta[] = [];
  for (const e of events) {
    if (e.type === "content") text += e.text;
    else calls.push(e.delta);
  }
  return { text, calls };
}

/** What parses a completion's decoded text ({@link OutputParser}, {@link HarmonyOutputParser}). */
export interface CompletionParser {
  /** Tool calls started so far. */
  readonly calls: number;
  /** The next decoded text (`final`: the output has ended; what was held back goes out). */
  push(decoded: string, final: boolean): ParsedOutput;
}

/** Parses one completion's text as it is decoded. */
export class OutputParser implements CompletionParser {
  #reasoning: ReasoningStreamParser | null;
  #tools: ToolCallStreamParser | null;
  /** Tool calls started so far. */
  calls = 0;

  constructor(reasoning: ReasoningStreamParser | null, tools: ToolCallStreamParser | null) {
    this.#reasoning = reasoning;
    this.#tools = tools;
  }

  /** The next decoded text (`final`: the output has ended; what was held back goes out). */
  push(decoded: string, final: boolean): ParsedOutput {
    let text = decoded;
    let thought: { reasoning?: string } = {};
    if (this.#reasoning) {
      const r = this.#reasoning.push(decoded);
      const tail = final ? this.#reasoning.finish() : { reasoning: "", content: "" };
      text = r.content + tail.content;
      thought = { reasoning: r.reasoning + tail.reasoning };
    }
    if (!this.#tools) return { text, ...thought };
    const out = split([...this.#tools.push(text), ...(final ? this.#tools.finish() : [])]);
    for (const c of out.calls) if (c.id !== undefined) this.calls++;
    return out.calls.length ? { ...out, ...thought } : { text: out.text, ...thought };
  }
}

/**
 * gpt-oss's harmony output: reasoning, answer and tool calls come out of one parser (a call is
 * a message to `functions.NAME`, not text inside the answer). `reasoning`: whether the request
 * asked for reasoning to be split off (else the analysis channel is answer text).
 */
export class HarmonyOutputParser implements CompletionParser {
  #parser: HarmonyStreamParser;
  #reasoning: boolean;

  constructor(reasoning: boolean, newId?: () => string) {
    this.#parser = new HarmonyStreamParser({ tools: true, reasoning, newId });
    this.#reasoning = reasoning;
  }

  /** Tool calls completed so far. */
  get calls(): number {
    return this.#parser.calls;
  }

  /** The next decoded text (`final`: the output has ended). */
  push(decoded: string, final: boolean): ParsedOutput {
    const d = this.#parser.push(decoded);
    if (final) {
      const t = this.#parser.finish();
      d.reasoning += t.reasoning;
      d.content += t.content;
      d.calls.push(...t.calls);
    }
    return {
      text: d.content,
      ...(this.#reasoning ? { reasoning: d.reasoning } : {}),
      ...(d.calls.length ? { calls: d.calls } : {}),
    };
  }
}
