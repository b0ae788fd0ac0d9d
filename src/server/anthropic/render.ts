/**
 * Answers of the Anthropic Messages API: a `message` whose `content` holds thinking, text and
 * tool_use blocks, or the same as server-sent events (`message_start`, `content_block_start`,
 * `content_block_delta`, `content_block_stop`, `message_delta`, `message_stop`, `ping`), and
 * errors in Anthropic's shape.
 * @module
 */
import { MESSAGES_FIELDS } from "../openai/fields.ts";
import type { GenerateDelta } from "../../../mod.ts";
import type { ApiError } from "../api_error.ts";
import { type ApiRun, type ChatApi, drain, eventStream, promptTokens, sseEvent } from "../chat_api.ts";
import { type BlockEvent, type OutputBlock, OutputBlocks } from "../output_blocks.ts";
import { type MessagesRequest, parseMessagesRequest } from "./parse.ts";

type Json = Record<string, unknown>;

/** Anthropic's error type for an HTTP status. */
function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503) return "overloaded_error";
  if (status >= 500) return "api_error";
  return "invalid_request_error";
}

/** An error as Anthropic answers it: `{"type": "error", "error": {"type", "message"}}`. */
export function anthropicError(e: ApiError): Response {
  return new Response(JSON.stringify({ type: "error", error: { type: errorType(e.status), message: e.message } }), {
    status: e.status,
    headers: { "content-type": "application/json", ...e.headers },
  });
}

/** The tool_use input of a call's arguments (text that is not a JSON object is kept under `_raw`). */
function inputOf(args: string): unknown {
  try {
    const v = JSON.parse(args);
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v;
  } catch {
    // fall through
  }
  return { _raw: args };
}

function blockOf(b: OutputBlock, done: boolean): Json {
  if (b.kind === "reasoning") return { type: "thinking", thinking: done ? b.text : "", signature: "" };
  if (b.kind === "text") return { type: "text", text: done ? b.text : "" };
  return { type: "tool_use", id: b.call.id, name: b.call.name, input: done ? inputOf(b.call.arguments) : {} };
}

/** Why generation stopped, and the stop sequence that ended it (found in the output's last tokens). */
function stopOf(run: ApiRun, blocks: OutputBlocks, ids: number[]): { stop_reason: string; stop_sequence: string | null } {
  const r = blocks.finishReason;
  if (r === "length") return { stop_reason: "max_tokens", stop_sequence: null };
  if (r === "tool_calls") return { stop_reason: "tool_use", stop_sequence: null };
  const stops = (run.prep.request as MessagesRequest).stopSequences;
  if (stops.length && ids.length && !run.engine.info.eosTokenIds.includes(ids[ids.length - 1])) {
    const tok = run.engine.tokenizer;
    const tail = tok.decode(ids.slice(-32).filter((id) => id < tok.vocabSize));
    const hit = stops.find((s) => tail.includes(s));
    if (hit !== undefined) return { stop_reason: "stop_sequence", stop_sequence: hit };
  }
  return { stop_reason: "end_turn", stop_sequence: null };
}

function usageOf(run: ApiRun, blocks: OutputBlocks): Json {
  return {
    input_tokens: blocks.usage?.promptTokens ?? promptTokens(run),
    output_tokens: blocks.usage?.completionTokens ?? 0,
    cache_read_input_tokens: blocks.usage?.cachedTokens ?? 0,
    cache_creation_input_tokens: 0,
  };
}

async function json(run: ApiRun): Promise<unknown> {
  const blocks = new OutputBlocks();
  const ids: number[] = [];
  await drain(run, (d) => {
    ids.push(...d.ids);
    blocks.push(d);
  });
  blocks.finish();
  return {
    id: run.meta.id,
    type: "message",
    role: "assistant",
    model: run.meta.model,
    content: blocks.blocks.map((b) => blockOf(b, true)),
    ...stopOf(run, blocks, ids),
    usage: usageOf(run, blocks),
  };
}

function stream(run: ApiRun): Promise<ReadableStream<Uint8Array>> {
  const blocks = new OutputBlocks();
  const ids: number[] = [];
  const ev = (type: string, data: Json) => sseEvent(type, { type, ...data });
  const events = (list: BlockEvent[]): Uint8Array[] =>
    list.map((e) => {
      const b = e.block;
      if (e.type === "open") return ev("content_block_start", { index: b.index, content_block: blockOf(b, false) });
      if (e.type === "close") return ev("content_block_stop", { index: b.index });
      const delta = b.kind === "reasoning"
        ? { type: "thinking_delta", thinking: e.text }
        : b.kind === "text"
        ? { type: "text_delta", text: e.text }
        : { type: "input_json_delta", partial_json: e.text };
      return ev("content_block_delta", { index: b.index, delta });
    });
  return eventStream(run, {
    start: () => [
      ev("message_start", {
        message: {
          id: run.meta.id,
          type: "message",
          role: "assistant",
          model: run.meta.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: promptTokens(run), output_tokens: 0 },
        },
      }),
      ev("ping", {}),
    ],
    delta: (d: GenerateDelta) => {
      ids.push(...d.ids);
      return events(blocks.push(d));
    },
    end: () => [
      ...events(blocks.finish()),
      ev("message_delta", { delta: stopOf(run, blocks, ids), usage: { output_tokens: blocks.usage?.completionTokens ?? 0 } }),
      ev("message_stop", {}),
    ],
    fail: (e) => [ev("error", { error: { type: "api_error", message: e.message } })],
  });
}

/** The Anthropic Messages API. */
export const MESSAGES_API: ChatApi = {
  idPrefix: "msg_",
  fields: MESSAGES_FIELDS,
  parse: parseMessagesRequest,
  json,
  stream,
};
