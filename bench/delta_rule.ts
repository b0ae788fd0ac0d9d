/**
 * The delta-rule op alone, scan vs chunkwise (WY) form: a 4-layer model with Qwen3.5-0.8B's
 * DeltaNet shapes (3 DeltaNet layers of 16 + 16 heads of 128, one gated attention layer),
 * one prefill step of N tokens for one sequence, every op in its own timestamped pass; prints
 * the GPU time of the `delta_rule` ops per layer for each form (median of the iterations,
 * the two forms alternating so machine noise hits both alike) and of the whole step, both as
 * the sum of the timed passes and as one pass (as the engine encodes a step, wall time).
 *
 *   deno run -A bench/delta_rule.ts [--tokens 32,128] [--iterations 3] [--ops]
 * @module
 */
import { ModelRunner } from "../src/runner/model_runner.ts";
import { DELTA_RULE_FORMS } from "../src/runner/forward.ts";
import { buildStepBatch, shapeOf } from "../src/runner/step_meta.ts";
import { writeSyntheticModel } from "./synthetic_model.ts";
import { GpuTimer } from "./gpu_timer.ts";
import { opFamily } from "./step_profile.ts";
import { args as cliArgs, makeTempDir, remove } from "../src/runtime/runtime.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const args = cliArgs();
const arg = (name: string, fallback: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const TOKENS = arg("--tokens", "32,128").split(",").map(Number);
const ITERATIONS = Number(arg("--iterations", "3"));

const CONFIG = {
  hidden_size: 1024,
  intermediate_size: 3584,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  head_dim: 256,
  vocab_size: 32768,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  torch_dtype: "float16",
  architectures: ["Qwen3_5ForCausalLM"],
  model_type: "qwen3_5_text",
  layer_types: ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
  linear_num_key_heads: 16,
  linear_num_value_heads: 16,
  linear_key_head_dim: 128,
  linear_value_head_dim: 128,
  linear_conv_kernel_dim: 4,
  rope_parameters: { rope_type: "default", rope_theta: 1e7, partial_rotary_factor: 0.25 },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = await makeTempDir("bench-delta-rule-");
try {
  await writeSyntheticModel(dir, { tokenizerDir: `${ROOT}tests/fixtures/models/stories260K`, config: CONFIG });
  const maxTokens = Math.max(...TOKENS);
  const runners = [];
  for (const form of DELTA_RULE_FORMS) {
    runners.push({ form, runner: await ModelRunner.load(dir, { maxTokens, maxSeqs: 1, maxLogitRows: 1, blockSize: 16, numBlocks: maxTokens / 16 + 1, maxContext: maxTokens, kvDtype: "f16", deltaRuleForm: form }) });
  }
  const results: Record<string, Record<string, { deltaRuleMsPerLayer: number; stepMs: number; onePassWallMs: number }>> = {};
  for (const n of TOKENS) {
    const batch = buildStepBatch([{ tokens: Array.from({ length: n }, (_, i) => 3 + (i % 200)), start: 0, blockTable: Array.from({ length: n / 16 }, (_, i) => i), logits: "last", stateSlot: 0 }], 16);
    const shape = shapeOf(batch);
    const samples = new Map<string, { rule: number[]; step: number[]; wall: number[]; ops: Map<string, number[]> }>();
    for (let it = -1; it < ITERATIONS; it++) {
      for (const { form, runner } of runners) {
        const device = runner.gpu.device;
        const timer = new GpuTimer(device, runner.forward.plan(shape).length);
        const offset = runner.writeStep(batch);
        const enc = device.createCommandEncoder();
        const labels = runner.forward.encodeEach(enc, offset, shape, (i, label) => timer.pass(i, label));
        timer.resolve(enc, labels.length);
        device.queue.submit([enc.finish()]);
        const ns = await timer.read(labels.length);
        timer.destroy();
        // The step as one pass (as served), wall time.
        const enc1 = device.createCommandEncoder();
        const pass = enc1.beginComputePass();
        runner.forward.encode(pass, offset, shape);
        pass.end();
        const t0 = performance.now();
        device.queue.submit([enc1.finish()]);
        await device.queue.onSubmittedWorkDone();
        const wall = performance.now() - t0;
        if (it < 0) continue; // warm-up: pipelines compile on first use
        let rule = 0;
        labels.forEach((l, i) => (rule += opFamily(l) === "delta_rule" ? ns[i] : 0));
        const s = samples.get(form) ?? { rule: [], step: [], wall: [], ops: new Map<string, number[]>() };
        const byOp = new Map<string, number>();
        labels.forEach((l, i) => byOp.set(opFamily(l), (byOp.get(opFamily(l)) ?? 0) + ns[i] / 1e6));
        for (const [op, ms] of byOp) s.ops.set(op, [...(s.ops.get(op) ?? []), ms]);
        s.rule.push(rule / 1e6 / 3);
        s.step.push(ns.reduce((a, b) => a + b, 0) / 1e6);
        s.wall.push(wall);
        samples.set(form, s);
      }
    }
    results[n] = {};
    for (const [form, s] of samples) {
      results[n][form] = { deltaRuleMsPerLayer: median(s.rule), stepMs: median(s.step), onePassWallMs: median(s.wall) };
      console.log(`${n} tokens, ${form}: delta_rule ${median(s.rule).toFixed(1)} ms per layer, 4-layer step ${median(s.step).toFixed(0)} ms (ops in their own passes), ${median(s.wall).toFixed(0)} ms (one pass, wall)`);
      if (args.includes("--ops")) console.log([...s.ops].map(([op, ms]) => `${op} ${median(ms).toFixed(0)}`).join(", "));
    }
  }
  console.log(JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
  for (const { runner } of runners) runner.close();
} finally {
  await remove(dir);
}
