/**
 * K-quant experts from GGUF: a Q4_K_M-like mixture-of-experts file (Q4_K expert gate/up and
 * q/k/o, Q6_K expert down and v; routers, norms, embeddings f32) written by `convertToGguf`'s
 * block override, loaded with its experts transcoded at upload (Q4_K -> Q4X, Q6_K -> Q8X, as
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
import * as sys from "./helpers/platform.ts";
import { withTempDir, writeSafetensors, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { quantizeQ4K, quantizeQ6K } from "./helpers/k_quant_blocks.ts";
import { maxAbs, maxAbsDiff, promptLogits } from "./helpers/reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { createGpu } from "../src/gpu/device.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";
import { openModel } from "../src/model/model_source.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { valueDType } from "../src/model/safetensors.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";

const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

const TOL = 1e-5;
const OPTS = { maxTokens: 64, maxLogitRows: 64, maxSeqs: 1, blockSize: 16, numBlocks: 8, weightDType: "f32", kvDtype: "f32" } as const;
// A prefill of 20 rows (tiles of several experts) and a decode-sized prompt.
export const KQUANT_PROMPTS = [[1, 5, 9, 44, 7, 100, 3, 250, 17, 8, 61, 2, 90, 33, 12, 400, 5, 6, 77, 301], [1, 42]];

/** A Qwen3-MoE checkpoint whose every input width is a multiple of 256. */
export const KQUANT_QWEN3_MOE = {
  architectures: ["Qwen3MoeForCausalLM"],
  model_type: "qwen3_moe",
  hidden_size: 256,
  intermediate_size: 512,
  moe_intermediate_size: 256,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  norm_topk_prob: true,
  decoder_sparse_step: 1,
  mlp_only_layers: [],
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  rope_parameters: { rope_type: "default", rope_theta: 1e6 },
};

/** gpt-oss likewise (sliding then full attention, YaRN as gpt-oss-tiny). */
const KQUANT_GPT_OSS = {
  architectures: ["GptOssForCausalLM"],
  model_type: "gpt_oss",
  hidden_size: 256,
  intermediate_size: 256,
  num_local_experts: 8,
  num_experts_per_tok: 2,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  attention_bias: true,
  layer_types: ["sliding_attention", "full_attention"],
  sliding_window: 16,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  max_position_embeddings: 2048,
  rope_parameters: { rope_type: "yarn", rope_theta: 150000, factor: 32, beta_fast: 32, beta_slow: 1, original_max_position_embeddings: 64, truncate: false },
};

/** Q4_K_M's choice: v and the experts' down Q6_K, the other linear weights and experts Q4_K. */
export function q4kmType(name: string): "Q4_K" | "Q6_K" | null {
  if (!/\.(self_attn\.\w+_proj\.weight|mlp\.experts\.(\d+\.\w+_proj\.weight|gate_up_proj|down_proj))$/.test(name)) return null;
  return /(v_proj|down_proj)/.test(name) ? "Q6_K" : "Q4_K";
}

/** The block override that writes such a file (rows quantized by the tests' K-quant quantizer). */
export const Q4KM_BLOCKS = {
  type: q4kmType,
  encode: (name: string, values: Float32Array) => (q4kmType(name) === "Q4_K" ? quantizeQ4K(values) : quantizeQ6K(values)),
};

/** Writes `dir` (config and tokenizer of `from`) with every tensor of the GGUF `file` as the reader serves it, in f32. */
async function writeDequantized(file: string, from: string, dir: string): Promise<void> {
  await sys.mkdir(dir);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${from}/${f}`, `${dir}/${f}`);
  const { tensors } = await openModel(file);
  try {
    const out = [];
    for (const name of tensors.names()) {
      const info = tensors.get(name);
      // Block tensors come as their dequantized f32 values (info.dtype F32), floats as stored.
      out.push({ name, shape: info.shape, dtype: "F32" as const, data: dequantize(valueDType(info), await tensors.read(info)) });
    }
    await writeSafetensors(`${dir}/model.safetensors`, out);
  } finally {
    tensors.close();
  }
}

for (const [model, config] of [["qwen3moe", KQUANT_QWEN3_MOE], ["gpt-oss", KQUANT_GPT_OSS]] as const) {
  sharedTest(`K-quant MoE GGUF (${model}, Q4_K gate/up + Q6_K down experts): transcoded experts give the file's dequantized weights' logits on both families`, async () => {
    await withTempDir(async (dir) => {
      await writeSyntheticCheckpoint(`${dir}/ck`, config, { seed: 7 });
      const file = `${dir}/model-q4_k_m.gguf`;
      await convertToGguf(`${dir}/ck`, file, { blocks: Q4KM_BLOCKS });
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
