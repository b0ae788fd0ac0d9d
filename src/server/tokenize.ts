/**
 * `POST /tokenize` and `POST /detokenize` in vLLM's shapes, so clients count tokens with the
 * server's own tokenizer: a `prompt`, or chat `messages` rendered through the chat template
 * exactly as chat completions render them.
 * @module
 */
import { badParam } from "./api_error.ts";
import type { ChatTemplate } from "./chat_template.ts";
import { parseChatRequest } from "./openai/parse.ts";
import type { ServedEngine } from "./served_engine.ts";

type Body = Record<string, unknown>;

function isObject(v: unknown): v is Body {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function optBool(b: Body, key: string, fallback: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw badParam(key, `${key} must be a boolean`);
  return v;
}

function modelOf(b: Body): string | null {
  if (b.model === undefined || b.model === null) return null;
  if (typeof b.model !== "string") throw badParam("model", "model must be a string");
  return b.model;
}

/** What tokenizing needs of the server. */
export interface TokenizeContext {
  /** The chat template (throws the server's error when there is none). */
  chat(): ChatTemplate;
  /** Throws when `model` is not the served model. */
  checkModel(model: string | null): void;
}

/** `/tokenize`: `{count, max_model_len, tokens, token_strs}`. */
export function tokenize(body: unknown, engine: ServedEngine, ctx: TokenizeContext): Body {
  if (!isObject(body)) throw badParam("body", "the request body must be a JSON object");
  ctx.checkModel(modelOf(body));
  const tok = engine.tokenizer;
  let ids: number[];
  if (body.messages !== undefined) {
    if (body.prompt !== undefined) throw badParam("prompt", "send either prompt or messages, not both");
    const chat = parseChatRequest({ messages: body.messages, tools: body.tools, chat_template_kwargs: body.chat_template_kwargs });
    const continueFinal = optBool(body, "continue_final_message", false);
    const addGeneration = optBool(body, "add_generation_prompt", !continueFinal);
    if (continueFinal && addGeneration) throw badParam("continue_final_message", "continue_final_message and add_generation_prompt cannot both be true");
    let text = ctx.chat().render(chat.messages, addGeneration, {
      ...(chat.tools ? { tools: chat.tools } : {}),
      ...(chat.templateKwargs ? { kwargs: chat.templateKwargs } : {}),
    });
    if (continueFinal) {
      // The prompt ends inside the last message: cut what the template writes after its content.
      const last = chat.messages[chat.messages.length - 1].content ?? "";
      const at = text.lastIndexOf(last);
      if (last && at >= 0) text = text.slice(0, at + last.length);
    }
    ids = tok.encode(text, { addSpecialTokens: optBool(body, "add_special_tokens", false) });
  } else {
    if (typeof body.prompt !== "string") throw badParam("prompt", "prompt must be a string (or send messages)");
    ids = tok.encode(body.prompt, { addSpecialTokens: optBool(body, "add_special_tokens", true) });
  }
  const strs = optBool(body, "return_token_strs", false);
  return {
    count: ids.length,
    max_model_len: engine.info.maxContext,
    tokens: ids,
    token_strs: strs ? ids.map((id) => tok.tokenToPiece(id) ?? tok.decode([id])) : null,
  };
}

/** `/detokenize`: `{prompt}`. */
export function detokenize(body: unknown, engine: ServedEngine): Body {
  if (!isObject(body)) throw badParam("body", "the request body must be a JSON object");
  const tokens = body.tokens;
  const vocab = engine.info.vocabSize;
  if (!Array.isArray(tokens) || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)) {
    throw badParam("tokens", `tokens must be an array of token ids in 0..${vocab - 1}`);
  }
  return { prompt: engine.tokenizer.decode(tokens as number[]) };
}
