/**
 * Access to the vendored reference checkpoints (tests/fixtures/models) and their golden outputs.
 * @module
 */
import type { ModelRunner } from "../../src/runner/model_runner.ts";
import { buildStepBatch } from "../../src/runner/step_meta.ts";
import type { Engine } from "../../src/engine/engine.ts";
import type { BlockManager } from "../../src/scheduler/block_manager.ts";
import { validateRequest } from "../../src/api/validate.ts";
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
  "gemma3-tiny",
] as const;

/**
 * Hybrid reference models (linear-attention layers with a recurrent state beside the KV
 * cache): the golden tests run them too; GGUF and quant goldens cover them separately.
 */
export const HYBRID_MODEL_NAMES = ["qwen35-tiny"] as const;

/**
 * The mixture-of-experts reference models (load-time quantization applies to their float
 * experts too: moe_quant_test.ts; MXFP4 experts stay MXFP4).
 */
export const MOE_MODEL_NAMES = ["qwen3-moe-tiny", "gpt-oss-tiny", "gpt-oss-mxfp4-tiny"] as const;

/**
 * Hybrid mixture-of-experts reference models (Qwen3.5-MoE: Qwen3.5's hybrid layers with a
 * sparse block and a gated shared expert as every feed-forward). Neither GGUF nor the quant
 * goldens cover them (no `qwen35moe` GGUF here, no quant-goldens.json entries).
 */
export const HYBRID_MOE_MODEL_NAMES = ["qwen35-moe-tiny"] as const;

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

/**
 * Teacher-forced logits of every position of `ids`, run as one sequence on `runner`. When an
 * engine also runs on the runner, pass its block pool so the blocks written here are not
 * ones its prefix cache holds.
 */
export async function promptLogits(runner: ModelRunner, ids: readonly number[], blocks?: BlockManager): Promise<Float32Array> {
  const bs = runner.cache.options.blockSize;
  const n = Math.ceil(ids.length / bs);
  const table = blocks ? blocks.allocate(n) : Array.from({ length: n }, (_, i) => i);
  try {
    return await runner.logits(buildStepBatch([{ tokens: [...ids], start: 0, blockTable: table, logits: "all" }], bs));
  } finally {
    blocks?.release(table);
  }
}

/** Greedy ids after `promptIds` from an in-thread engine (no EOS stop): the serving path. */
export function greedyIds(engine: Engine, promptIds: readonly number[], maxTokens: number): Promise<number[]> {
  const request = validateRequest({ prompt: promptIds, maxTokens, ignoreEos: true }, promptIds, engine.info);
  const ids: number[] = [];
  return new Promise((resolve, reject) => {
    engine.submit(request, {
      tokens: (_i, t) => ids.push(...t),
      done: () => resolve(ids),
      fail: (_i, e) => reject(e),
    });
  });
}
