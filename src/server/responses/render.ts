/**
 * Answers of the Responses API: a `response` object whose `output` holds reasoning, message
 * and function_call items, or the same built up as server-sent events (`response.created`,
 * `response.output_item.added`, `response.output_text.delta`, ..., `response.completed`).
 * @module
 */
import { RESPONSES_FIELDS } from "../openai/fields.ts";
import { type ApiRun, type ChatApi, drain, eventStream, sseEvent } from "../chat_api.ts";
import { apiId, type BlockEvent, type OutputBlock, OutputBlocks } from "../output_blocks.ts";
import { parseResponsesRequest, type ResponsesRequest } from "./parse.ts";

type Item = Record<string, unknown>;

/** Item ids per block (`rs_`, `msg_`, `fc_`), fixed when the block opens. */
class ItemIds {
  #ids = new Map<OutputBlock, string>();
  of(block: OutputBlock): string {
    let id = this.#ids.get(block);
    if (!id) this.#ids.set(block, id = apiId(block.kind === "reasoning" ? "rs_" : block.kind === "text" ? "msg_" : "fc_"));
    return id;
  }
}

/** A block as an output item (`done`: its final form). */
function itemOf(block: OutputBlock, id: string, done: boolean): Item {
  const status = done ? "completed" : "in_progress";
  if (block.kind === "reasoning") {
    return { type: "reasoning", id, summary: [], content: done ? [{ type: "reasoning_text", text: block.text }] : [], status };
  }
  if (block.kind === "text") {
    return { type: "message", id, status, role: "assistant", content: done ? [textPart(block.text)] : [] };
  }
  const c = block.call;
  return { type: "function_call", id, call_id: c.id, name: c.name, arguments: done ? c.arguments : "", status };
}

function textPart(text: string): Item {
  return { type: "output_text", text, annotations: [], logprobs: [] };
}

function usageOf(blocks: OutputBlocks): Item {
  const u = blocks.usage;
  const input = u?.promptTokens ?? 0;
  const output = u?.completionTokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: u?.cachedTokens ?? 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: blocks.reasoningTokens },
    total_tokens: input + output,
  };
}

/** The response object (`blocks` null: just created). */
function responseOf(run: ApiRun, blocks: OutputBlocks | null, ids: ItemIds): Item {
  const r = run.prep.request as ResponsesRequest;
  const e = r.echo;
  const incomplete = blocks?.finishReason === "length";
  const status = !blocks ? "in_progress" : incomplete ? "incomplete" : "completed";
  return {
    id: run.meta.id,
    object: "response",
    created_at: run.meta.created,
    status,
    background: false,
    error: null,
    incomplete_details: incomplete ? { reason: "max_output_tokens" } : null,
    instructions: e.instructions,
    max_output_tokens: e.maxOutputTokens,
    model: run.meta.model,
    output: blocks ? blocks.blocks.map((b) => itemOf(b, ids.of(b), true)) : [],
    parallel_tool_calls: e.parallelToolCalls,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: e.temperature,
    text: e.text,
    tool_choice: e.toolChoice,
    tools: e.tools,
    top_p: e.topP,
    truncation: "disabled",
    usage: blocks ? usageOf(blocks) : null,
    metadata: e.metadata,
    ...(blocks?.warnings.length ? { warnings: blocks.warnings } : {}),
  };
}

async function json(run: ApiRun): Promise<unknown> {
  const blocks = new OutputBlocks();
  await drain(run, (d) => blocks.push(d));
  blocks.finish();
  return responseOf(run, blocks, new ItemIds());
}

function stream(run: ApiRun): Promise<ReadableStream<Uint8Array>> {
  const blocks = new OutputBlocks();
  const ids = new ItemIds();
  let seq = 0;
  const ev = (type: string, data: Item) => sseEvent(type, { type, sequence_number: seq++, ...data });
  const events = (list: BlockEvent[]): Uint8Array[] =>
    list.flatMap((e) => {
      const b = e.block;
      const item_id = ids.of(b);
      const at = { item_id, output_index: b.index };
      if (e.type === "open") {
        const out = [ev("response.output_item.added", { output_index: b.index, item: itemOf(b, item_id, false) })];
        if (b.kind === "text") out.push(ev("response.content_part.added", { ...at, content_index: 0, part: textPart("") }));
        return out;
      }
      if (e.type === "delta") {
        if (b.kind === "reasoning") return [ev("response.reasoning_text.delta", { ...at, content_index: 0, delta: e.text })];
        if (b.kind === "text") return [ev("response.output_text.delta", { ...at, content_index: 0, delta: e.text, logprobs: [] })];
        return [ev("response.function_call_arguments.delta", { ...at, delta: e.text })];
      }
      // Sequence numbers follow the order the events are made in.
      const out = b.kind === "reasoning"
        ? [ev("response.reasoning_text.done", { ...at, content_index: 0, text: b.text })]
        : b.kind === "text"
        ? [
          ev("response.output_text.done", { ...at, content_index: 0, text: b.text, logprobs: [] }),
          ev("response.content_part.done", { ...at, content_index: 0, part: textPart(b.text) }),
        ]
        : [ev("response.function_call_arguments.done", { ...at, name: b.call.name, arguments: b.call.arguments })];
      out.push(ev("response.output_item.done", { output_index: b.index, item: itemOf(b, item_id, true) }));
      return out;
    });
  return eventStream(run, {
    start: () => {
      const created = responseOf(run, null, ids);
      return [ev("response.created", { response: created }), ev("response.in_progress", { response: created })];
    },
    delta: (d) => events(blocks.push(d)),
    end: () => {
      const out = events(blocks.finish());
      const response = responseOf(run, blocks, ids);
      out.push(ev(response.status === "incomplete" ? "response.incomplete" : "response.completed", { response }));
      return out;
    },
    fail: (e) => [ev("error", { code: "server_error", message: e.message, param: null })],
  });
}

/** The Responses API. */
export const RESPONSES_API: ChatApi = {
  idPrefix: "resp_",
  fields: RESPONSES_FIELDS,
  parse: parseResponsesRequest,
  json,
  stream,
};
