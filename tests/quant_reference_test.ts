/**
 * Load-time quantization against transformers, through the quantized matmuls of both kernel
 * families on their exact path (f32 activations times the dequantized weights): every
 * reference model loaded with `quantization: "q8_0"` / `"q4_0"` must match quant-goldens.json
 * as closely as the f32 path matches golden.json: max |ours - HF| <= 1e-4 of the largest
 * logit. The KV cache is f32 here (the f16 cache has its own golden tests), so the arithmetic
 * is exactly the goldens' f32 math on round-tripped weights.
 *
 * Every model and both types, both kernel families, are held to EXACT_TOL: the quantizers use
 * llama.cpp's reference formula in double precision (x * (1 / d)), the arithmetic the goldens
 * were made with. On the 16-bit checkpoints about 0.4% of weights are exact ties (x = ±max/2
 * is 63.5 levels), so an f32 or x / d quantizer is off by ~2e-3 there, 20x this bound.
 */
import { shared, sharedTest, test } from "./helpers/test.ts";
import { createGpu } from "../src/gpu/device.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { loadGolden, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { denseMatrices } from "../src/model/weights.ts";
import { EXACT_TOL, loadQuantGoldens, QUANT_GOLDEN_MODELS, worstRelativeError, writeRoundTripCheckpoint } from "./helpers/quant_goldens.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";

const OPTS = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 1, blockSize: 16, numBlocks: 16, weightDType: "f32", kvDtype: "f32" } as const;

// One device for the file: its pipelines, compiled once, serve every model's runners.
const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

for (const kernelFamily of KERNEL_FAMILIES) for (const name of QUANT_GOLDEN_MODELS) {
  sharedTest(`quant reference ${kernelFamily} ${name}: Q8_0 and Q4_0 load-time quantization match transformers' round trip (quantized kernels, exact path)`, async () => {
    const goldens = (await loadQuantGoldens())[name];
    const gpu = await sharedGpu();
    const q8 = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, quantization: "q8_0", gpu });
    try {
      const q4 = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, quantization: "q4_0", gpu });
      try {
        // The decoder's linear weights run as blocks (no f32 copy) where K % 32 == 0 (else
        // they are not quantized: stories260K's down, K = 172); the embedding stays dense.
        for (const [r, dtype] of [[q8, "q8_0"], [q4, "q4_0"]] as const) {
          const mats = denseMatrices(r.weights.layers[0]);
          assertEquals(mats.map((w) => `${w.kind}/${w.dtype}`), mats.map((w) => w.k % 32 === 0 ? `quant/${dtype}` : "dense/f32"));
          assertEquals(mats[0].kind, "quant");
          assertEquals(r.weights.embed.kind, "dense");
        }
        const e8 = await worstRelativeError(q8, goldens.q8_0);
        const e4 = await worstRelativeError(q4, goldens.q4_0);
        // Sanity: the Q4_0 goldens are not the Q8_0 ones, so matching one is not matching both.
        const cross = await worstRelativeError(q8, goldens.q4_0);
        console.log(`  ${kernelFamily} ${name}: Q8_0 ${e8.toExponential(2)}, Q4_0 ${e4.toExponential(2)} (Q8_0 weights vs Q4_0 goldens ${cross.toExponential(2)})`);
        assert(e8 <= EXACT_TOL, `${name} Q8_0: relative error ${e8} > ${EXACT_TOL}`);
        assert(e4 <= EXACT_TOL, `${name} Q4_0: relative error ${e4} > ${EXACT_TOL}`);
        assert(cross > 10 * EXACT_TOL, `${name}: Q8_0 and Q4_0 goldens are indistinguishable (${cross})`);
      } finally {
        q4.close();
      }
    } finally {
      q8.close();
    }
  });
}

// gemma3-tiny and qwen35-tiny have no HF quantized goldens: their reference is our f32 forward
// (held to 1e-4 of HF's logits in reference_test.ts) on a checkpoint whose weights are the
// load-time blocks dequantized, i.e. the same round trip quant-goldens.json applies. Every
// layer's linears must be blocks: for qwen35-tiny that is the Gated DeltaNet in-projection
// (qkv|z|b|a) and out_proj, and the gated attention's q|k|v|gate and o.
for (const name of ["gemma3-tiny", "qwen35-tiny"]) {
  test(`quant reference ${name}: Q8_0 and Q4_0 load-time quantization match the f32 path on the round-tripped weights (both families, quantized kernels)`, async () => {
    // The longest prompt (past gemma3's sliding window) is enough: the kernels are shared.
    const ids = (await loadGolden(name)).cases.map((c) => c.prompt_ids).sort((a, b) => b.length - a.length).slice(0, 1);
    await withTempDir(async (dir) => {
      const gpu = await createGpu();
      try {
        for (const q of ["q8_0", "q4_0"] as const) {
          const roundTrip = `${dir}/${q}`;
          await writeRoundTripCheckpoint(modelDir(name), q, roundTrip);
          for (const kernelFamily of KERNEL_FAMILIES) {
            const quant = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, quantization: q, gpu });
            const plain = await ModelRunner.load(roundTrip, { ...OPTS, kernelFamily, gpu });
            try {
              for (const l of quant.weights.layers) {
                const mats = denseMatrices(l);
                assertEquals(mats.map((w) => `${w.kind}/${w.dtype}`), mats.map(() => `quant/${q}`));
              }
              if (name === "qwen35-tiny") assertEquals(quant.weights.layers.map((l) => l.linear !== null), [true, true, true, false]);
              let worst = 0;
              for (const p of ids) {
                const a = await promptLogits(quant, p);
                const b = await promptLogits(plain, p);
                worst = Math.max(worst, maxAbsDiff(a, b) / maxAbs(b));
              }
              console.log(`  ${kernelFamily} ${name} ${q}: vs f32 on round-tripped weights ${worst.toExponential(2)}`);
              assert(worst <= EXACT_TOL, `${name} ${kernelFamily} ${q}: relative error ${worst} > ${EXACT_TOL}`);
            } finally {
              plain.close();
              quant.close();
            }
          }
        }
      } finally {
        gpu.device.destroy();
      }
    });
  });
}
