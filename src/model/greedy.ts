/**
 * Greedy generation for one sequence on a {@link ModelRunner}: chunked prefill, then one
 * decode step per token. The batching engine supersedes this for serving; it stays as the
 * simplest end-to-end path (the CLI and reference tests use it).
 * @module
 */
import type { ModelRunner } from "./model_runner.ts";
import { buildStepBatch } from "./step_batch.ts";

/** Options for {@link greedyGenerate}. */
export interface GreedyOptions {
  /** Tokens to generate at most. */
  maxTokens: number;
  /** Keep going past EOS. */
  ignoreEos?: boolean;
}

/** Raised when a prompt plus its generation cannot fit the runner's context. */
export class ContextLengthError extends Error {
  constructor(needed: number, max: number) {
    super(`prompt plus max tokens needs ${needed} tokens, the context holds ${max}`);
    this.name = "ContextLengthError";
  }
}

/** Generates up to `maxTokens` ids after `promptIds` with argmax sampling. */
export async function greedyGenerate(
  runner: ModelRunner,
  promptIds: readonly number[],
  options: GreedyOptions,
): Promise<number[]> {
  if (promptIds.length === 0) throw new RangeError("empty prompt");
  const bs = runner.cache.options.blockSize;
  const needed = promptIds.length + options.maxTokens;
  if (needed > runner.maxContext) throw new ContextLengthError(needed, runner.maxContext);
  const table = runner.blocks.allocate(Math.ceil(needed / bs));
  const eos = new Set(runner.spec.eosTokenIds);
  const out: number[] = [];
  try {
    const chunk = runner.capacity.maxTokens;
    let next = -1;
    for (let start = 0; start < promptIds.length; start += chunk) {
      const tokens = promptIds.slice(start, start + chunk);
      const last = start + tokens.length === promptIds.length;
      const batch = buildStepBatch([{ tokens, start, blockTable: table, logits: last ? "last" : "none" }], bs);
      const { ids } = await runner.run(batch);
      if (last) next = ids[0];
    }
    let pos = promptIds.length;
    while (out.length < options.maxTokens) {
      out.push(next);
      if (!options.ignoreEos && eos.has(next)) break;
      if (out.length === options.maxTokens) break;
      const batch = buildStepBatch([{ tokens: [next], start: pos, blockTable: table, logits: "last" }], bs);
      next = (await runner.run(batch)).ids[0];
      pos++;
    }
  } finally {
    runner.blocks.release(table);
  }
  return out;
}
