/**
 * K-quant GGUF weights run in-kernel: a Q4_K_M-like file (decoder linear weights Q4_K, v and
 * down Q6_K, so q|k|v fuses mixed types) loads its linear weights as `kind: "quant"` blocks
 * (never a 16-bit copy): the all-Q4_K o and gate|up as Q4X, the mixed q|k|v and the Q6_K down
 * as Q8X; and on both kernel families its logits match the same model
 * whose safetensors checkpoint holds those blocks' dequantized values as F32 (the
 * dequantize-on-upload reference) within 1e-5 of the largest logit. The fast path
 * (`quantizedActivations`) has no Q8X / Q4X kernels: it must give the exact path's logits bit for bit
 * (checked on the CPU family only: the fallback is in the family-independent dispatch code).
 * The reference models' hidden size (128) is no multiple of 256, so the checkpoint is synthetic.
 */
import { shared, sharedTest } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { quantizeQ4K, quantizeQ6K } from "./helpers/k_quant_blocks.ts";
import { maxAbs, maxAbsDiff, promptLogits } from "./helpers/reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { createGpu } from "../src/gpu/device.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { denseMatrices, linearWeightDTypes } from "../src/model/weights.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";

// One device for the file: its pipelines, compiled once, serve every test's runners.
const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

const TOL = 1e-5;
const CONFIG = {
  hidden_size: 256,
  intermediate_size: 512,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 2,
};
const OPTS = {
  maxTokens: 64,
  maxLogitRows: 64,
  maxSeqs: 1,
  blockSize: 16,
  numBlocks: 8,
  weightDType: "f32",
  kvDtype: "f32",
} as const;
// Prefill (20 rows: the GPU family's tiled kernel) and a decode-sized prompt.
const PROMPTS = [[1, 5, 9, 44, 7, 100, 3, 250, 17, 8, 61, 2, 90, 33, 12, 400, 5, 6, 77, 301], [1, 42]];

/** Q4_K_M's choice: v and down Q6_K, the other linear weights Q4_K. */
function kType(name: string): "Q4_K" | "Q6_K" | null {
  if (!/^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name)) return null;
  return /(v_proj|down_proj)/.test(name) ? "Q6_K" : "Q4_K";
}

sharedTest("K-quant GGUF (Q4_K + Q6_K, mixed q|k|v): in-kernel Q4X / Q8X weights give the dequantized checkpoint's logits on both families", async () => {
  await withTempDir(async (dir) => {
    const blocks = new Map<string, Uint8Array>();
    // The checkpoint holds the blocks' dequantized values, the GGUF the blocks themselves.
    await writeSyntheticCheckpoint(`${dir}/ck`, CONFIG, {
      mutate: (tensors) => {
        for (const t of tensors) {
          const type = kType(t.name);
          if (!type) continue;
          const b = type === "Q4_K" ? quantizeQ4K(t.data) : quantizeQ6K(t.data);
          blocks.set(t.name, b);
          t.data = dequantize(type, b);
        }
      },
    });
    assertEquals(blocks.size, 2 * 7);
    const file = `${dir}/model-q4_k_m.gguf`;
    await convertToGguf(`${dir}/ck`, file, {
      blocks: { type: kType, encode: (name) => blocks.get(name)! },
    });
    const gpu = await sharedGpu();
    try {
      for (const kernelFamily of KERNEL_FAMILIES) {
        const ref = await ModelRunner.load(`${dir}/ck`, { ...OPTS, gpu, kernelFamily });
        const exact = await ModelRunner.load(file, { ...OPTS, gpu, kernelFamily });
        // The fast-path fallback is family-independent (quant_matmul_op.ts): checked once.
        const fast = kernelFamily === "cpu"
          ? await ModelRunner.load(file, { ...OPTS, gpu, kernelFamily, quantizedActivations: true })
          : null;
        try {
          for (const l of exact.weights.layers) {
            // All Q4_K: Q4X; Q6_K alone or mixed with Q4_K: Q8X.
            const dtypes = denseMatrices(l).map((m) => [m.kind, m.dtype]);
            assertEquals(dtypes, [["quant", "q8x"], ["quant", "q4x"], ["quant", "q4x"], ["quant", "q8x"]]);
          }
          // Linear weight bytes on the GPU: 655,360 values as Q4X (24 bytes per 32), 524,288 as
          // Q8X (44 per 32); all Q8X took 1,622,016.
          const linear = exact.weights.layers.flatMap((l) => denseMatrices(l))
            .flatMap((m) => m.parts).reduce((n, p) => n + p.buffer.size, 0);
          assertEquals(linear, (655_360 / 32) * 24 + (524_288 / 32) * 44);
          console.log(`  ${kernelFamily} linear weight bytes: ${linear}`);
          assertEquals(ref.weights.layers[0].qkv.kind, "dense");
          // What engine info reports.
          assertEquals(linearWeightDTypes(exact.weights), ["q8x", "q4x"]);
          assertEquals(linearWeightDTypes(ref.weights), ["f32"]);
          for (const ids of PROMPTS) {
            const want = await promptLogits(ref, ids);
            const got = await promptLogits(exact, ids);
            const e = maxAbsDiff(got, want) / maxAbs(want);
            console.log(`  ${kernelFamily} ${ids.length} tokens: ${e.toExponential(2)} of the largest logit`);
            assert(e <= TOL, `${kernelFamily} ${ids.length} tokens: ${e} > ${TOL}`);
            if (fast) assertEquals(maxAbsDiff(await promptLogits(fast, ids), got), 0, "fast path on Q4X / Q8X");
          }
          console.log(`  ${kernelFamily} weight bytes: q4x/q8x GGUF ${exact.weights.bytes}, f32 ${ref.weights.bytes}`);
        } finally {
          ref.close();
          exact.close();
          fast?.close();
        }
      }
    } finally {
      // The file's shared device is destroyed after its last test.
    }
  });
});

// Qwen3.5 (hybrid): 3 Gated DeltaNet layers + 1 gated attention layer, every input size a
// multiple of 256. Key and value heads are equal in number, so llama.cpp's tiled value-head
// order is the identity and the blocks made from the checkpoint's rows are the file's
// (the tiled order is checked at Q8_0 in gguf_reference_test.ts).
const Q35_CONFIG = {
  architectures: ["Qwen3_5ForCausalLM"],
  model_type: "qwen3_5_text",
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  layer_types: ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
  linear_num_key_heads: 4,
  linear_num_value_heads: 4,
  linear_key_head_dim: 64,
  linear_value_head_dim: 64,
  linear_conv_kernel_dim: 4,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  rope_parameters: { rope_type: "default", rope_theta: 1e7, partial_rotary_factor: 0.25, mrope_section: [2, 1, 1] },
};

/** Q4_K_M's choice on Qwen3.5: v and down Q6_K, every other decoder linear (DeltaNet in/out, gated q) Q4_K. */
function q35KType(name: string): "Q4_K" | "Q6_K" | null {
  if (!/^model\.layers\.\d+\.(self_attn\.\w+_proj|linear_attn\.(in_proj_\w+|out_proj)|mlp\.\w+_proj)\.weight$/.test(name)) return null;
  return /(v_proj|down_proj)/.test(name) ? "Q6_K" : "Q4_K";
}

sharedTest("K-quant GGUF Qwen3.5 (Q4_K + Q6_K): the DeltaNet in/out projections and the gated q are stored and run as K-quant blocks and give the dequantized checkpoint's logits on both families", async () => {
  await withTempDir(async (dir) => {
    const blocks = new Map<string, Uint8Array>();
    await writeSyntheticCheckpoint(`${dir}/ck`, Q35_CONFIG, {
      mutate: (tensors) => {
        for (const t of tensors) {
          // The gated norm is plain w (not 1 + w): near 1, so the DeltaNet output weighs in the logits.
          if (t.name.endsWith("linear_attn.norm.weight")) t.data = t.data.map((w) => Math.fround(1 + w));
          const type = q35KType(t.name);
          if (!type) continue;
          const b = type === "Q4_K" ? quantizeQ4K(t.data) : quantizeQ6K(t.data);
          blocks.set(t.name, b);
          t.data = dequantize(type, b);
        }
      },
    });
    // 3 DeltaNet layers x (qkv, z, a, b, out) + 1 attention layer x (q, k, v, o) + 4 x (gate, up, down).
    assertEquals(blocks.size, 3 * 5 + 4 + 4 * 3);
    const file = `${dir}/model-q4_k_m.gguf`;
    await convertToGguf(`${dir}/ck`, file, { blocks: { type: q35KType, encode: (name) => blocks.get(name)! } });
    // The file's types, under llama.cpp's qwen35 names.
    const types = (await readGgufHeader(file)).tensors;
    const type = (n: string) => types.get(n)?.type.name;
    assertEquals(
      ["attn_qkv", "attn_gate", "ssm_alpha", "ssm_beta", "ssm_out", "ffn_down"].map((n) => type(`blk.0.${n}.weight`)),
      ["Q4_K", "Q4_K", "Q4_K", "Q4_K", "Q4_K", "Q6_K"],
    );
    assertEquals(["attn_q", "attn_k", "attn_v", "attn_output"].map((n) => type(`blk.3.${n}.weight`)), ["Q4_K", "Q4_K", "Q6_K", "Q4_K"]);
    assertEquals(["ssm_conv1d.weight", "ssm_a", "ssm_norm.weight"].map((n) => type(`blk.0.${n}`)), ["F32", "F32", "F32"]);
    const gpu = await sharedGpu();
    for (const kernelFamily of KERNEL_FAMILIES) {
      const ref = await ModelRunner.load(`${dir}/ck`, { ...OPTS, gpu, kernelFamily });
      const exact = await ModelRunner.load(file, { ...OPTS, gpu, kernelFamily });
      try {
        // DeltaNet layers: in-projection qkv|z|b|a all Q4_K (Q4X), out_proj Q4X; the attention
        // layer's q|k|v|gate mixes in the Q6_K v (Q8X); down Q6_K (Q8X).
        const dtypes = exact.weights.layers.map((l) => denseMatrices(l).map((m) => `${m.kind}/${m.dtype}`).join(" "));
        assertEquals(dtypes, [
          ...Array(3).fill("quant/q4x quant/q4x quant/q4x quant/q8x"),
          "quant/q8x quant/q4x quant/q4x quant/q8x",
        ]);
        assertEquals(exact.weights.layers.map((l) => l.linear !== null), [true, true, true, false]);
        for (const ids of PROMPTS) {
          const want = await promptLogits(ref, ids);
          const got = await promptLogits(exact, ids);
          const e = maxAbsDiff(got, want) / maxAbs(want);
          console.log(`  ${kernelFamily} qwen35 ${ids.length} tokens: ${e.toExponential(2)} of the largest logit`);
          assert(e <= TOL, `qwen35 ${kernelFamily} ${ids.length} tokens: ${e} > ${TOL}`);
        }
      } finally {
        ref.close();
        exact.close();
      }
    }
  });
});
