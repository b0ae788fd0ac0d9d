/**
 * Qwen3.5 (hybrid) vs dense: a Qwen3.5-0.8B-shaped synthetic model (hidden 1024, 24 layers:
 * 18 Gated DeltaNet + 6 gated attention, 8 heads of 256 / 2 KV heads, DeltaNet 16 key and
 * 16 value heads of 128, intermediate 3584) next to a dense model of the same dims with
 * attention on every layer (Qwen3 layout), both f16 with a 32768-token vocabulary (the real
 * 248k vocabulary's LM head would dominate every figure here). Measures the forward pass
 * only (no sampling): a decode step at context 128 .. 4096 for one stream, a decode step of
 * 8 streams at context 128, and a prefill chunk (the hybrid with each form of the delta rule:
 * the in-kernel sequential scan and the chunkwise WY form; decode steps take the scan in
 * both). A decode step at context C only needs C
 * entries in the cache and a state in the slot, so the KV cache is left as allocated (the
 * values do not change the work) and steps are timed REPS at a time with one GPU wait, the
 * fastest of RUNS such batches (prefill: one step per run).
 *
 * llama.cpp on the same weights: each model is converted to GGUF (`convert`, f16) and run by
 * node-llama-cpp's prebuilt CPU binary (its bundled llama.cpp knows `qwen35`), 2 threads:
 * a 127-token prompt (prefill tok/s), then LLAMA_DECODE greedy tokens one at a time (decode
 * tok/s, the same context as our decode step at 128; llama.cpp samples, our figure does not).
 * `--no-llama-cpp` skips it; where node-llama-cpp cannot load, the result says why.
 *
 *   deno run -A bench/hybrid.ts [--out FILE.json] [--quick] [--delta-form scan|chunked|both] [--no-llama-cpp]
 *     [--prefill N] [--prefill-only]
 *
 * `--prefill-only` times the hybrid's prefill only (an A/B of the delta-rule forms).
 * @module
 */
import { ModelRunner } from "../src/runner/model_runner.ts";
import { DEFAULT_DELTA_RULE_FORM, DELTA_RULE_FORMS, type DeltaRuleForm } from "../src/runner/forward.ts";
import { buildStepBatch, shapeOf, type SequenceChunk } from "../src/runner/step_meta.ts";
import { writeSyntheticModel } from "./synthetic_model.ts";
import { args as cliArgs, makeTempDir, remove, writeFile } from "../src/runtime/runtime.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { loadLlamaCpp } from "./peer_llama_cpp.ts";
import type { Llama, Token } from "node-llama-cpp";

const ROOT = new URL("..", import.meta.url).pathname;
const args = cliArgs();
const quick = args.includes("--quick");
const out = args.includes("--out") ? args[args.indexOf("--out") + 1] : null;
const formArg = args.includes("--delta-form") ? args[args.indexOf("--delta-form") + 1] : "both";
if (formArg !== "both" && !DELTA_RULE_FORMS.includes(formArg as DeltaRuleForm)) throw new Error(`--delta-form: scan, chunked or both, not ${formArg}`);
/** The hybrid's forms for prefill; the first (the default where timed) also times decode. */
const FORMS: DeltaRuleForm[] = formArg === "both"
  ? [DEFAULT_DELTA_RULE_FORM, ...DELTA_RULE_FORMS.filter((f) => f !== DEFAULT_DELTA_RULE_FORM)]
  : [formArg as DeltaRuleForm];
const prefillOnly = args.includes("--prefill-only");
const withLlamaCpp = !args.includes("--no-llama-cpp");

const COMMON = {
  hidden_size: 1024,
  intermediate_size: 3584,
  num_hidden_layers: 24,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  head_dim: 256,
  vocab_size: 32768,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
  torch_dtype: "float16",
};
const HYBRID = {
  ...COMMON,
  architectures: ["Qwen3_5ForCausalLM"],
  model_type: "qwen3_5_text",
  layer_types: Array.from({ length: 24 }, (_, i) => ((i + 1) % 4 === 0 ? "full_attention" : "linear_attention")),
  linear_num_key_heads: 16,
  linear_num_value_heads: 16,
  linear_key_head_dim: 128,
  linear_value_head_dim: 128,
  linear_conv_kernel_dim: 4,
  rope_parameters: { rope_type: "default", rope_theta: 1e7, partial_rotary_factor: 0.25 },
};
const DENSE = { ...COMMON, architectures: ["Qwen3ForCausalLM"], model_type: "qwen3", rope_theta: 1e7 };

const CONTEXTS = quick ? [128, 1024] : [128, 1024, 4096];
const REPS = 2;
/** Each figure is the fastest of this many timed runs (the machine is shared: noise only adds). */
const RUNS = quick ? 2 : 3;
const PREFILL = args.includes("--prefill") ? Number(args[args.indexOf("--prefill") + 1]) : 32;

const LLAMA_DECODE = quick ? 8 : 16;

/** llama.cpp's figures on the GGUF of `dir`, or why there are none. */
type LlamaCppFigures = { prefillTokPerS: number; decodeTokPerS: number; ggufBytes: number; fileType: string } | { skipped: string };

async function measureLlamaCpp(llama: Llama | string, dir: string): Promise<LlamaCppFigures> {
  if (typeof llama === "string") return { skipped: llama };
  const gguf = `${dir}/model.gguf`;
  const conversion = await convertToGguf(dir, gguf);
  try {
    const model = await llama.loadModel({ modelPath: gguf });
    const context = await model.createContext({ contextSize: 256, threads: 2, batchSize: 512 });
    try {
      const seq = context.getSequence();
      const prompt = Array.from({ length: 127 }, (_, i) => (3 + (i % 200)) as Token);
      const t0 = performance.now();
      let first = 0;
      let n = 0;
      for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
        if (n++ === 0) first = performance.now();
        if (n >= LLAMA_DECODE + 1) break;
      }
      const end = performance.now();
      return { prefillTokPerS: prompt.length / ((first - t0) / 1000), decodeTokPerS: LLAMA_DECODE / ((end - first) / 1000), ggufBytes: conversion.bytes, fileType: conversion.fileType };
    } finally {
      await context.dispose();
      await model.dispose();
    }
  } finally {
    await remove(gguf);
  }
}

async function measure(name: string, config: Record<string, unknown>, forms: (DeltaRuleForm | undefined)[], llama: Llama | string) {
  const dir = await makeTempDir(`bench-${name}-`);
  try {
    const bytes = await writeSyntheticModel(dir, { tokenizerDir: `${ROOT}tests/fixtures/models/stories260K`, config });
    const maxContext = Math.max(...CONTEXTS, PREFILL);
    const bs = 16;
    const table = (s: number, ctx: number) => Array.from({ length: Math.ceil(ctx / bs) }, (_, i) => s * (maxContext / bs) + i);
    // One runner per form, loaded side by side: their prefill runs alternate, so the shared
    // machine's load swings hit every form alike.
    const runners: ModelRunner[] = [];
    for (const form of forms) {
      runners.push(await ModelRunner.load(dir, { maxTokens: Math.max(PREFILL, 8), maxSeqs: 8, maxLogitRows: 8, blockSize: 16, numBlocks: 8 * (maxContext / 16) + 8, maxContext, kvDtype: "f16", deltaRuleForm: form }));
    }
    /** Encodes `chunks` as one step; returns a function timing `n` of them in one submission, ms each. */
    const timer = (runner: ModelRunner, chunks: SequenceChunk[]) => {
      const device = runner.gpu.device;
      const batch = buildStepBatch(chunks, bs);
      const offset = runner.writeStep(batch);
      return async (n: number) => {
        const enc = device.createCommandEncoder();
        for (let i = 0; i < n; i++) {
          const pass = enc.beginComputePass();
          runner.forward.encode(pass, offset, shapeOf(batch));
          pass.end();
        }
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / n;
      };
    };
    const fastest = async (run: (n: number) => Promise<number>, reps: number) => {
      await run(1);
      let best = Infinity;
      for (let r = 0; r < RUNS; r++) best = Math.min(best, await run(reps));
      return best;
    };
    const label = (f: number) => (forms[f] ? `${name} (${forms[f]})` : name);
    let result: Record<string, unknown> = { name, checkpointBytes: bytes };
    const runner = runners[0];
    if (!prefillOnly) {
      const decode: Record<number, number> = {};
      for (const ctx of CONTEXTS) {
        decode[ctx] = await fastest(timer(runner, [{ tokens: [5], start: ctx - 1, blockTable: table(0, ctx), logits: "last", stateSlot: 0 }]), REPS);
        console.log(`${label(0)}: decode 1 stream @${ctx}: ${decode[ctx].toFixed(1)} ms`);
      }
      const eight = await fastest(timer(runner, Array.from({ length: 8 }, (_, s) => ({ tokens: [5], start: 127, blockTable: table(s, 128), logits: "last" as const, stateSlot: s }))), REPS);
      console.log(`${label(0)}: decode 8 streams @128: ${eight.toFixed(1)} ms`);
      result = {
        ...result,
        weightBytes: runner.weights.bytes,
        kvBytes: runner.cache.bytes,
        stateBytes: runner.state?.bytes ?? 0,
        decodeMs: decode,
        decode8Ms: eight,
        decode8TokPerS: 8000 / eight,
        scaling: decode[CONTEXTS.at(-1)!] / decode[CONTEXTS[0]],
      };
    }
    // Prefill of one sequence: per form the fastest of RUNS single steps (after an untimed
    // one that compiles and warms), the forms taking turns.
    const chunk: SequenceChunk = { tokens: Array.from({ length: PREFILL }, (_, i) => 3 + (i % 200)), start: 0, blockTable: table(0, PREFILL), logits: "last", stateSlot: 0 };
    const runs = runners.map((r) => timer(r, [chunk]));
    for (const run of runs) await run(1);
    const best = runs.map(() => Infinity);
    for (let r = 0; r < RUNS; r++) {
      // Each round the other form goes first.
      const order = runs.map((_, f) => f);
      if (r % 2) order.reverse();
      for (const f of order) best[f] = Math.min(best[f], await runs[f](1));
    }
    const prefillByForm: Record<string, number> = {};
    best.forEach((ms, f) => {
      const tokPerS = PREFILL / ms * 1000;
      console.log(`${label(f)}: prefill ${PREFILL} tokens: ${ms.toFixed(0)} ms (${tokPerS.toFixed(2)} tok/s)`);
      if (f === 0) result.prefillTokPerS = tokPerS;
      if (forms[f]) prefillByForm[forms[f]!] = tokPerS;
    });
    if (forms[0]) result.prefillTokPerSByDeltaForm = prefillByForm;
    for (const r of runners) {
      r.close();
      r.gpu.device.destroy();
    }
    if (prefillOnly) return result;
    const decode128 = (result.decodeMs as Record<number, number>)[128];
    const llamaCpp = await measureLlamaCpp(llama, dir);
    console.log(`${name}: llama.cpp ${"skipped" in llamaCpp ? `not run: ${llamaCpp.skipped}` : `prefill ${llamaCpp.prefillTokPerS.toFixed(1)} tok/s, decode ${llamaCpp.decodeTokPerS.toFixed(2)} tok/s (ours: decode ${(1000 / decode128).toFixed(2)} tok/s at context 128)`}`);
    return { ...result, llamaCpp };
  } finally {
    await remove(dir);
  }
}

let llama: Llama | string = "--no-llama-cpp";
if (withLlamaCpp && !prefillOnly) {
  try {
    llama = await loadLlamaCpp();
  } catch (e) {
    llama = (e as Error).message;
  }
}
let results;
try {
  results = {
    date: new Date().toISOString(),
    prefillTokens: PREFILL,
    hybrid: await measure("qwen35-0.8B-shaped", HYBRID, FORMS, llama),
    dense: prefillOnly ? null : await measure("dense-same-dims", DENSE, [undefined], llama),
  };
} finally {
  if (typeof llama !== "string") await llama.dispose();
}
console.log(JSON.stringify(results, null, 2));
if (out) await writeFile(out, JSON.stringify(results, null, 2) + "\n");
