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
import { writeSafetensors } from "./synthetic_checkpoint.ts";
import { openModel } from "../../src/model/model_source.ts";
import { dequantize } from "../../src/model/quant/dequantize.ts";
import { valueDType } from "../../src/model/safetensors.ts";
import type { LoadQuantization } from "../../src/model/quant/ggml_types.ts";

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

/**
 * Writes to `out` the checkpoint `src` with its load-time `quantization` round trip applied:
 * every tensor as F32 holding what the quantized load holds (the blocks dequantized), under
 * the loader's plain names (a vision-language checkpoint's language model only), so an f32
 * path on it is the reference for the quantized path on `src`.
 */
export async function writeRoundTripCheckpoint(src: string, quantization: LoadQuantization, out: string): Promise<void> {
  await sys.mkdir(out, { recursive: true });
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
    await sys.copyFile(`${src}/${f}`, `${out}/${f}`);
  }
  const { tensors } = await openModel(src, { quantization });
  try {
    const all = [];
    for (const t of tensors.names()) {
      const info = tensors.get(t);
      all.push({ name: t, shape: info.shape, dtype: "F32" as const, data: dequantize(valueDType(info), await tensors.read(info)) });
    }
    await writeSafetensors(`${out}/model.safetensors`, all);
  } finally {
    tensors.close();
  }
}
