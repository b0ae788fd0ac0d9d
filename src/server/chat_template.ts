/**
 * Chat messages to a prompt with the model's own Jinja chat template (tokenizer_config.json's
 * `chat_template` or chat_template.jinja), rendered by @huggingface/jinja as transformers'
 * `apply_chat_template` does.
 * @module
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../../mod.ts";

/** A tool call of an assistant message, in OpenAI's shape (`arguments` a JSON string or an object). */
export interface ChatToolCall {
  id?: string;
  type?: "function";
  function: { name: string; arguments: string | Record<string, unknown> };
}

/**
 * One chat message (content already flattened to text; null for an assistant message that
 * only calls tools), with OpenAI's tool fields.
 */
export interface ChatMessage {
  role: string;
  content: string | null;
  /** An assistant's calls. */
  tool_calls?: ChatToolCall[];
  /** A `tool` message: the call it answers. */
  tool_call_id?: string;
  /** A `tool` message: the function's name (some templates print it). */
  name?: string;
  /** An assistant's reasoning (thinking models' templates may print it). */
  reasoning_content?: string;
}

/** A tool offered to the model (OpenAI's `tools[]`). */
export interface ChatTool {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

/** Options of {@link ChatTemplate.render}. */
export interface RenderOptions {
  /** Tools, passed to the template as `tools`, as transformers' `apply_chat_template(tools=...)` does. */
  tools?: readonly ChatTool[];
  /** More template variables (`chat_template_kwargs`, e.g. `enable_thinking`). */
  kwargs?: Record<string, unknown>;
}

/**
 * Messages as templates expect them: transformers documents tool-call `arguments` as a dict,
 * and templates print them with `tojson`, so a JSON-string `arguments` (OpenAI's form) is
 * parsed, as vLLM does. An assistant's reasoning is also given as `thinking`, the field
 * gpt-oss's template reads (as llama.cpp does), and a tool-calling message without content
 * leaves `content` out, transformers' documented shape (gpt-oss's template tests
 * `"content" in message` and then searches the content). Anything else passes unchanged.
 */
function forTemplate(messages: readonly ChatMessage[]): (ChatMessage & { thinking?: string })[] {
  return messages.map((message) => {
    let m: ChatMessage & { thinking?: string } = message;
    if (m.reasoning_content !== undefined) m = { ...m, thinking: m.reasoning_content };
    const calls = m.tool_calls;
    if (!calls) return m;
    if (m.content === null) {
      const { content: _, ...rest } = m;
      m = rest as ChatMessage;
    }
    const toolCalls = calls.map((c) => {
      const args = c.function.arguments;
      if (typeof args !== "string") return c;
      try {
        const parsed = JSON.parse(args);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return c;
        return { ...c, function: { ...c.function, arguments: parsed } };
      } catch {
        return c;
      }
    });
    return { ...m, tool_calls: toolCalls };
  });
}

/** Raised when a model has no chat template or its template fails on the messages. */
export class ChatTemplateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChatTemplateError";
  }
}

/** A compiled chat template for one tokenizer. */
export class ChatTemplate {
  #template: Template;
  #tokenizer: Tokenizer;

  private constructor(template: Template, tokenizer: Tokenizer) {
    this.#template = template;
    this.#tokenizer = tokenizer;
  }

  /** The tokenizer's template, or null when it has none. */
  static of(tokenizer: Tokenizer): ChatTemplate | null {
    if (!tokenizer.chatTemplate) return null;
    try {
      return new ChatTemplate(new Template(tokenizer.chatTemplate), tokenizer);
    } catch (e) {
      throw new ChatTemplateError(`the model's chat template does not parse: ${(e as Error).message}`);
    }
  }

  /** Renders messages (and tools, if any) to prompt text. */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true, options: RenderOptions = {}): string {
    const tok = this.#tokenizer;
    const piece = (id: number | null | undefined) => (id === null || id === undefined ? "" : tok.decode([id]));
    try {
      return this.#template.render({
        ...options.kwargs,
        messages: forTemplate(messages),
        add_generation_prompt: addGenerationPrompt,
        bos_token: piece(tok.bosTokenId),
        eos_token: piece(tok.eosTokenIds[0]),
        ...(options.tools ? { tools: options.tools } : {}),
      });
    } catch (e) {
      throw new ChatTemplateError(`the chat template failed on these messages: ${(e as Error).message}`);
    }
  }

  /** Renders and tokenizes (the template carries its own special tokens, so none are added). */
  encode(messages: readonly ChatMessage[], options: RenderOptions = {}): number[] {
    return this.#tokenizer.encode(this.render(messages, true, options), { addSpecialTokens: false });
  }
}
