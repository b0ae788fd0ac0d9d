/**
 * Prompt tokenization off the HTTP thread: a Worker holding its own copy of the tokenizer.
 * Also knows how many bytes of text can possibly fit a context, so the server refuses
 * over-long prompts by their size before any tokenizing.
 * @module
 */
import { stopWorker } from "../runtime/runtime.ts";
import type { FromTokenizer, ToTokenizer } from "./tokenizer_protocol.ts";


/** The tokenizer Worker could not start or encode. */
export class PromptTokenizerError extends Error {
  readonly code = "tokenizer_failed";
  constructor(message: string) {
    super(message);
    this.name = "PromptTokenizerError";
  }
}

/** A tokenizer running in its own Worker. */
export class PromptTokenizer {
  /** UTF-8 bytes of the longest vocabulary piece. */
  readonly maxTokenBytes: number;
  #worker: Worker;
  #pending = new Map<number, { resolve: (ids: number[]) => void; reject: (e: Error) => void }>();
  #next = 0;

  private constructor(worker: Worker, maxTokenBytes: number) {
    this.#worker = worker;
    this.maxTokenBytes = maxTokenBytes;
    worker.onmessage = (e: MessageEvent<FromTokenizer>) => {
      const m = e.data;
      if (m.type !== "encoded" && m.type !== "encode_error") return;
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.type === "encoded") p?.resolve(Array.from(m.ids));
      else p?.reject(new PromptTokenizerError(m.message));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      for (const p of this.#pending.values()) p.reject(new PromptTokenizerError(`tokenizer worker died: ${e.message}`));
      this.#pending.clear();
    };
  }

  /** Starts the Worker and loads `dir`'s tokenizer in it. */
  static async start(dir: string): Promise<PromptTokenizer> {
    const worker = new Worker(new URL("./tokenizer_worker.ts", import.meta.url), { type: "module" });
    const first = await new Promise<FromTokenizer>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<FromTokenizer>) => resolve(e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new PromptTokenizerError(`tokenizer worker failed: ${e.message}`));
      };
      worker.postMessage({ type: "init", dir } satisfies ToTokenizer);
    }).catch((e) => {
      stopWorker(worker);
      throw e;
    });
    if (first.type !== "ready") {
      stopWorker(worker);
      throw new PromptTokenizerError(first.type === "init_error" ? first.message : "unexpected first message");
    }
    return new PromptTokenizer(worker, first.maxTokenBytes);
  }

  /**
   * The most UTF-8 bytes a text of `tokens` tokens can have: longer text needs more tokens
   * (unless the tokenizer's normalizer deletes characters, which no supported family does).
   */
  maxBytesFor(tokens: number): number {
    return tokens * this.maxTokenBytes;
  }

  /** Text to ids (special tokens as the tokenizer's config says, unless turned off). */
  encode(text: string, addSpecialTokens = true): Promise<number[]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ type: "encode", id, text, addSpecialTokens } satisfies ToTokenizer);
    });
  }

  /** Ends the Worker (the runtime adapter decides how: Bun's Workers are left idle and unreferenced). */
  close(): void {
    stopWorker(this.#worker);
    for (const p of this.#pending.values()) p.reject(new PromptTokenizerError("tokenizer closed"));
    this.#pending.clear();
  }
}
