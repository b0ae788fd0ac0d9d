/**
 * Access to the vendored reference checkpoints (tests/fixtures/models) and their golden outputs.
 * @module
 */
import type { ModelRunner } from "../../src/model/model_runner.ts";
import { buildStepBatch } from "../../src/model/step_batch.ts";
import * as sys from "./platform.ts";

export { MODELS_DIR } from "./fixtures.ts";
import { MODELS_DIR } from "./fixtures.ts";

/** Every reference model. */
export const MODEL_NAMES = [
  "stories260K",
  "llama-tiny",
  "llama3-rope-tiny",
  "qwen2-tiny",
  "qwen3-tiny",
  "mistral-tiny",
  "gemma2-tiny",
] as const;

/** One golden case. */
export interface GoldenCase {
  prompt: string;
  prompt_ids: number[];
  logit_positions: number[];
  logits: number[][];
  greedy_ids: number[];
  greedy_top2_margin: number[];
}

/** A model's golden file. */
export interface Golden {
  model: string;
  dtype: string;
  cases: GoldenCase[];
  chat?: { messages: unknown; add_generation_prompt: boolean; rendered: string }[];
}

/** Path of a reference model directory. */
export function modelDir(name: string): string {
  return MODELS_DIR + name;
}

/** Reads a model's golden.json. */
export async function loadGolden(name: string): Promise<Golden> {
  return JSON.parse(await sys.readTextFile(modelDir(name) + "/golden.json"));
}

/** Largest |a - b| over two rows. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Largest |x| of a row. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Teacher-forced logits of every position of `ids`, run as one sequence on `runner`. */
export async function promptLogits(runner: ModelRunner, ids: readonly number[]): Promise<Float32Array> {
  const bs = runner.cache.options.blockSize;
  const table = runner.blocks.allocate(Math.ceil(ids.length / bs));
  try {
    const batch = buildStepBatch([{ tokens: [...ids], start: 0, blockTable: table, logits: "all" }], bs);
    return (await runner.run(batch, { logits: true })).logits!;
  } finally {
    runner.blocks.release(table);
  }
}
