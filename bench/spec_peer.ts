/**
 * The `spec` section's llama.cpp peer: node-llama-cpp's prompt-lookup speculation
 * (`InputLookupTokenPredictor`) on the GGUF conversion of the same checkpoint and the same
 * workloads, tok/s with and without it. The predictor looks for the last tokens in the input
 * tokens only (ours also looks in the output); it predicts only once it is given them
 * (`updateInputTokens`, which `LlamaCompletion` / `LlamaChatSession` call and a bare
 * `sequence.evaluate` does not: without that call it predicts nothing), so each generation
 * passes its prompt to it first. One sequence per prompt in one context (each speculating one
 * with its own predictor), greedy, runs alternating off and on.
 * @module
 */
import type { Llama, LlamaContextSequence, Token } from "node-llama-cpp";
import { convertToGguf } from "../src/model/gguf/convert.ts";

/** One workload on llama.cpp, the predictor off and on. */
export interface SpecPeerRow {
  workload: string;
  offTokPerS: number;
  onTokPerS: number;
  /** on / off. */
  speedup: number;
  /** Predicted tokens the target confirmed, and refuted, over the timed runs. */
  validated: number;
  refuted: number;
  /** Whether every output with the predictor equals the output without it. */
  sameTokens: boolean;
}

/** Options of {@link benchSpecPeer}. */
export interface SpecPeerOptions {
  /** The checkpoint (converted to GGUF at `ggufPath`). */
  model: string;
  ggufPath: string;
  /** From `loadLlamaCpp` (bench/peer_llama_cpp.ts). */
  llama: Llama;
  /** Workload name, then its prompts (text) and tokens per output. */
  workloads: { name: string; prompts: string[]; maxTokens: number }[];
  /** The predictor's pattern lengths and tokens per prediction (our n range and k). */
  lookup: { minN: number; maxN: number; k: number };
  /** Timed runs per side (best of). */
  runs: number;
  /**
   * llama.cpp threads. 1 by default: on this 2-core machine shared with other jobs, 2 threads
   * spin at their barriers while another process holds a core (the copying workload ran at
   * 11 tok/s with 2 threads, 1,058 with 1, load ~9).
   */
  threads?: number;
}

/** Runs the peer over the workloads. */
export async function benchSpecPeer(options: SpecPeerOptions): Promise<SpecPeerRow[]> {
  // A variable specifier, as in peer_llama_cpp.ts: resolved only when the peer runs.
  const name = "node-llama-cpp";
  const m: typeof import("node-llama-cpp") = await import(name);
  await convertToGguf(options.model, options.ggufPath);
  const model = await options.llama.loadModel({ modelPath: options.ggufPath });
  const rows: SpecPeerRow[] = [];
  try {
    for (const w of options.workloads) {
      const prompts = w.prompts.map((p) => [model.tokens.bos!, ...model.tokenize(p)] as Token[]);
      const longest = Math.max(...prompts.map((p) => p.length)) + w.maxTokens + 8;
      const n = prompts.length;
      const context = await model.createContext({
        contextSize: longest * 2 * n,
        sequences: 2 * n,
        threads: options.threads ?? 1,
        batchSize: 512,
      });
      try {
        const { minN, maxN, k } = options.lookup;
        const predictors = prompts.map(() =>
          new m.InputLookupTokenPredictor({ patternLength: { min: minN, max: maxN }, predictionLength: { max: k } })
        );
        const off = prompts.map(() => context.getSequence());
        const on = predictors.map((tokenPredictor) => context.getSequence({ tokenPredictor }));
        const generate = async (seq: LlamaContextSequence, prompt: Token[], i: number, speculate: boolean) => {
          if (speculate) predictors[i].updateInputTokens(prompt);
          const out: number[] = [];
          for await (const t of seq.evaluate(prompt, { temperature: 0 })) {
            out.push(t as number);
            if (out.length >= w.maxTokens) break;
          }
          await seq.clearHistory();
          return out;
        };
        const run = async (speculate: boolean) => {
          const t0 = performance.now();
          const outs = await Promise.all(prompts.map((p, i) => generate((speculate ? on : off)[i], p, i, speculate)));
          return { outs, seconds: (performance.now() - t0) / 1000, tokens: outs.reduce((a, o) => a + o.length, 0) };
        };
        await run(false);
        await run(true);
        const count = () => on.reduce((a, s) => [a[0] + s.tokenPredictions.validated, a[1] + s.tokenPredictions.refuted], [0, 0]);
        const before = count();
        let best = [Infinity, Infinity];
        let tokens = 0;
        let same = true;
        for (let r = 0; r < options.runs; r++) {
          const a = await run(false);
          const b = await run(true);
          same &&= a.outs.every((o, i) => o.join() === b.outs[i].join());
          tokens = a.tokens;
          best = [Math.min(best[0], a.seconds), Math.min(best[1], b.seconds)];
        }
        const after = count();
        rows.push({
          workload: w.name,
          offTokPerS: tokens / best[0],
          onTokPerS: tokens / best[1],
          speedup: best[0] / best[1],
          validated: after[0] - before[0],
          refuted: after[1] - before[1],
          sameTokens: same,
        });
      } finally {
        await context.dispose();
      }
    }
  } finally {
    await model.dispose();
  }
  return rows;
}
