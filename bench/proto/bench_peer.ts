/**
 * llama.cpp on the same SmolLM2-shaped checkpoint (through node-llama-cpp and the GGUF the
 * suite writes itself, as bench/peer_llama_cpp.ts does): one stream and 8 parallel sequences.
 * `LlamaCppPeer` keeps the model loaded so its runs can alternate with ours round by round:
 * on a shared machine the load changes by the minute, and only interleaved runs give ratios
 * that mean something.
 * @module
 */
import type { Llama, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { loadLlamaCpp } from "../peer_llama_cpp.ts";
import { convertToGguf } from "../gguf_convert.ts";
import { makeWorkload } from "../workload.ts";

/** llama.cpp's rates (medians over the rounds). */
export interface PeerRates {
  singleTokPerS: number;
  parallelTokPerS: number;
  parallel: number;
  outputTokens: number;
  threads: number;
}

/** A loaded llama.cpp model with `parallel` sequences. */
export class LlamaCppPeer {
  readonly parallel: number;
  readonly threads: number;
  #llama: Llama;
  #model: LlamaModel;
  #context: LlamaContext;
  #prompts: number[][];

  private constructor(
    llama: Llama,
    model: LlamaModel,
    context: LlamaContext,
    prompts: number[][],
    parallel: number,
    threads: number,
  ) {
    this.#llama = llama;
    this.#model = model;
    this.#context = context;
    this.#prompts = prompts;
    this.parallel = parallel;
    this.threads = threads;
  }

  /** Converts the checkpoint, loads it and warms up. */
  static async open(
    modelDir: string,
    ggufPath: string,
    parallel: number,
    maxTokens: number,
  ): Promise<LlamaCppPeer> {
    await convertToGguf(modelDir, ggufPath);
    const llama = await loadLlamaCpp();
    const threads = navigator.hardwareConcurrency || 2;
    const prompts = makeWorkload({
      vocab: 49152,
      bosId: 1,
      requests: parallel,
      promptLen: [16, 32],
      seed: 3,
    }).map((r) => r.promptIds);
    const model = await llama.loadModel({ modelPath: ggufPath });
    const context = await model.createContext({
      contextSize: (Math.max(...prompts.map((p) => p.length)) + maxTokens + 8) * parallel,
      sequences: parallel,
      threads,
      batchSize: 512,
    });
    const peer = new LlamaCppPeer(llama, model, context, prompts, parallel, threads);
    // The first runs are far slower (one took 75 s for 16 tokens here): warm both paths.
    await peer.single(16);
    await peer.parallelRate(16);
    return peer;
  }

  async #generate(
    seq: ReturnType<LlamaContext["getSequence"]>,
    prompt: number[],
    tokens: number,
  ): Promise<number> {
    let n = 0;
    for await (const _ of seq.evaluate(prompt as Token[], { temperature: 0 })) {
      if (++n >= tokens) break;
    }
    await seq.clearHistory();
    return n;
  }

  /** Tokens/s of one greedy stream of `tokens` tokens (short prompt prefill included). */
  async single(tokens: number): Promise<number> {
    const seq = this.#context.getSequence();
    try {
      const t0 = performance.now();
      const n = await this.#generate(seq, this.#prompts[0], tokens);
      return n / ((performance.now() - t0) / 1000);
    } finally {
      await seq.dispose();
    }
  }

  /** Tokens/s of `parallel` greedy streams at once. */
  async parallelRate(tokens: number): Promise<number> {
    const seqs = this.#prompts.map(() => this.#context.getSequence());
    try {
      const t0 = performance.now();
      const counts = await Promise.all(
        this.#prompts.map((p, i) => this.#generate(seqs[i], p, tokens)),
      );
      return counts.reduce((a, b) => a + b, 0) / ((performance.now() - t0) / 1000);
    } finally {
      await Promise.all(seqs.map((s) => s.dispose()));
    }
  }

  /** Frees the context, model and binding. */
  async dispose(): Promise<void> {
    await this.#context.dispose();
    await this.#model.dispose();
    await this.#llama.dispose();
  }
}
