/**
 * K-quant experts from GGUF: a Q4_K_M-like mixture-of-experts file (Q4_K expert gate/up and
 * q/k/o, Q6_K expert down and v; routers, norms, embeddings f32) written by `convert
 * --quantization q4_k_m` (convertToGguf), loaded with its experts transcoded at upload (Q4_K -> Q4X, Q6_K -> Q8X, as
 * the dense K-quant matrices are) and run by the quantized expert kernels of both families.
 *
 * Reference: the same file's tensors as our GGUF reader serves them, dequantized to f32
 * (ggml's values) and written as a safetensors checkpoint, run by the f32 path: held to 1e-5
 * of the largest logit (the dense K-quant test's bound, tests/kquant_forward_test.ts). A
 * control: the unquantized checkpoint the file was made from must be far from it (the experts
 * really compute on K-quant blocks). The fixtures' widths (hidden 128, expert 64) are no
 * multiples of 256, so the checkpoints are synthetic (hidden 256, expert width 256).
 */
import { shared, sharedTest } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { KQUANT_GPT_OSS, KQUANT_PROMPTS, KQUANT_QWEN3_MOE, writeDequantized } from "./helpers/kquant_moe.ts";
import { maxAbs, maxAbsDiff, promptLogits } from "./helpers/reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { createGpu } from "../src/gpu/device.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";

const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

const TOL = 1e-5;
const OPTS = { maxTokens: 64, maxLogitRows: 64, maxSeqs: 1, blockSize: 16, numBlocks: 8, weightDType: "f32", kvDtype: "f32" } as const;

for (const [model, config] of [["qwen3moe", KQUANT_QWEN3_MOE], ["gpt-oss", KQUANT_GPT_OSS]] as const) {
  sharedTest(`K-quant MoE GGUF (${model}, Q4_K gate/up + Q6_K down experts): transcoded experts give the file's dequantized weights' logits on both families`, async () => {
    await withTempDir(async (dir) => {
      await writeSyntheticCheckpoint(`${dir}/ck`, config, { seed: 7 });
      const file = `${dir}/model-q4_k_m.gguf`;
      await convertToGguf(`${dir}/ck`, file, { quantization: "q4_k_m" });
      const types = (await readGgufHeader(file)).tensors;
      const type = (n: string) => types.get(`blk.1.${n}.weight`)?.type.name;
      assertEquals(["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "attn_q", "attn_v", "ffn_gate_inp"].map(type), ["Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q6_K", "F32"]);
      await writeDequantized(file, `${dir}/ck`, `${dir}/ref`);
      const gpu = await sharedGpu();
      for (const kernelFamily of KERNEL_FAMILIES) {
        const ref = await ModelRunner.load(`${dir}/ref`, { ...OPTS, gpu, kernelFamily });
        const orig = await ModelRunner.load(`${dir}/ck`, { ...OPTS, gpu, kernelFamily });
        const got = await ModelRunner.load(file, { ...OPTS, gpu, kernelFamily });
        try {
          // Experts: Q4_K gate|up as Q4X, Q6_K down as Q8X, quantized column blocks on both families.
          for (const l of got.weights.layers) assertEquals([l.moe?.dtype, l.moe?.downDtype, l.moe?.layout], ["q4x", "q8x", "column_blocks"]);
          // Bytes of one expert: gate|up 2 x 256 x 256 weights at 24 bytes per 32, down 256 x 256 at 44.
          assertEquals(got.weights.layers[0].moe!.expertBytes, (2 * 256 * 256 / 32) * 24 + (256 * 256 / 32) * 44);
          assertEquals(ref.weights.layers[0].moe!.dtype, "f32");
          for (const ids of KQUANT_PROMPTS) {
            const want = await promptLogits(ref, ids);
            const logits = await promptLogits(got, ids);
            const e = maxAbsDiff(logits, want) / maxAbs(want);
            const q = maxAbsDiff(await promptLogits(orig, ids), want) / maxAbs(want);
            console.log(`  ${model} ${kernelFamily} ${ids.length} tokens: ${e.toExponential(2)} of the largest logit from the dequantized file (unquantized checkpoint: ${q.toExponential(2)})`);
            assert(e <= TOL, `${model} ${kernelFamily} ${ids.length} tokens: ${e} > ${TOL}`);
            assert(q > 100 * TOL, `the unquantized checkpoint is ${q} from the dequantized file: the blocks made no difference?`);
          }
        } finally {
          ref.close();
          orig.close();
          got.close();
        }
      }
    });
  });
}
