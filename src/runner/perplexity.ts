/**
 * Perplexity of a token sequence under a loaded model: exp of the mean negative
 * log-likelihood of each token given the ones before it, teacher-forced in one pass.
 * @module
 */
import type { ModelRunner } from "./model_runner.ts";
import { buildStepBatch } from "./step_meta.ts";

/** Perplexity of `ids` (the first token is context only); needs ids.length <= the runner's step budget. */
export async function perplexity(runner: ModelRunner, ids: readonly number[]): Promise<number> {
  if (ids.length < 2) throw new RangeError("perplexity needs at least two tokens");
  const bs = runner.cache.options.blockSize;
  const table = Array.from({ length: Math.ceil(ids.length / bs) }, (_, i) => i);
  const logits = await runner.logits(buildStepBatch([{ tokens: [...ids], start: 0, blockTable: table, logits: "all" }], bs));
  const V = runner.spec.vocabSize;
  let nll = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    const row = logits.subarray(i * V, (i + 1) * V);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    nll -= row[ids[i + 1]] - max - Math.log(sum);
  }
  return Math.exp(nll / (ids.length - 1));
}
