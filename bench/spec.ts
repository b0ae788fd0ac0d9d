/**
 * The `spec` section of `bench/main.ts`: speculative decoding (n-gram drafts) against plain
 * decoding, on stories260K: (a) a prompt that repeats a passage the greedy continuation then
 * copies, (b) free text, (c) 8 concurrent streams: tok/s with speculation off and on, their
 * ratio, tokens per verification step and the acceptance rate (greedy, so both runs make the
 * same tokens). Then the cost of a verification step per k on a model (the SmolLM2-shaped
 * one in the suite): one sequence's step with k + 1 sampled rows against a plain decode step.
 * With n-gram drafts, node-llama-cpp's prompt lookup on the same workloads as a peer
 * (bench/spec_peer.ts; skipped with a note where node-llama-cpp does not load).
 * Also standalone: `deno run -A bench/spec.ts [--model DIR] [--kernel-family cpu|gpu] [--quick]
 * [--method ngram|draft] [--draft-model DIR] [--no-peer] [--disable-by-batch-size N]` (the draft
 * model defaults to the model itself, which shows the verification machinery at ~100% acceptance,
 * not a speedup a real pair gives; `--disable-by-batch-size` also times speculation with that
 * limit, alternating with the other two engines).
 * @module
 */
import { createEngine, type EngineClient, type GenerateOptions } from "../mod.ts";
import type { KernelFamily, SpeculativeConfig } from "../src/types/api.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, shapeOf } from "../src/runner/step_meta.ts";
import { SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { percentile } from "./stats.ts";
import { renderSpec, SectionSkipped } from "./report.ts";
import { loadLlamaCpp } from "./peer_llama_cpp.ts";
import { benchSpecPeer, type SpecPeerRow } from "./spec_peer.ts";
import * as rt from "../src/runtime/runtime.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const NGRAM = { method: "ngram", numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 2 } as const;

const COPY = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat";
const FREE = "Once upon a time";
const STREAMS = [
  COPY,
  FREE,
  "The little dog ran to the park and saw a",
  "Lily and Tom were friends. They liked to play in the garden every day. One day,",
  "Tom had a big red ball. He liked to",
  "One day, a girl named Sue went to the store with her mom. She wanted to buy",
  "The sun was",
  "Ben",
];

/** One workload, speculation off and on. */
export interface SpecRow {
  workload: string;
  plainTokPerS: number;
  specTokPerS: number;
  speedup: number;
  tokensPerVerifyStep: number;
  acceptance: number;
  /** Verification steps with a draft, over every run of the workload (warm-up included). */
  verifySteps: number;
  /** With `disableByBatchSize` (see {@link SpecBenchOptions}): that engine's figures. */
  limited?: { tokPerS: number; speedup: number; verifySteps: number };
}

interface Timing {
  tokens: number;
  seconds: number;
}

async function once(engine: EngineClient, reqs: GenerateOptions[]): Promise<Timing> {
  const t0 = performance.now();
  const out = await Promise.all(reqs.map((r) => engine.generate(r)));
  return { tokens: out.reduce((n, r) => n + r.ids.length, 0), seconds: (performance.now() - t0) / 1000 };
}

/**
 * Best of `runs` runs of each engine (after a warm-up run each), alternating, so that noise on a
 * shared machine hits them alike.
 */
async function timedSet(engines: EngineClient[], reqs: GenerateOptions[], runs: number): Promise<Timing[]> {
  for (const engine of engines) await once(engine, reqs);
  const best: Timing[] = engines.map(() => ({ tokens: 0, seconds: Infinity }));
  for (let run = 0; run < runs; run++) {
    for (const [i, engine] of engines.entries()) {
      const t = await once(engine, reqs);
      if (t.seconds < best[i].seconds) best[i] = t;
    }
  }
  return best;
}

/** A verification step's cost against a plain decode step (one sequence). */
export interface VerifyCost {
  /** Drafted tokens verified (k + 1 rows; k = 0 is a plain decode step). */
  k: number;
  /** Median wall time per step with 8 steps per GPU->CPU wait, ms. */
  wallMs: number;
  /** wallMs / wallMs at k = 0. */
  ratio: number;
}

/** What the section measures. */
export interface SpecResult {
  model: string;
  /** The speculative config measured. */
  config: SpeculativeConfig;
  kernelFamily: string;
  /** Runs per engine (best of). */
  runs: number;
  rows: SpecRow[];
  /** The model the verify-step costs were measured on. */
  costModel: string;
  context: number;
  verifyCost: VerifyCost[];
  /** The third engine's `disableByBatchSize`, when one ran (see {@link SpecRow.limited}). */
  disableByBatchSize?: number;
  /** node-llama-cpp's `InputLookupTokenPredictor` on the same workloads (n-gram only). */
  llamaCpp?: SpecPeerRow[];
  /** Why the llama.cpp rows are missing (not available, or `peer: false`). */
  llamaCppNote?: string;
}

/**
 * Wall time per step of one sequence verifying k drafts (k + 1 rows, every row sampled) at
 * `context`, for k = 0..maxK: 8 steps per wait, median over `rounds`, points round-robin.
 */
export async function verifyStepCost(
  runner: ModelRunner,
  options: { maxK: number; context: number; rounds: number },
): Promise<VerifyCost[]> {
  const device = runner.gpu.device;
  const bs = runner.cache.options.blockSize;
  const points = Array.from({ length: options.maxK + 1 }, (_, k) => {
    const end = options.context + k;
    const batch = buildStepBatch([{
      tokens: Array.from({ length: k + 1 }, (_, i) => 5 + i),
      start: options.context - 1,
      blockTable: Array.from({ length: Math.ceil(end / bs) }, (_, j) => j),
      logits: "all" as const,
    }], bs);
    const rows = Array.from({ length: k + 1 }, (_, i) => ({ sampling: SAMPLING_DEFAULTS, outputIndex: i, seqSlot: 0 }));
    return { k, batch, rows, shape: shapeOf(batch), wall: [] as number[] };
  });
  const encodeStep = (p: (typeof points)[number]) => {
    const offset = runner.writeStep(p.batch, { rows: p.rows, recordBase: 0 });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    runner.forward.encode(pass, offset, p.shape);
    runner.sampler.encode(pass, offset, p.rows.length);
    pass.end();
    device.queue.submit([encoder.finish()]);
  };
  for (const p of points) encodeStep(p); // compiles every variant before timing
  await device.queue.onSubmittedWorkDone();
  for (let r = 0; r < options.rounds; r++) {
    for (const p of points) {
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) encodeStep(p);
      await device.queue.onSubmittedWorkDone();
      p.wall.push((performance.now() - t0) / 8);
    }
  }
  const base = percentile(points[0].wall, 50);
  return points.map((p) => {
    const wallMs = percentile(p.wall, 50);
    return { k: p.k, wallMs, ratio: wallMs / base };
  });
}

/** Options of {@link benchSpec}. */
export interface SpecBenchOptions {
  /** The model of the workloads (stories260K: it copies). */
  model: string;
  /** The model of the verify-step costs (default: `model`). */
  costModel?: string;
  kernelFamily?: KernelFamily;
  /** What to measure (default: n-gram, k = 4, n from 4 to 2). */
  speculative?: SpeculativeConfig;
  gpu?: Gpu;
  /** Shorter outputs, best of 2 timed runs, 2 rounds of step costs. */
  quick?: boolean;
  /**
   * Also run node-llama-cpp's prompt lookup on the workloads (n-gram method; default true;
   * `tmp` holds the GGUF conversion, a temp dir of its own by default).
   */
  peer?: boolean;
  tmp?: string;
  /**
   * Also time a third engine, speculation with this `disableByBatchSize` (vLLM's
   * `disable_by_batch_size`), alternating with the other two (default: not run).
   */
  disableByBatchSize?: number;
  log?: (line: string) => void;
}

/** Runs the section. */
export async function benchSpec(options: SpecBenchOptions): Promise<SpecResult> {
  const q = options.quick ?? false;
  const runs = q ? 2 : 5;
  const out = (n: number) => (q ? n / 2 : n);
  const workloads: [string, (GenerateOptions & { prompt: string })[]][] = [
    ["(a) copying, 1 stream", [{ prompt: COPY, maxTokens: out(128), ignoreEos: true }]],
    ["(b) free text, 1 stream", [{ prompt: FREE, maxTokens: out(128), ignoreEos: true }]],
    ["(c) 8 streams", STREAMS.map((prompt) => ({ prompt, maxTokens: out(96), ignoreEos: true }))],
  ];
  const opts = { model: options.model, maxSeqs: 8, kernelFamily: options.kernelFamily };
  const plain = await createEngine(opts);
  const speculative = options.speculative ?? NGRAM;
  const spec = await createEngine({ ...opts, speculative });
  const limited = options.disableByBatchSize ? await createEngine({ ...opts, speculative: { ...speculative, disableByBatchSize: options.disableByBatchSize } }) : null;
  const rows: SpecRow[] = [];
  let kernelFamily = "";
  try {
    kernelFamily = plain.info.kernelFamily;
    for (const [name, reqs] of workloads) {
      const before = spec.stats();
      const limitedBefore = limited?.stats().specDrafts ?? 0;
      const [p, s, l] = await timedSet(limited ? [plain, spec, limited] : [plain, spec], reqs, runs);
      const after = spec.stats();
      const drafts = after.specDrafts - before.specDrafts;
      const accepted = after.specAcceptedTokens - before.specAcceptedTokens;
      const draftTokens = after.specDraftTokens - before.specDraftTokens;
      rows.push({
        workload: name,
        plainTokPerS: p.tokens / p.seconds,
        specTokPerS: s.tokens / s.seconds,
        speedup: (s.tokens / s.seconds) / (p.tokens / p.seconds),
        tokensPerVerifyStep: drafts ? (drafts + accepted) / drafts : 0,
        acceptance: draftTokens ? accepted / draftTokens : 0,
        verifySteps: drafts,
        ...(l && limited
          ? { limited: { tokPerS: l.tokens / l.seconds, speedup: (l.tokens / l.seconds) / (p.tokens / p.seconds), verifySteps: limited.stats().specDrafts - limitedBefore } }
          : {}),
      });
      const row = rows.at(-1)!;
      options.log?.(
        `  ${name}: on/off ${row.speedup.toFixed(2)}, ${row.tokensPerVerifyStep.toFixed(2)} tokens per verify step` +
          (row.limited ? `; limited/off ${row.limited.speedup.toFixed(2)} (${row.limited.verifySteps} verify steps vs ${drafts})` : ""),
      );
    }
  } finally {
    await plain.close();
    await spec.close();
    await limited?.close();
  }
  const costModel = options.costModel ?? options.model;
  const context = 128;
  const runner = await ModelRunner.load(costModel, {
    gpu: options.gpu,
    kernelFamily: options.kernelFamily,
    maxTokens: 64,
    maxSeqs: 8,
    numBlocks: 24,
    maxContext: 256,
  });
  let verifyCost: VerifyCost[];
  try {
    verifyCost = await verifyStepCost(runner, { maxK: speculative.numSpeculativeTokens, context, rounds: q ? 2 : 5 });
  } finally {
    runner.close();
  }
  const result: SpecResult = { model: options.model.split("/").at(-1)!, config: speculative, kernelFamily, runs, rows, costModel: costModel.split("/").at(-1)!, context, verifyCost, ...(limited ? { disableByBatchSize: options.disableByBatchSize } : {}) };
  if (speculative.method !== "ngram") return result;
  if (options.peer === false) return { ...result, llamaCppNote: "not run (peer off)" };
  try {
    const llama = await loadLlamaCpp();
    const tmp = options.tmp ?? await rt.makeTempDir("spec_peer_");
    try {
      result.llamaCpp = await benchSpecPeer({
        model: options.model,
        ggufPath: `${tmp}/${result.model}.gguf`,
        llama,
        workloads: workloads.map(([name, reqs]) => ({ name, prompts: reqs.map((r) => r.prompt), maxTokens: reqs[0].maxTokens! })),
        lookup: { minN: speculative.promptLookupMin ?? 2, maxN: speculative.promptLookupMax ?? 4, k: speculative.numSpeculativeTokens },
        runs,
      });
      options.log?.(`  llama.cpp: ${result.llamaCpp.map((r) => `${r.workload} on/off ${r.speedup.toFixed(2)}`).join(", ")}`);
    } finally {
      await llama.dispose();
      if (!options.tmp) await rt.remove(tmp).catch(() => {});
    }
  } catch (e) {
    if (!(e instanceof SectionSkipped)) throw e;
    result.llamaCppNote = e.message;
  }
  return result;
}

async function main(): Promise<void> {
  const argv = rt.args();
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const model = flag("model") ?? `${ROOT}tests/fixtures/models/stories260K`;
  const kernelFamily = flag("kernel-family") as KernelFamily | undefined;
  const method = flag("method") ?? "ngram";
  if (method !== "ngram" && method !== "draft") throw new Error(`--method must be ngram or draft, got ${method}`);
  const speculative: SpeculativeConfig = method === "draft" ? { method, numSpeculativeTokens: 4, model: flag("draft-model") ?? model } : NGRAM;
  const limit = flag("disable-by-batch-size");
  const disableByBatchSize = limit === undefined ? undefined : Number(limit);
  if (disableByBatchSize !== undefined && !(Number.isInteger(disableByBatchSize) && disableByBatchSize > 0)) {
    throw new Error(`--disable-by-batch-size must be a positive integer, got ${limit}`);
  }
  const r = await benchSpec({ model, kernelFamily, speculative, quick: argv.includes("--quick"), peer: !argv.includes("--no-peer"), disableByBatchSize, log: console.error });
  console.log(`${rt.RUNTIME}`);
  console.log(renderSpec(r).join("\n"));
}

if (import.meta.main) await main();
