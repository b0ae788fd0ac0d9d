/**
 * GGUF files on the GPU: every reference model converted by `convert` and loaded from the
 * .gguf (llama.cpp's names, metadata, q/k row order, Gemma's 1 + w norms, Llama-3.1 rope
 * as rope_freqs; Qwen3.5's Gated DeltaNet tensors) matches transformers' golden.json like the safetensors path (1e-4 of the
 * largest logit, matrices f32), and a Q8_0 file gives the same logits as load-time Q8_0
 * quantization of the checkpoint (the same blocks, see gguf_test.ts).
 */
import { shared, sharedTest } from "./helpers/test.ts";
import { createGpu } from "../src/gpu/device.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { HYBRID_MODEL_NAMES, loadGolden, maxAbs, maxAbsDiff, MODEL_NAMES, modelDir, MOE_MODEL_NAMES, promptLogits } from "./helpers/reference.ts";
import { worstRelativeError } from "./helpers/quant_goldens.ts";

// f32 KV: the goldens bound the error to 1e-4; the f16 cache (the default where the adapter
// has shader-f16) is measured against them in reference_test.ts.
const OPTS = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 1, blockSize: 16, numBlocks: 16, weightDType: "f32", kvDtype: "f32" } as const;

// One device for the file: its pipelines, compiled once, serve every model's runners.
const QUANTS = ["q8_0", "q4_0"] as const;

const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

// qwen35-tiny (llama.cpp's `qwen35`: ssm_* tensors, -exp(A_log), value heads tiled, 1 + w norms).
for (const name of [...MODEL_NAMES, ...HYBRID_MODEL_NAMES]) {
  sharedTest(`gguf reference ${name}: the converted file matches transformers, and Q8_0 from GGUF equals load-time Q8_0`, async () => {
    await withTempDir(async (dir) => {
      await convertToGguf(modelDir(name), `${dir}/f.gguf`);
      await convertToGguf(modelDir(name), `${dir}/q8.gguf`, { quantization: "q8_0" });
      const golden = await loadGolden(name);
      const gpu = await sharedGpu();
      const plain = await ModelRunner.load(`${dir}/f.gguf`, { ...OPTS, gpu });
      const err = await worstRelativeError(plain, golden.cases);
      plain.close();
      const fromFile = await ModelRunner.load(`${dir}/q8.gguf`, { ...OPTS, gpu });
      const loadTime = await ModelRunner.load(modelDir(name), { ...OPTS, gpu, quantization: "q8_0" });
      let same = 0;
      try {
        for (const c of golden.cases) {
          const a = await promptLogits(fromFile, c.prompt_ids);
          const b = await promptLogits(loadTime, c.prompt_ids);
          same = Math.max(same, maxAbsDiff(a, b) / maxAbs(b));
        }
      } finally {
        fromFile.close();
        loadTime.close();
      }
      console.log(`  ${name}: GGUF f32 vs HF ${err.toExponential(2)}, GGUF Q8_0 vs load-time Q8_0 ${same.toExponential(2)}`);
      assert(err <= 1e-4, `${name}: GGUF logits relative error ${err}`);
      // Qwen3.5's file tiles the value heads (out_proj sums its inputs in another order) and
      // stores -exp(A_log) (an f32 round trip): rounding, three orders below a wrong head.
      const sameTol = (HYBRID_MODEL_NAMES as readonly string[]).includes(name) ? 1e-5 : 1e-6;
      assert(same <= sameTol, `${name}: GGUF Q8_0 and load-time Q8_0 differ by ${same}`);
    });
  });
}

// The MoE families (llama.cpp's qwen3moe / gpt-oss: stacked ffn_*_exps experts, gpt-oss's
// gate/up split apart, biases, sinks, YaRN metadata, MXFP4 experts as GGML MXFP4 blocks):
// the converted file holds the checkpoint's values exactly, so it gives the safetensors
// load's logits bit for bit, and those match transformers (the MXFP4 file its own goldens).
// `convert --quantization` writes float experts as the load-time Q8_0 / Q4_0 blocks, which the
// loader packs as they are: the same expert weights on the GPU, so the same logits bit for
// bit, in both kernel families (MXFP4 experts stay MXFP4 both ways).
for (const name of MOE_MODEL_NAMES) {
  sharedTest(`gguf reference ${name}: the converted MoE file gives the checkpoint's logits and matches transformers; Q8_0 / Q4_0 from GGUF equal load-time Q8_0 / Q4_0, both kernel families`, async () => {
    await withTempDir(async (dir) => {
      await convertToGguf(modelDir(name), `${dir}/f.gguf`);
      for (const q of QUANTS) await convertToGguf(modelDir(name), `${dir}/${q}.gguf`, { quantization: q });
      const golden = await loadGolden(name);
      const gpu = await sharedGpu();
      const fromFile = await ModelRunner.load(`${dir}/f.gguf`, { ...OPTS, gpu });
      const checkpoint = await ModelRunner.load(modelDir(name), { ...OPTS, gpu });
      let sameF32 = 0;
      let err = 0;
      try {
        assert(fromFile.spec.moe?.experts === checkpoint.spec.moe?.experts && !!fromFile.spec.moe?.mxfp4 === !!checkpoint.spec.moe?.mxfp4, `${name}: the GGUF spec lost the experts`);
        err = await worstRelativeError(fromFile, golden.cases);
        for (const c of golden.cases) {
          const a = await promptLogits(fromFile, c.prompt_ids);
          const b = await promptLogits(checkpoint, c.prompt_ids);
          sameF32 = Math.max(sameF32, maxAbsDiff(a, b) / maxAbs(b));
        }
      } finally {
        fromFile.close();
        checkpoint.close();
      }
      console.log(`  ${name}: GGUF vs HF ${err.toExponential(2)}, GGUF vs safetensors ${sameF32.toExponential(2)}`);
      assert(err <= 1e-4, `${name}: GGUF logits relative error ${err}`);
      assert(sameF32 === 0, `${name}: GGUF and safetensors logits differ by ${sameF32}`);
      for (const kernelFamily of KERNEL_FAMILIES) {
        for (const q of QUANTS) {
          const qFile = await ModelRunner.load(`${dir}/${q}.gguf`, { ...OPTS, kernelFamily, gpu });
          const qLoad = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, gpu, quantization: q });
          let same = 0;
          try {
            const expertTypes = (r: ModelRunner) => r.weights.layers.filter((l) => l.moe).map((l) => `${l.moe!.dtype}/${l.moe!.layout}`);
            const want = `${name.includes("mxfp4") ? "mxfp4" : q}/column_blocks`;
            assertEquals(expertTypes(qFile), expertTypes(qLoad).map(() => want), `${name} ${kernelFamily} ${q}: experts from the file`);
            assertEquals(expertTypes(qLoad), expertTypes(qFile), `${name} ${kernelFamily} ${q}: experts at load time`);
            for (const c of golden.cases) {
              const a = await promptLogits(qFile, c.prompt_ids);
              const b = await promptLogits(qLoad, c.prompt_ids);
              same = Math.max(same, maxAbsDiff(a, b) / maxAbs(b));
            }
          } finally {
            qFile.close();
            qLoad.close();
          }
          console.log(`  ${name} ${kernelFamily}: GGUF ${q} vs load-time ${q} ${same.toExponential(2)}`);
          assert(same === 0, `${name} ${kernelFamily}: GGUF ${q} and load-time ${q} differ by ${same}`);
        }
      }
    });
  });
}
