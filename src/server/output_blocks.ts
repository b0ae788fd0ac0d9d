/**
 * A completion's deltas as a sequence of output blocks (reasoning, answer text, tool calls),
 * each opened, extended and closed in order: the shape both the Responses API (output items)
 * and the Anthropic Messages API (content blocks) stream and return.
 * @module
 */
import type { GenerateDelta, OutputFinishReason, ToolCall, Usage } from "../../mod.ts";

/** One output block, as built so far. */
export type OutputBlock =
  | { kind: "reasoning"; index: number; text: string }
  | { kind: "text"; index: number; text: string }
  | { kind: "tool_call"; index: number; call: ToolCall };

/** What happened to the blocks on one delta, in order. */
export type BlockEvent =
  | { type: "open"; block: OutputBlock }
  | { type: "delta"; block: OutputBlock; text: string }
  | { type: "close"; block: OutputBlock };

/** Folds deltas into blocks; a delta of another kind than the open block closes it first. */
export class OutputBlocks {
  readonly blocks: OutputBlock[] = [];
  finishReason: OutputFinishReason | null = null;
  usage: Usage | null = null;
  warnings: string[] = [];
  /** Tokens of the reasoning: those generated from its first text until the answer began. */
  reasoningTokens = 0;
  #open: OutputBlock | null = null;
  #reasoned = false;
  #answered = false;
  /** Tool call index (of the completion) to its block. */
  #calls = new Map<number, OutputBlock & { kind: "tool_call" }>();

  /** The events of one delta. */
  push(d: GenerateDelta): BlockEvent[] {
    const events: BlockEvent[] = [];
    if (d.reasoning) this.#reasoned = true;
    if (d.text || d.toolCalls?.length) this.#answered = true;
    else if (this.#reasoned && !this.#answered) this.reasoningTokens += d.ids.length;
    if (d.reasoning) this.#text("reasoning", d.reasoning, events);
    if (d.text) this.#text("text", d.text, events);
    for (const t of d.toolCalls ?? []) {
      let block = this.#calls.get(t.index);
      if (!block) {
        this.#close(events);
        block = { kind: "tool_call", index: this.blocks.length, call: { id: t.id ?? "", name: t.function.name ?? "", arguments: "" } };
        this.#calls.set(t.index, block);
        this.blocks.push(block);
        this.#open = block;
        events.push({ type: "open", block });
      } else if (t.function.name) block.call.name += t.function.name;
      if (t.function.arguments) {
        block.call.arguments += t.function.arguments;
        events.push({ type: "delta", block, text: t.function.arguments });
      }
    }
    if (d.finishReason) this.finishReason = d.finishReason;
    if (d.usage) this.usage = d.usage;
    if (d.warnings) this.warnings.push(...d.warnings);
    return events;
  }

  /** Closes the last block (the completion has ended). */
  finish(): BlockEvent[] {
    const events: BlockEvent[] = [];
    this.#close(events);
    return events;
  }

  #text(kind: "reasoning" | "text", text: string, events: BlockEvent[]): void {
    let block: OutputBlock | null = this.#open;
    if (!block || block.kind !== kind) {
      this.#close(events);
      const fresh: OutputBlock = { kind, index: this.blocks.length, text: "" };
      this.blocks.push(fresh);
      this.#open = fresh;
      events.push({ type: "open", block: fresh });
      block = fresh;
    }
    (block as { text: string }).text += text;
    events.push({ type: "delta", block, text });
  }

  #close(events: BlockEvent[]): void {
    if (this.#open) events.push({ type: "close", block: this.#open });
    this.#open = null;
  }
}

/** Identifiers of API objects (`resp_...`, `msg_...`): a prefix and random hex. */
export function apiId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
