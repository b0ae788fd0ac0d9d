/**
 * Properties of the forward pass beyond numerics, for every kernel family: nothing is created
 * per step, one submit per step, tensors above the binding limit split without changing a
 * bit, f16 storage of a bf16 checkpoint equal to f32 storage, the dispatches a decode step
 * records per architecture, and a clear error without an adapter.
 */
import { shared, sharedTest, test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { Engine } from "../src/engine/engine.ts";
import { createGpu, NoGpuAdapterError } from "../src/gpu/device.ts";
import { countGpuCalls } from "./helpers/gpu_counts.ts";
import {
  greedyIds,
  loadGolden,
  maxAbs,
  maxAbsDiff,
  modelDir,
  promptLogits,
} from "./helpers/reference.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";

// One device for the file: its pipelines, compiled once, serve every test's runners.
const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

for (const kernelFamily of KERNEL_FAMILIES) {
  test(`forward ${kernelFamily}: steps create no pipelines or bind groups and submit once each`, async () => {
    const engine = await Engine.load({
      model: modelDir("gemma2-tiny"),
      maxBatchTokens: 32,
      numBlocks: 32,
      kernelFamily,
    });
    try {
      const { result: ids, counts } = await countGpuCalls(
        engine.runner.gpu.device,
        () => greedyIds(engine, [1, 403, 407, 261, 378], 10),
      );
      assertEquals(ids.length, 10);
      // One prefill step and nine decode steps.
      assertEquals(counts, { pipelines: 0, bindGroups: 0, buffers: 0, submits: 10 });
    } finally {
      await engine.close();
    }
  });

  sharedTest(`forward ${kernelFamily}: matrices split over a small binding limit give identical logits`, async () => {
    const golden = await loadGolden("gemma2-tiny");
    const ids = golden.cases[1].prompt_ids.slice(0, 16);
    const opts = { maxTokens: 16, maxLogitRows: 16, maxSeqs: 2, numBlocks: 16, kernelFamily };
    const whole = await ModelRunner.load(modelDir("gemma2-tiny"), { ...opts, gpu: await sharedGpu() });
    // 64 KiB splits the 128 KiB embedding/LM head in two and gate|up (192 KiB) in three.
    const small = await createGpu({ maxStorageBindingBytes: 64 << 10 });
    const split = await ModelRunner.load(modelDir("gemma2-tiny"), { ...opts, gpu: small });
    try {
      assertEquals(whole.weights.embed.parts.length, 1);
      assert(split.weights.embed.parts.length >= 2, "embedding was not split");
      assert(split.weights.layers[0].gateUp!.parts.length >= 2, "gate_up was not split");
      const a = await promptLogits(whole, ids);
      const b = await promptLogits(split, ids);
      assertEquals(maxAbsDiff(a, b), 0);
    } finally {
      whole.close();
      split.close();
    }
  });

  sharedTest(`forward ${kernelFamily}: a bf16 checkpoint stored as f16 matches f32 storage`, async () => {
    const golden = await loadGolden("llama-tiny");
    const ids = golden.cases[2].prompt_ids;
    // An f32 KV cache: f16 rounding of K and V would magnify the last-bit differences.
    const opts = {
      maxTokens: 128,
      maxLogitRows: 128,
      numBlocks: 16,
      kvDtype: "f32",
      kernelFamily,
    } as const;
    const f16 = await ModelRunner.load(modelDir("llama-tiny"), { ...opts, weightDType: "f16", gpu: await sharedGpu() });
    const f32 = await ModelRunner.load(modelDir("llama-tiny"), {
      ...opts,
      weightDType: "f32",
      gpu: f16.gpu,
    });
    try {
      assertEquals(f16.weights.layers[0].qkv.dtype, "f16");
      assertEquals(f32.weights.layers[0].qkv.dtype, "f32");
      assert(f16.weights.bytes < f32.weights.bytes * 0.6, "f16 storage should halve matrix bytes");
      const a = await promptLogits(f16, ids);
      const b = await promptLogits(f32, ids);
      const rel = maxAbsDiff(a, b) / maxAbs(b);
      assert(rel < 1e-6, `f16 vs f32 storage differ by ${rel}`);
    } finally {
      f16.close();
      f32.close();
    }
  });
}

test("gpu: no adapter gives an error that says how to get one", async () => {
  const noAdapter = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  const err = await assertRejects(() => createGpu({ gpu: noAdapter }), NoGpuAdapterError);
  assert(err.message.includes("mesa-vulkan-drivers"), err.message);
});

/** Dispatches one decode step records (forward pass + sampler) at `context`. */
function decodeDispatches(runner: ModelRunner, seqs: number, context: number): number {
  return runner.forward.plan({
    tokens: seqs,
    logitRows: seqs,
    seqs,
    maxQueryLen: 1,
    maxContext: context,
  }).length + 1;
}

sharedTest("forward: dispatches per decode step (<= 5 per layer + 4 for llama/mistral/qwen2), per architecture", async () => {
  // [model, per layer]: Qwen3's q/k norm runs RoPE as its own dispatch; Gemma-2's two
  // sandwich norms each need a matmul's whole output row.
  const cases: [string, number][] = [
    ["llama-tiny", 5],
    ["mistral-tiny", 5],
    ["qwen2-tiny", 5],
    ["stories260K", 5],
    ["qwen3-tiny", 6],
    ["gemma2-tiny", 7],
  ];
  const gpu = await sharedGpu();
  try {
    for (const [name, perLayer] of cases) {
      for (const kernelFamily of KERNEL_FAMILIES) {
        const runner = await ModelRunner.load(modelDir(name), {
          gpu,
          kernelFamily,
          maxSeqs: 8,
          numBlocks: 64,
          attentionSplit: 256,
        });
        try {
          const L = runner.spec.numLayers;
          // embed, L x perLayer, LM head, sampler: 5L + 3 <= 5L + 4.
          for (const seqs of [1, 8]) {
            assertEquals(
              decodeDispatches(runner, seqs, 200),
              perLayer * L + 3,
              `${name} ${kernelFamily}`,
            );
          }
          // Past one split of keys, every layer adds the combine.
          assertEquals(
            decodeDispatches(runner, 1, 600),
            (perLayer + 1) * L + 3,
            `${name} ${kernelFamily} split`,
          );
          // A step with no logit rows skips the LM head.
          const shape = { tokens: 4, logitRows: 0, seqs: 1, maxQueryLen: 4, maxContext: 4 };
          assert(
            !runner.forward.plan(shape).some((d) => d.label.startsWith("lm_head")),
            "LM head ran without logit rows",
          );
        } finally {
          runner.close();
        }
      }
    }
  } finally {
    // The file's shared device is destroyed after its last test.
  }
});
