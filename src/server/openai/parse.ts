/**
 * OpenAI request bodies (`/v1/completions`, `/v1/chat/completions`) to engine request
 * options. Types and shapes are checked here with OpenAI's parameter names; value ranges,
 * defaults and the context fit are the engine's one validation (`api/validate.ts`), whose
 * errors name the option, mapped back to OpenAI's name by {@link PARAM_NAMES}.
 * @module
 */
import type { GenerateOptions } from "../../../mod.ts";
import { GrammarError } from "../../grammar/errors.ts";
import { structuredOptionsOf } from "../../grammar/openai_spec.ts";
import { badParam } from "../api_error.ts";
import type { ChatMessage, ChatTool, ChatToolCall } from "../chat_template.ts";

/** Engine request options shared by every prompt of an API request. */
export type RequestOptions = Omit<GenerateOptions, "prompt" | "signal">;

/** A parsed `/v1/completions` body. */
export interface CompletionRequest {
  kind: "completion";
  model: string | null;
  prompts: (string | number[])[];
  options: RequestOptions;
  stream: boolean;
  includeUsage: boolean;
  /** Whether logprobs were asked for (the legacy `logprobs` integer). */
  logprobs: boolean;
  /** The body's name of an engine option where it is not the usual one (e.g. `guided_json`). */
  paramNames: Record<string, string>;
}

/** A parsed `/v1/chat/completions` body. */
export interface ChatRequest {
  kind: "chat";
  model: string | null;
  messages: ChatMessage[];
  /** Tools for the chat template (OpenAI's shape), when offered. */
  tools?: ChatTool[];
  /** `chat_template_kwargs`: more variables for the chat template (e.g. `enable_thinking`). */
  templateKwargs?: Record<string, unknown>;
  options: RequestOptions;
  stream: boolean;
  includeUsage: boolean;
  logprobs: boolean;
  paramNames: Record<string, string>;
}

type Body = Record<string, unknown>;

/** The engine's camelCase parameter names back to OpenAI's. */
export const PARAM_NAMES: Record<string, string> = {
  maxTokens: "max_tokens",
  topK: "top_k",
  topP: "top_p",
  minP: "min_p",
  repetitionPenalty: "repetition_penalty",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  stopTokenIds: "stop_token_ids",
  ignoreEos: "ignore_eos",
  responseFormat: "response_format",
  toolChoice: "tool_choice",
  parallelToolCalls: "parallel_tool_calls",
};

const MAX_PROMPTS = 64;
const MAX_STOP = 16;

function isObject(v: unknown): v is Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function present(body: Body, key: string): boolean {
  return body[key] !== undefined && body[key] !== null;
}

function optNumber(body: Body, key: string): number | undefined {
  if (!present(body, key)) return undefined;
  const v = body[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw badParam(key, `${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function optInt(body: Body, key: string): number | undefined {
  const v = optNumber(body, key);
  if (v !== undefined && !Number.isInteger(v)) throw badParam(key, `${key} must be an integer, got ${v}`);
  return v;
}

function optBool(body: Body, key: string): boolean | undefined {
  if (!present(body, key)) return undefined;
  const v = body[key];
  if (typeof v !== "boolean") throw badParam(key, `${key} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function tokenIds(v: unknown, key: string): number[] | null {
  if (!Array.isArray(v) || !v.every((x) => typeof x === "number")) return null;
  for (const x of v) if (!Number.isInteger(x) || x < 0) throw badParam(key, `${key} token ids must be non-negative integers`);
  return v as number[];
}

function unsupported(body: Body, key: string, allowed: (v: unknown) => boolean, what: string): void {
  if (present(body, key) && !allowed(body[key])) throw badParam(key, `${key}: ${what} is not supported`);
}

/** The structured-output fields (response_format, guided_*, tools...) as request options. */
function structured(body: Body, kind: "completion" | "chat") {
  try {
    return structuredOptionsOf(body, kind);
  } catch (e) {
    if (e instanceof GrammarError) throw badParam(e.param ?? "body", e.message);
    throw e;
  }
}

/** Parameters common to both endpoints. */
function common(body: Body, kind: "completion" | "chat"): {
  model: string | null;
  options: RequestOptions;
  stream: boolean;
  includeUsage: boolean;
  paramNames: Record<string, string>;
  tools?: ChatTool[];
} {
  if (!isObject(body)) throw badParam("body", "the request body must be a JSON object");
  let model: string | null = null;
  if (present(body, "model")) {
    if (typeof body.model !== "string") throw badParam("model", "model must be a string");
    model = body.model;
  }
  const stream = optBool(body, "stream") ?? false;
  let includeUsage = false;
  if (present(body, "stream_options")) {
    const so = body.stream_options;
    if (!isObject(so)) throw badParam("stream_options", "stream_options must be an object");
    if (!stream) throw badParam("stream_options", "stream_options is only allowed with stream: true");
    includeUsage = optBool(so, "include_usage") ?? false;
  }
  let stop: string[] | undefined;
  if (present(body, "stop")) {
    const s = body.stop;
    const list = typeof s === "string" ? [s] : s;
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string" && x.length > 0)) {
      throw badParam("stop", "stop must be a non-empty string or an array of them");
    }
    if (list.length > MAX_STOP) throw badParam("stop", `at most ${MAX_STOP} stop strings`);
    stop = list as string[];
  }
  let stopTokenIds: number[] | undefined;
  if (present(body, "stop_token_ids")) {
    stopTokenIds = tokenIds(body.stop_token_ids, "stop_token_ids") ?? undefined;
    if (!stopTokenIds) throw badParam("stop_token_ids", "stop_token_ids must be an array of token ids");
  }
  unsupported(body, "logit_bias", (v) => isObject(v) && Object.keys(v).length === 0, "logit_bias");
  if (present(body, "user") && typeof body.user !== "string") throw badParam("user", "user must be a string");
  const n = optInt(body, "n");
  const bestOf = optInt(body, "best_of");
  if (bestOf !== undefined && bestOf !== (n ?? 1)) throw badParam("best_of", "best_of other than n is not supported");
  const options: RequestOptions = {
    temperature: optNumber(body, "temperature") ?? 1,
    topP: optNumber(body, "top_p"),
    topK: optInt(body, "top_k"),
    minP: optNumber(body, "min_p"),
    repetitionPenalty: optNumber(body, "repetition_penalty"),
    presencePenalty: optNumber(body, "presence_penalty"),
    frequencyPenalty: optNumber(body, "frequency_penalty"),
    seed: optInt(body, "seed"),
    n,
    stop,
    stopTokenIds,
    ignoreEos: optBool(body, "ignore_eos"),
    // Ours (vLLM has no per-request switch): false opts out of speculative decoding.
    speculative: optBool(body, "speculative"),
  };
  // vLLM's convention: top_k -1 means off.
  if (options.topK === -1) options.topK = 0;
  const { responseParam, openaiTools, ...output } = structured(body, kind);
  Object.assign(options, output);
  const paramNames: Record<string, string> = responseParam ? { responseFormat: responseParam } : {};
  return { model, options, stream, includeUsage, paramNames, ...(openaiTools ? { tools: openaiTools } : {}) };
}

/** Parses a `/v1/completions` body. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  const c = common(body as Body, "completion");
  const b = body as Body;
  if (!present(b, "prompt")) throw badParam("prompt", "prompt is required");
  const p = b.prompt;
  let prompts: (string | number[])[];
  if (typeof p === "string") prompts = [p];
  else if (tokenIds(p, "prompt") && (p as unknown[]).length > 0) prompts = [p as number[]];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "string")) prompts = p as string[];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => tokenIds(x, "prompt"))) prompts = p as number[][];
  else throw badParam("prompt", "prompt must be a string, an array of strings, or token ids");
  if (prompts.length > MAX_PROMPTS) throw badParam("prompt", `at most ${MAX_PROMPTS} prompts per request`);
  if (prompts.some((x) => x.length === 0)) throw badParam("prompt", "prompt is empty");
  unsupported(b, "echo", (v) => v === false, "echo");
  unsupported(b, "suffix", (v) => v === "", "suffix");
  const logprobs = optInt(b, "logprobs");
  if (logprobs !== undefined && logprobs < 0) throw badParam("logprobs", "logprobs must be a non-negative integer");
  return {
    kind: "completion",
    model: c.model,
    prompts,
    options: { ...c.options, maxTokens: optInt(b, "max_tokens"), logprobs },
    stream: c.stream,
    includeUsage: c.includeUsage,
    logprobs: logprobs !== undefined,
    paramNames: c.paramNames,
  };
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function messageText(content: unknown, i: number): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part, j) => {
      if (!isObject(part) || part.type !== "text" || typeof part.text !== "string") {
        throw badParam(`messages[${i}].content[${j}]`, "only text content parts are supported");
      }
      return part.text;
    }).join("");
  }
  throw badParam(`messages[${i}].content`, "content must be a string or an array of text parts");
}

/** Parses a `/v1/chat/completions` body. */
export function parseChatRequest(body: unknown): ChatRequest {
  const c = common(body as Body, "chat");
  const b = body as Body;
  if (!Array.isArray(b.messages)) throw badParam("messages", "messages must be an array");
  if (b.messages.length === 0) throw badParam("messages", "messages must not be empty");
  const messages = b.messages.map((m: unknown, i: number): ChatMessage => {
    if (!isObject(m)) throw badParam(`messages[${i}]`, "each message must be an object");
    if (typeof m.role !== "string" || !ROLES.has(m.role)) {
      throw badParam(`messages[${i}].role`, `role must be one of ${[...ROLES].join(", ")}`);
    }
    const toolCalls = m.role === "assistant" && present(m, "tool_calls") ? toolCallsOf(m.tool_calls, i) : undefined;
    // An assistant message that only calls tools may have no content.
    const content = toolCalls && !present(m, "content") ? null : messageText(m.content, i);
    const out: ChatMessage = { role: m.role, content };
    if (toolCalls) out.tool_calls = toolCalls;
    if (m.role === "tool") {
      if (present(m, "tool_call_id") && typeof m.tool_call_id !== "string") {
        throw badParam(`messages[${i}].tool_call_id`, "tool_call_id must be a string");
      }
      if (typeof m.tool_call_id === "string") out.tool_call_id = m.tool_call_id;
    }
    if (present(m, "name")) {
      if (typeof m.name !== "string") throw badParam(`messages[${i}].name`, "name must be a string");
      out.name = m.name;
    }
    if (m.role === "assistant" && present(m, "reasoning_content")) {
      if (typeof m.reasoning_content !== "string") throw badParam(`messages[${i}].reasoning_content`, "reasoning_content must be a string");
      out.reasoning_content = m.reasoning_content;
    }
    return out;
  });
  const logprobs = optBool(b, "logprobs") ?? false;
  const top = optInt(b, "top_logprobs");
  if (top !== undefined && !logprobs) throw badParam("top_logprobs", "top_logprobs needs logprobs: true");
  if (top !== undefined && top < 0) throw badParam("top_logprobs", "top_logprobs must be a non-negative integer");
  const maxTokens = optInt(b, "max_completion_tokens") ?? optInt(b, "max_tokens");
  if (present(b, "chat_template_kwargs") && !isObject(b.chat_template_kwargs)) {
    throw badParam("chat_template_kwargs", "chat_template_kwargs must be an object");
  }
  return {
    kind: "chat",
    model: c.model,
    messages,
    options: { ...c.options, maxTokens, logprobs: logprobs ? (top ?? 0) : undefined },
    stream: c.stream,
    includeUsage: c.includeUsage,
    logprobs,
    paramNames: c.paramNames,
    ...(c.tools ? { tools: c.tools } : {}),
    ...templateKwargsOf(b),
  };
}

/**
 * The template variables of a chat body: `chat_template_kwargs`, with `reasoning_effort`
 * passed on as the variable of that name (gpt-oss's template prints it as `Reasoning:`; vLLM
 * does the same); `chat_template_kwargs` wins where both set it.
 */
function templateKwargsOf(b: Body): { templateKwargs?: Record<string, unknown> } {
  if (present(b, "reasoning_effort") && typeof b.reasoning_effort !== "string") {
    throw badParam("reasoning_effort", "reasoning_effort must be a string");
  }
  const effort = typeof b.reasoning_effort === "string" ? { reasoning_effort: b.reasoning_effort } : {};
  const given = present(b, "chat_template_kwargs") ? b.chat_template_kwargs as Record<string, unknown> : {};
  const kwargs = { ...effort, ...given };
  return Object.keys(kwargs).length > 0 || present(b, "chat_template_kwargs") ? { templateKwargs: kwargs } : {};
}

/** An assistant message's `tool_calls` (OpenAI's shape; `arguments` a JSON string). */
function toolCallsOf(v: unknown, i: number): ChatToolCall[] {
  const where = `messages[${i}].tool_calls`;
  if (!Array.isArray(v)) throw badParam(where, "tool_calls must be an array");
  return v.map((c, j) => {
    const f = isObject(c) ? c.function : undefined;
    if (!isObject(c) || !isObject(f) || typeof f.name !== "string") {
      throw badParam(`${where}[${j}]`, `each tool call must be {"type": "function", "function": {"name", "arguments"}}`);
    }
    if (f.arguments !== undefined && typeof f.arguments !== "string" && !isObject(f.arguments)) {
      throw badParam(`${where}[${j}].function.arguments`, "arguments must be a JSON string");
    }
    const call: ChatToolCall = {
      type: "function",
      function: { name: f.name, arguments: (f.arguments as string | Record<string, unknown> | undefined) ?? "{}" },
    };
    if (typeof c.id === "string") call.id = c.id;
    return call;
  });
}
