/**
 * One completion's decoded text to what the caller sees: the reasoning split off first (a
 * {@link ReasoningStreamParser}), then tool calls parsed out of the answer alone (a call
 * written inside the reasoning is reasoning text, not a call).
 * @module
 */
import type { ToolCallStreamParser, ToolStreamEvent } from "../grammar/tool_calls.ts";
import type { ToolCallDelta } from "../types/api.ts";
import type { ReasoningStreamParser } from "./reasoning.ts";

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

/** Parses one completion's text as it is decoded. */
export class OutputParser {
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
