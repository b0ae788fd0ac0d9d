/**
 * llama.cpp's decode rate on the same SmolLM2-shaped checkpoint in the same run (through
 * node-llama-cpp and the GGUF the suite writes itself, as bench/peer_llama_cpp.ts does), one
 * stream and 8 parallel sequences, so the prototype's step rates have a peer to be divided by.
 * @module
 */
import type { Token } from "node-llama-cpp";
import { loadLlamaCpp } from "../peer_llama_cpp.ts";
import { convertToGguf } from "../gguf_convert.ts";
import { makeWorkload } from "../workload.ts";

/** llama.cpp's rates. */
export interface PeerRates {
  singleTokPerS: number;
  parallelTokPerS: number;
  parallel: number;
  outputTokens: number;
  threads: number;
}

/** Generates `tokens` greedy tokens for 1 and `parallel` prompts; tok/s include the short prefill. */
export async function llamaCppRates(modelDir: string, ggufPath: string, tokens: number, parallel: number): Promise<PeerRates> {
  await convertToGguf(modelDir, ggufPath);
  const llama = await loadLlamaCpp();
  const threads = navigator.hardwareConcurrency || 2;
  const prompts = makeWorkload({ vocab: 49152, bosId: 1, requests: parallel, promptLen: [16, 32], seed: 3 }).map((r) => r.promptIds);
  try {
    const model = await llama.loadModel({ modelPath: ggufPath });
    const context = await model.createContext({
      contextSize: (Math.max(...prompts.map((p) => p.length)) + tokens + 8) * parallel,
      sequences: parallel,
      threads,
      batchSize: 512,
    });
    try {
      const generate = async (seq: ReturnType<typeof context.getSequence>, prompt: number[]) => {
        const out: number[] = [];
        for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
          out.push(t as number);
          if (out.length >= tokens) break;
        }
        return out;
      };
      const seqs = Array.from({ length: parallel }, () => context.getSequence());
      await generate(seqs[0], [1, 5, 6, 7]);
      await seqs[0].clearHistory();
      let t0 = performance.now();
      const one = await generate(seqs[0], prompts[0]);
      const singleTokPerS = one.length / ((performance.now() - t0) / 1000);
      await seqs[0].clearHistory();
      t0 = performance.now();
      const outs = await Promise.all(prompts.map((p, i) => generate(seqs[i], p)));
      const parallelTokPerS = outs.reduce((a, o) => a + o.length, 0) / ((performance.now() - t0) / 1000);
      return { singleTokPerS, parallelTokPerS, parallel, outputTokens: tokens, threads };
    } finally {
      await context.dispose();
      await model.dispose();
    }
  } finally {
    await llama.dispose();
  }
}
