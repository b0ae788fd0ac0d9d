/**
 * OpenAI Responses API bodies (`POST /v1/responses`) as chat requests: `instructions` and
 * `input` (a string, or message / function_call / function_call_output items) become the chat
 * messages, function `tools`, `text.format` and the sampling fields become their chat
 * completions counterparts, then go through the chat parser. Stateless: nothing is stored,
 * so `previous_response_id` is refused.
 * @module
 */
import { ApiError, badParam } from "../api_error.ts";
import { type ChatRequest, parseChatRequest } from "../openai/parse.ts";

type Body = Record<string, unknown>;

/** A parsed Responses body: the chat request, and the fields the response echoes. */
export interface ResponsesRequest extends ChatRequest {
  echo: {
    instructions: string | null;
    maxOutputTokens: number | null;
    temperature: number;
    topP: number;
    tools: unknown[];
    toolChoice: unknown;
    parallelToolCalls: boolean;
    text: unknown;
    metadata: unknown;
  };
}

function isObject(v: unknown): v is Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function present(b: Body, key: string): boolean {
  return b[key] !== undefined && b[key] !== null;
}

/** Text of a message item's content: a string, or input_text / output_text parts. */
function contentText(content: unknown, where: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) throw badParam(`${where}.content`, "content must be a string or an array of text parts");
  return content.map((p, j) => {
    if (!isObject(p) || !["input_text", "output_text", "text"].includes(p.type as string) || typeof p.text !== "string") {
      throw badParam(`${where}.content[${j}]`, "only input_text and output_text content parts are supported");
    }
    return p.text;
  }).join("");
}

/** `input` items to chat messages (calls join the assistant message before them). */
function messagesOf(input: unknown): Body[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  if (!Array.isArray(input)) throw badParam("input", "input must be a string or an array of items");
  const messages: Body[] = [];
  input.forEach((item, i) => {
    const where = `input[${i}]`;
    if (!isObject(item)) throw badParam(where, "each input item must be an object");
    const type = item.type ?? "message";
    if (type === "message") {
      if (typeof item.role !== "string" || !["user", "assistant", "system", "developer"].includes(item.role)) {
        throw badParam(`${where}.role`, "role must be user, assistant, system or developer");
      }
      messages.push({ role: item.role, content: contentText(item.content, where) });
    } else if (type === "function_call") {
      if (typeof item.name !== "string" || typeof item.arguments !== "string" || typeof item.call_id !== "string") {
        throw badParam(where, "a function_call item needs string name, arguments and call_id");
      }
      const call = { id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } };
      const last = messages[messages.length - 1];
      if (last?.role === "assistant") ((last.tool_calls ??= []) as unknown[]).push(call);
      else messages.push({ role: "assistant", content: null, tool_calls: [call] });
    } else if (type === "function_call_output") {
      if (typeof item.call_id !== "string") throw badParam(`${where}.call_id`, "call_id must be a string");
      const output = typeof item.output === "string" ? item.output : contentText(item.output, where);
      messages.push({ role: "tool", tool_call_id: item.call_id, content: output });
    } else if (type === "reasoning") {
      // Earlier reasoning is not shown to the model again (as thinking models' templates drop it).
    } else {
      throw badParam(`${where}.type`, `input items of type ${JSON.stringify(type)} are not supported`);
    }
  });
  if (messages.length === 0) throw badParam("input", "input must hold at least one message");
  return messages;
}

/** Function tools to chat tools (`{type, name, parameters}` to `{type, function: {...}}`). */
function toolsOf(tools: unknown): unknown[] | undefined {
  if (tools === undefined || tools === null) return undefined;
  if (!Array.isArray(tools)) throw badParam("tools", "tools must be an array");
  if (tools.length === 0) return undefined;
  return tools.map((t, i) => {
    if (!isObject(t) || t.type !== "function") throw badParam(`tools[${i}]`, "only function tools are supported");
    if (typeof t.name !== "string") throw badParam(`tools[${i}].name`, "name must be a string");
    return {
      type: "function",
      function: {
        name: t.name,
        ...(t.description !== undefined ? { description: t.description } : {}),
        ...(t.parameters !== undefined ? { parameters: t.parameters } : {}),
      },
    };
  });
}

/** `tool_choice` to the chat form (`{type: "function", name}` to `{type, function: {name}}`). */
function toolChoiceOf(choice: unknown): unknown {
  if (isObject(choice) && choice.type === "function") {
    if (typeof choice.name !== "string") throw badParam("tool_choice.name", "name must be a string");
    return { type: "function", function: { name: choice.name } };
  }
  return choice;
}

/** `text.format` to `response_format`. */
function responseFormatOf(text: unknown): unknown {
  if (text === undefined || text === null) return undefined;
  if (!isObject(text)) throw badParam("text", "text must be an object");
  const f = text.format;
  if (f === undefined || f === null) return undefined;
  if (!isObject(f)) throw badParam("text.format", "text.format must be an object");
  if (f.type === "text") return undefined;
  if (f.type === "json_object") return { type: "json_object" };
  if (f.type === "json_schema") {
    return { type: "json_schema", json_schema: { name: f.name ?? "output", schema: f.schema, ...(f.strict !== undefined ? { strict: f.strict } : {}) } };
  }
  throw badParam("text.format.type", "text.format.type must be text, json_object or json_schema");
}

/** Parses a `/v1/responses` body. */
export function parseResponsesRequest(body: unknown): ResponsesRequest {
  if (!isObject(body)) throw badParam("body", "the request body must be a JSON object");
  if (present(body, "previous_response_id")) {
    throw new ApiError(400, "previous_response_id is not supported: this server keeps no responses (store: false); send the whole conversation in input", {
      param: "previous_response_id",
      code: "unsupported_parameter",
    });
  }
  if (body.store === true) throw badParam("store", "store: true is not supported: this server keeps no responses", "unsupported_parameter");
  if (present(body, "background") && body.background !== false) throw badParam("background", "background responses are not supported");
  if (!present(body, "input")) throw badParam("input", "input is required");
  if (present(body, "instructions") && typeof body.instructions !== "string") throw badParam("instructions", "instructions must be a string");
  const messages = messagesOf(body.input);
  if (typeof body.instructions === "string") messages.unshift({ role: "system", content: body.instructions });
  let kwargs: Body | undefined;
  if (present(body, "reasoning")) {
    if (!isObject(body.reasoning)) throw badParam("reasoning", "reasoning must be an object");
    // effort "none" (or "minimal") asks a thinking model to answer without reasoning.
    if (body.reasoning.effort === "none" || body.reasoning.effort === "minimal") kwargs = { enable_thinking: false };
    // low/medium/high reach the template as `reasoning_effort` (gpt-oss's `Reasoning:` line).
    else if (typeof body.reasoning.effort === "string") kwargs = { reasoning_effort: body.reasoning.effort };
  }
  const tools = toolsOf(body.tools);
  const chatBody: Body = {
    model: body.model,
    messages,
    stream: body.stream,
    temperature: body.temperature,
    top_p: body.top_p,
    max_tokens: body.max_output_tokens,
    ...(tools ? { tools, tool_choice: toolChoiceOf(body.tool_choice), parallel_tool_calls: body.parallel_tool_calls } : {}),
    response_format: responseFormatOf(body.text),
    user: body.user,
    ...(kwargs ? { chat_template_kwargs: kwargs } : {}),
  };
  const chat = parseChatRequest(chatBody);
  return {
    ...chat,
    includeUsage: true,
    paramNames: { ...chat.paramNames, maxTokens: "max_output_tokens", responseFormat: "text.format" },
    echo: {
      instructions: (body.instructions as string | undefined) ?? null,
      maxOutputTokens: (body.max_output_tokens as number | undefined) ?? null,
      temperature: (body.temperature as number | undefined) ?? 1,
      topP: (body.top_p as number | undefined) ?? 1,
      tools: (body.tools as unknown[] | undefined) ?? [],
      toolChoice: body.tool_choice ?? "auto",
      parallelToolCalls: body.parallel_tool_calls !== false,
      text: body.text ?? { format: { type: "text" } },
      metadata: body.metadata ?? {},
    },
  };
}
