/**
 * Chat messages to a prompt with the model's own Jinja chat template (tokenizer_config.json's
 * `chat_template` or chat_template.jinja), rendered by @huggingface/jinja as transformers'
 * `apply_chat_template` does.
 * @module
 */
import { Template } from "@huggingface/jinja";
import type { Tokenizer } from "../../mod.ts";

/** One chat message (content already flattened to text). */
export interface ChatMessage {
  role: string;
  content: string;
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

  /** Renders messages to prompt text. */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    const tok = this.#tokenizer;
    const piece = (id: number | null | undefined) => (id === null || id === undefined ? "" : tok.decode([id]));
    try {
      return this.#template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: piece(tok.bosTokenId),
        eos_token: piece(tok.eosTokenIds[0]),
      });
    } catch (e) {
      throw new ChatTemplateError(`the chat template failed on these messages: ${(e as Error).message}`);
    }
  }

  /** Renders and tokenizes (the template carries its own special tokens, so none are added). */
  encode(messages: readonly ChatMessage[]): number[] {
    return this.#tokenizer.encode(this.render(messages), { addSpecialTokens: false });
  }
}
