/**
 * Shapes the reference models do not cover, on synthetic checkpoints: sharded files, f16
 * rows whose length is not a multiple of 8 (the scalar matmul path), and a biased matrix
 * split across bindings.
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { createGpu } from "../src/gpu/device.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { maxAbs, maxAbsDiff, promptLogits } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const IDS = [1, 403, 407, 261, 378, 432, 383, 286];

function logits(runner: ModelRunner, ids = IDS): Promise<Float32Array> {
  return promptLogits(runner, ids);
}

const SMALL = { maxTokens: 8, maxLogitRows: 8, maxSeqs: 1, numBlocks: 8 };

test("synthetic: a sharded checkpoint loads to the same logits as a single file", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(`${dir}/one`, {}, { seed: 3 });
    await writeSyntheticCheckpoint(`${dir}/sharded`, {}, { seed: 3, sharded: 3 });
    const one = await ModelRunner.load(`${dir}/one`, SMALL);
    const sharded = await ModelRunner.load(`${dir}/sharded`, { ...SMALL, gpu: one.gpu });
    try {
      const a = await logits(one);
      assert(maxAbs(a) > 0, "logits are all zero");
      assertEquals(maxAbsDiff(a, await logits(sharded)), 0);
    } finally {
      one.close();
      sharded.close();
    }
  });
});

test("synthetic: f16 rows not a multiple of 8 (scalar path) match f32 storage", async () => {
  await withTempDir(async (dir) => {
    // hidden 48 / 4 heads = head_dim 12; intermediate 44: down_proj rows have 44 halves.
    await writeSyntheticCheckpoint(dir, { hidden_size: 48, intermediate_size: 44 }, { dtype: "F16", seed: 5 });
    const f16 = await ModelRunner.load(dir, { ...SMALL, weightDType: "f16" });
    const f32 = await ModelRunner.load(dir, { ...SMALL, weightDType: "f32", gpu: f16.gpu });
    try {
      assertEquals(f16.weights.layers[0].down!.dtype, "f16");
      const a = await logits(f16);
      const b = await logits(f32);
      assert(maxAbsDiff(a, b) <= 1e-6 * maxAbs(b), `f16 vs f32 storage: ${maxAbsDiff(a, b)}`);
    } finally {
      f16.close();
      f32.close();
    }
  });
});

test("synthetic: a biased q|k|v matrix split over bindings keeps its bias slices", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, {
      architectures: ["Qwen2ForCausalLM"],
      model_type: "qwen2",
      hidden_size: 64,
      intermediate_size: 128,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
    }, { seed: 9, std: 0.1 });
    const whole = await ModelRunner.load(dir, SMALL);
    // q|k|v is 128 rows x 64 f32 = 32 KiB: a 16 KiB binding holds 64 rows per part.
    const small = await createGpu({ maxStorageBindingBytes: 16 << 10 });
    const split = await ModelRunner.load(dir, { ...SMALL, gpu: small });
    try {
      assertEquals(split.weights.layers[0].qkv.parts.length, 2);
      assert(split.weights.layers[0].qkvBias !== null);
      assertEquals(maxAbsDiff(await logits(whole), await logits(split)), 0);
    } finally {
      whole.close();
      split.close();
    }
  });
});
