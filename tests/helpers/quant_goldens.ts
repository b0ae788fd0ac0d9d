/**
 * The quantized-weight goldens (tests/fixtures/models/quant-goldens.json) and the logit
 * comparison every accuracy test uses: the largest |ours - ref| over a position's row,
 * relative to that row's largest |ref|.
 * @module
 */
import * as sys from "./platform.ts";
import { MODELS_DIR } from "./fixtures.ts";
import { maxAbs, maxAbsDiff, MODEL_NAMES, promptLogits } from "./reference.ts";
import type { ModelRunner } from "../../src/runner/model_runner.ts";

/** One case: HF logits with the Q8_0 / Q4_0 round trip applied to the linear weights. */
export interface QuantCase {
  prompt_ids: number[];
  logit_positions: number[];
  logits: number[][];
}

/** `{ model: { q8_0: cases, q4_0: cases } }`. */
export type QuantGoldens = Record<string, { q8_0: QuantCase[]; q4_0: QuantCase[] }>;

/**
 * The reference models quant-goldens.json covers (gemma3-tiny came without quantized goldens;
 * quant_reference_test.ts holds it to its own f32 path on round-tripped weights instead).
 */
export const QUANT_GOLDEN_MODELS = MODEL_NAMES.filter((name) => name !== "gemma3-tiny");

/** How close an exact quantized path must be to the goldens (the f32 path's bound on golden.json). */
export const EXACT_TOL = 1e-4;

let cached: Promise<QuantGoldens> | null = null;

/** Reads quant-goldens.json once. */
export function loadQuantGoldens(): Promise<QuantGoldens> {
  return cached ??= sys.readTextFile(MODELS_DIR + "quant-goldens.json").then((t) => JSON.parse(t));
}

/** The worst relative logit error of `runner` over `cases` (teacher-forced). */
export async function worstRelativeError(runner: ModelRunner, cases: readonly QuantCase[]): Promise<number> {
  const V = runner.spec.vocabSize;
  let worst = 0;
  for (const c of cases) {
    const logits = await promptLogits(runner, c.prompt_ids);
    c.logit_positions.forEach((pos, k) => {
      const ref = c.logits[k];
      worst = Math.max(worst, maxAbsDiff(logits.subarray(pos * V, (pos + 1) * V), ref) / maxAbs(ref));
    });
  }
  return worst;
}
