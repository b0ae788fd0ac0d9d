/**
 * Load-time Q8_0 / Q4_0 quantization of mixture-of-experts models (experts included), through
 * the quantized expert kernels of both kernel families.
 *
 * quant-goldens.json has no MoE entries, so the reference is the one gemma3-tiny's quant test
 * uses: our f32 forward (held to 1e-4 of transformers' logits in reference_test.ts) on a
 * checkpoint whose weights are the load-time blocks dequantized: the dense linear weights as
 * the quantizing source serves them, the experts quantized along each expert's K (gpt-oss's
 * `x @ W` stacks after the transpose) and dequantized here in TypeScript. Held to the quant
 * tests' EXACT_TOL (1e-4 of the largest logit). A second reference, round-tripping only the
 * dense weights, must be far from the quantized run: the experts really compute on blocks.
 * gpt-oss-mxfp4-tiny's experts stay MXFP4 under --quantization.
 */
import { shared, test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { createGpu } from "../src/gpu/device.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { loadGolden, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { EXACT_TOL } from "./helpers/quant_goldens.ts";
import { withTempDir, writeSafetensors } from "./helpers/synthetic_checkpoint.ts";
import * as sys from "./helpers/platform.ts";
import { openModel } from "../src/model/model_source.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { valueDType } from "../src/model/safetensors.ts";
import { quantizeRows } from "../src/model/quant/quantized_source.ts";
import { dequantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { dequantizeQ4_0 } from "../src/model/quant/q4_0.ts";

const OPTS = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 1, blockSize: 16, numBlocks: 16, weightDType: "f32", kvDtype: "f32" } as const;
const TYPE = { q8_0: "Q8_0", q4_0: "Q4_0" } as const;

const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

/** Rows of `k` values quantized to `q` and dequantized. */
function roundTripRows(v: Float32Array, q: "q8_0" | "q4_0"): Float32Array<ArrayBuffer> {
  const out = new Float32Array(v.length);
  (q === "q8_0" ? dequantizeQ8_0 : dequantizeQ4_0)(quantizeRows(TYPE[q], v), 0, v.length / 32, out);
  return out;
}

/** [E][R][C] -> [E][C][R]. */
function transpose(v: Float32Array, E: number, R: number, C: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(v.length);
  for (let e = 0; e < E; e++) for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[e * R * C + c * R + r] = v[e * R * C + r * C + c];
  return out;
}

/** An expert tensor round-tripped along its K: Qwen's Linear rows, gpt-oss's x @ W stacks (K = dim 1). */
function roundTripExpert(shape: readonly number[], v: Float32Array, q: "q8_0" | "q4_0"): Float32Array<ArrayBuffer> {
  if (shape.length === 2) return roundTripRows(v, q);
  const [E, R, C] = shape;
  return transpose(roundTripRows(transpose(v, E, R, C), q), E, C, R);
}

const EXPERT = /\.mlp\.experts\.(\d+\.(gate|up|down)_proj\.weight|gate_up_proj|down_proj)$/;

/** Writes `name`'s checkpoint with the load-time blocks of `q` dequantized (experts too when `experts`). */
async function writeRoundTrip(name: string, dir: string, q: "q8_0" | "q4_0", experts: boolean): Promise<void> {
  await sys.mkdir(dir);
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
    try {
      await sys.copyFile(`${modelDir(name)}/${f}`, `${dir}/${f}`);
    } catch {
      // optional files
    }
  }
  const { tensors } = await openModel(modelDir(name), { quantization: q });
  try {
    const out = [];
    for (const t of tensors.names()) {
      const info = tensors.get(t);
      let data = dequantize(valueDType(info), await tensors.read(info));
      if (experts && EXPERT.test(t)) data = roundTripExpert(info.shape, data, q);
      out.push({ name: t, shape: info.shape, dtype: "F32" as const, data });
    }
    await writeSafetensors(`${dir}/model.safetensors`, out);
  } finally {
    tensors.close();
  }
}

for (const name of ["qwen3-moe-tiny", "gpt-oss-tiny"]) for (const q of ["q8_0", "q4_0"] as const) {
  test(`moe quant ${name}: ${TYPE[q]} experts (load-time) match the f32 path on the round-tripped weights, both kernel families`, async () => {
    // The longest prompt: every sparse layer routes its tokens to most experts.
    const prompts = (await loadGolden(name)).cases.map((c) => c.prompt_ids).sort((a, b) => b.length - a.length).slice(0, 1);
    const gpu = await sharedGpu();
    await withTempDir(async (dir) => {
      {
        await writeRoundTrip(name, `${dir}/${q}`, q, true);
        // The experts-unquantized control is about loading, not kernels: the cpu family only.
        await writeRoundTrip(name, `${dir}/${q}_dense`, q, false);
        for (const kernelFamily of KERNEL_FAMILIES) {
          const quant = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, quantization: q, gpu });
          try {
            const sparse = quant.weights.layers.filter((l) => l.moe);
            assert(sparse.length > 0, "no sparse layers");
            for (const l of sparse) {
              assertEquals(l.moe!.dtype, q);
              assertEquals(l.moe!.layout, "column_blocks");
            }
            const plain = await ModelRunner.load(`${dir}/${q}`, { ...OPTS, kernelFamily, gpu });
            let worst = 0;
            try {
              for (const p of prompts) {
                const a = await promptLogits(quant, p);
                const b = await promptLogits(plain, p);
                worst = Math.max(worst, maxAbsDiff(a, b) / maxAbs(b));
              }
            } finally {
              plain.close();
            }
            console.log(`  ${kernelFamily} ${name} ${q}: vs f32 on round-tripped weights ${worst.toExponential(2)}`);
            assert(worst <= EXACT_TOL, `${name} ${kernelFamily} ${q}: relative error ${worst} > ${EXACT_TOL}`);
            if (kernelFamily !== "cpu") continue;
            // Only the dense weights round-tripped: the experts' quantization must show.
            const dense = await ModelRunner.load(`${dir}/${q}_dense`, { ...OPTS, kernelFamily, gpu });
            try {
              const b = await promptLogits(dense, prompts[0]);
              const apart = maxAbsDiff(await promptLogits(quant, prompts[0]), b) / maxAbs(b);
              console.log(`  ${name} ${q}: vs f32 with unquantized experts ${apart.toExponential(2)}`);
              assert(apart > 10 * EXACT_TOL, `${name} ${q}: experts look unquantized (${apart})`);
            } finally {
              dense.close();
            }
          } finally {
            quant.close();
          }
        }
      }
    });
  });
}

test("moe quant gpt-oss-mxfp4-tiny: MXFP4 experts stay MXFP4 under --quantization q8_0 (dense weights quantized)", async () => {
  const gpu = await sharedGpu();
  const runner = await ModelRunner.load(modelDir("gpt-oss-mxfp4-tiny"), { ...OPTS, quantization: "q8_0", gpu });
  try {
    for (const l of runner.weights.layers) {
      assertEquals(l.moe?.dtype, "mxfp4");
      assertEquals(l.o?.dtype, "q8_0");
    }
  } finally {
    runner.close();
  }
});
