/**
 * Anthropic Messages API bodies (`POST /v1/messages`) as chat requests: `system`, `messages`
 * with text / tool_use / tool_result / thinking blocks, `tools` with `input_schema`,
 * `tool_choice`, `max_tokens`, `stop_sequences` and `thinking` become their chat completions
 * counterparts, then go through the chat parser.
 * @module
 */
import { badParam } from "../api_error.ts";
import { type ChatRequest, parseChatRequest } from "../openai/parse.ts";

type Body = Record<string, unknown>;

/** A parsed Messages body. */
export interface MessagesRequest extends ChatRequest {
  /** The request's stop sequences (the answer names the one that matched). */
  stopSequences: string[];
}

function isObject(v: unknown): v is Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function present(b: Body, key: string): boolean {
  return b[key] !== undefined && b[key] !== null;
}

/** Text of text blocks (a string passes as is). */
function textOf(content: unknown, where: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw badParam(where, "content must be a string or an array of content blocks");
  return content.map((b, j) => {
    if (!isObject(b) || b.type !== "text" || typeof b.text !== "string") throw badParam(`${where}[${j}]`, "only text blocks are supported here");
    return b.text;
  }).join("");
}

/** One Anthropic message to chat messages (tool results are chat `tool` messages). */
function chatMessages(m: unknown, i: number): Body[] {
  const where = `messages[${i}]`;
  if (!isObject(m)) throw badParam(where, "each message must be an object");
  if (m.role !== "user" && m.role !== "assistant") throw badParam(`${where}.role`, "role must be user or assistant");
  if (typeof m.content === "string") return [{ role: m.role, content: m.content }];
  if (!Array.isArray(m.content)) throw badParam(`${where}.content`, "content must be a string or an array of content blocks");
  const out: Body[] = [];
  let text = "";
  const calls: unknown[] = [];
  m.content.forEach((b, j) => {
    const at = `${where}.content[${j}]`;
    if (!isObject(b) || typeof b.type !== "string") throw badParam(at, "each content block must be an object with a type");
    if (b.type === "text") {
      if (typeof b.text !== "string") throw badParam(`${at}.text`, "text must be a string");
      text += b.text;
    } else if (b.type === "tool_use" && m.role === "assistant") {
      if (typeof b.id !== "string" || typeof b.name !== "string" || !isObject(b.input)) {
        throw badParam(at, "a tool_use block needs a string id and name and an object input");
      }
      calls.push({ id: b.id, type: "function", function: { name: b.name, arguments: JSON.stringify(b.input) } });
    } else if (b.type === "tool_result" && m.role === "user") {
      if (typeof b.tool_use_id !== "string") throw badParam(`${at}.tool_use_id`, "tool_use_id must be a string");
      const result = b.content === undefined ? "" : textOf(b.content, `${at}.content`);
      out.push({ role: "tool", tool_call_id: b.tool_use_id, content: b.is_error === true ? `Error: ${result}` : result });
    } else if ((b.type === "thinking" || b.type === "redacted_thinking") && m.role === "assistant") {
      // Earlier thinking is not shown to the model again (thinking models' templates drop it).
    } else {
      throw badParam(`${at}.type`, `${JSON.stringify(b.type)} blocks are not supported in ${m.role} messages`);
    }
  });
  if (m.role === "assistant") {
    out.push({ role: "assistant", content: calls.length && !text ? null : text, ...(calls.length ? { tool_calls: calls } : {}) });
  } else if (text || out.length === 0) out.push({ role: "user", content: text });
  return out;
}

/** Anthropic tools to chat tools. */
function toolsOf(tools: unknown): unknown[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw badParam("tools", "tools must be an array");
  if (tools.length === 0) return undefined;
  return tools.map((t, i) => {
    if (!isObject(t) || typeof t.name !== "string") throw badParam(`tools[${i}]`, "each tool needs a string name");
    if (t.type !== undefined && t.type !== "custom") throw badParam(`tools[${i}].type`, "only custom (client) tools are supported");
    if (!isObject(t.input_schema)) throw badParam(`tools[${i}].input_schema`, "input_schema must be a JSON schema object");
    return {
      type: "function",
      function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.input_schema },
    };
  });
}

/** `tool_choice` to the chat form, with whether calls may follow each other. */
function toolChoiceOf(choice: unknown): { tool_choice?: unknown; parallel_tool_calls?: boolean } {
  if (choice === undefined || choice === null) return {};
  if (!isObject(choice)) throw badParam("tool_choice", "tool_choice must be an object");
  const parallel = choice.disable_parallel_tool_use === true ? { parallel_tool_calls: false } : {};
  switch (choice.type) {
    case "auto":
      return { tool_choice: "auto", ...parallel };
    case "any":
      return { tool_choice: "required", ...parallel };
    case "none":
      return { tool_choice: "none" };
    case "tool":
      if (typeof choice.name !== "string") throw badParam("tool_choice.name", "name must be a string");
      return { tool_choice: { type: "function", function: { name: choice.name } }, ...parallel };
    default:
      throw badParam("tool_choice.type", "tool_choice.type must be auto, any, tool or none");
  }
}

/** Parses a `/v1/messages` body. */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  if (!isObject(body)) throw badParam("body", "the request body must be a JSON object");
  if (!present(body, "max_tokens")) throw badParam("max_tokens", "max_tokens is required");
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw badParam("messages", "messages must be a non-empty array");
  const messages: Body[] = body.messages.flatMap((m, i) => chatMessages(m, i));
  if (present(body, "system")) messages.unshift({ role: "system", content: textOf(body.system, "system") });
  let stop: string[] = [];
  if (present(body, "stop_sequences")) {
    if (!Array.isArray(body.stop_sequences) || !body.stop_sequences.every((s) => typeof s === "string" && s.length > 0)) {
      throw badParam("stop_sequences", "stop_sequences must be an array of non-empty strings");
    }
    stop = body.stop_sequences as string[];
  }
  let kwargs: Body | undefined;
  if (present(body, "thinking")) {
    const t = body.thinking;
    if (!isObject(t) || (t.type !== "enabled" && t.type !== "disabled" && t.type !== "adaptive")) {
      throw badParam("thinking", `thinking must be {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}`);
    }
    kwargs = { enable_thinking: t.type !== "disabled" };
  }
  const tools = toolsOf(body.tools);
  const chat = parseChatRequest({
    model: body.model,
    messages,
    stream: body.stream,
    max_tokens: body.max_tokens,
    temperature: body.temperature,
    top_p: body.top_p,
    top_k: body.top_k,
    ...(stop.length ? { stop } : {}),
    ...(tools ? { tools, ...toolChoiceOf(body.tool_choice) } : {}),
    ...(kwargs ? { chat_template_kwargs: kwargs } : {}),
  });
  return { ...chat, includeUsage: true, stopSequences: stop };
}
