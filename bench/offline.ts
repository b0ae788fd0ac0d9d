/**
 * Offline throughput of one engine configuration on a fixed workload: continuous batching
 * (all requests submitted at once; the engine keeps `concurrency` sequences running and
 * admits the next the moment one finishes) against static batching (the same engine
 * options, requests in consecutive groups of `concurrency`, each group run to completion
 * before the next is sent). Also single-stream decode speed.
 * @module
 */
import { createEngine, type EngineClient, type EngineStats } from "../mod.ts";
import {
  type BenchRequest,
  continuousDecodeSteps,
  costIdealBatchingRatio,
  idealBatchingRatio,
  staticDecodeSteps,
} from "./workload.ts";
import { RequestClock, type RequestTiming } from "./request_timing.ts";
import { type Percentiles, scalePercentiles, summarize } from "./stats.ts";
import { stepCostModel } from "./step_sweep.ts";

/** Engine options the offline runs use. */
export interface OfflineEngineOptions {
  model: string;
  maxSeqs: number;
  maxBatchTokens: number;
  maxContext: number;
  stepsPerSync?: number;
}

/** One batching mode's results. Latencies in ms. */
export interface ModeResult {
  mode: "continuous" | "static";
  wallS: number;
  requests: number;
  outputTokens: number;
  outputTokPerS: number;
  requestsPerS: number;
  ttftMs: Percentiles;
  itlMs: Percentiles;
  e2eMs: Percentiles;
  /** Engine's scheduled tokens / token budget per step (P50/P95/P99). */
  batchFill: { p50: number; p95: number; p99: number };
  /** Running sequences per decode step / concurrency (decode tokens / (decode steps x concurrency)). */
  seqFill: number;
  steps: number;
  decodeSteps: number;
  syncs: number;
  /** Decode steps per GPU->CPU wait. */
  stepsPerSync: number;
}

/** The offline section for one model. */
export interface OfflineResult {
  model: string;
  concurrency: number;
  workload: { requests: number; promptTokens: number; outputTokens: number; note: string };
  continuous: ModeResult;
  static: ModeResult;
  /** continuous output tok/s / static output tok/s. */
  ratio: number;
  /** static decode steps / continuous decode steps the lengths allow. */
  idealRatio: number;
  idealStaticSteps: number;
  idealContinuousSteps: number;
  /** ratio / idealRatio. */
  ofIdeal: number;
  /**
   * The ideal from the measured step cost per batch size (static's summed step cost /
   * continuous's), when a cost was measured: the target's denominator.
   */
  costModel?: { stepMs: { seqs: number; ms: number }[]; idealRatio: number; ofIdeal: number };
}

/** Single-stream decode speed. */
export interface SingleStreamResult {
  model: string;
  promptTokens: number;
  outputTokens: number;
  tokPerS: number;
  itlMs: Percentiles;
  /** 1000 / 11: the rate a loop that waits for every token could reach at best. */
  waitCapTokPerS: number;
  stepsPerSync: number;
}

async function runOne(engine: EngineClient, r: BenchRequest): Promise<RequestTiming> {
  const clock = new RequestClock(performance.now());
  for await (
    const d of engine.stream({
      prompt: r.promptIds,
      maxTokens: r.maxTokens,
      ignoreEos: true,
      temperature: 0,
    })
  ) {
    clock.tokens(d.ids.length, performance.now());
  }
  return clock.finish(performance.now());
}

/** Waits until the engine has reported stats after its last step (they arrive asynchronously). */
async function settledStats(engine: EngineClient): Promise<EngineStats> {
  let s = engine.stats();
  for (let i = 0; i < 20 && (s.running > 0 || s.waiting > 0); i++) {
    await new Promise((r) => setTimeout(r, 25));
    s = engine.stats();
  }
  await new Promise((r) => setTimeout(r, 60));
  return engine.stats();
}

/**
 * Runs 1, 2, 4 and 8 requests at once first, so every matmul tile variant (1, 2, 4 or 8 rows
 * per invocation) has been dispatched before timing: the driver may compile on first use,
 * and whichever mode ran first would otherwise pay for it.
 */
async function warmUp(engine: EngineClient): Promise<void> {
  for (const n of [1, 2, 4, 8]) {
    await Promise.all(Array.from({ length: n }, (_, i) =>
      engine.generate({ prompt: [1, 5 + i, 6, 7, 8, 9, 10, 11, 12], maxTokens: 4, ignoreEos: true, temperature: 0 })
    ));
  }
}

async function runMode(
  options: OfflineEngineOptions,
  mode: "continuous" | "static",
  workload: BenchRequest[],
): Promise<ModeResult> {
  const engine = await createEngine({ ...options, maxSeqs: options.maxSeqs });
  try {
    await warmUp(engine);
    const before = await settledStats(engine);
    const t0 = performance.now();
    const timings: RequestTiming[] = [];
    if (mode === "continuous") {
      timings.push(...await Promise.all(workload.map((r) => runOne(engine, r))));
    } else {
      for (let i = 0; i < workload.length; i += options.maxSeqs) {
        timings.push(
          ...await Promise.all(
            workload.slice(i, i + options.maxSeqs).map((r) => runOne(engine, r)),
          ),
        );
      }
    }
    const wallS = (performance.now() - t0) / 1000;
    const s = await settledStats(engine);
    const outputTokens = timings.reduce((n, t) => n + t.outputTokens, 0);
    const decodeSteps = Math.round(s.stepsPerSync * s.syncs - before.stepsPerSync * before.syncs);
    const decodeTokens = s.decodeTokens - before.decodeTokens;
    const syncs = s.syncs - before.syncs;
    return {
      mode,
      wallS,
      requests: workload.length,
      outputTokens,
      outputTokPerS: outputTokens / wallS,
      requestsPerS: workload.length / wallS,
      ttftMs: scalePercentiles(summarize(timings.map((t) => t.ttft)), 1000),
      itlMs: scalePercentiles(summarize(timings.flatMap((t) => t.itl)), 1000),
      e2eMs: scalePercentiles(summarize(timings.map((t) => t.e2e)), 1000),
      batchFill: { p50: s.batchFill.p50, p95: s.batchFill.p95, p99: s.batchFill.p99 },
      seqFill: decodeSteps > 0 ? decodeTokens / (decodeSteps * options.maxSeqs) : 0,
      steps: s.steps - before.steps,
      decodeSteps,
      syncs,
      stepsPerSync: syncs > 0 ? decodeSteps / syncs : 0,
    };
  } finally {
    await engine.close();
  }
}

/** Runs continuous then static batching on `workload` with fresh engines of the same options. */
export async function benchOffline(
  options: OfflineEngineOptions,
  workload: BenchRequest[],
  note: string,
  log: (line: string) => void = () => {},
  stepMs?: { seqs: number; ms: number }[],
): Promise<OfflineResult> {
  const outputs = workload.map((r) => r.maxTokens);
  const continuous = await runMode(options, "continuous", workload);
  log(
    `  continuous: ${continuous.outputTokPerS.toFixed(1)} tok/s in ${
      continuous.wallS.toFixed(1)
    } s`,
  );
  const stat = await runMode(options, "static", workload);
  log(`  static: ${stat.outputTokPerS.toFixed(1)} tok/s in ${stat.wallS.toFixed(1)} s`);
  const ratio = continuous.outputTokPerS / stat.outputTokPerS;
  const idealRatio = idealBatchingRatio(outputs, options.maxSeqs);
  return {
    model: options.model,
    concurrency: options.maxSeqs,
    workload: {
      requests: workload.length,
      promptTokens: workload.reduce((n, r) => n + r.promptIds.length, 0),
      outputTokens: outputs.reduce((a, b) => a + b, 0),
      note,
    },
    continuous,
    static: stat,
    ratio,
    idealRatio,
    idealStaticSteps: staticDecodeSteps(outputs, options.maxSeqs),
    idealContinuousSteps: continuousDecodeSteps(outputs, options.maxSeqs),
    ofIdeal: ratio / idealRatio,
    ...(stepMs?.length
      ? (() => {
        const costIdeal = costIdealBatchingRatio(outputs, options.maxSeqs, stepCostModel(stepMs));
        return { costModel: { stepMs, idealRatio: costIdeal, ofIdeal: ratio / costIdeal } };
      })()
      : {}),
  };
}

/** One request decoding `outputTokens` tokens alone on a fresh engine. */
export async function benchSingleStream(
  options: OfflineEngineOptions,
  promptIds: number[],
  outputTokens: number,
): Promise<SingleStreamResult> {
  const engine = await createEngine({ ...options });
  try {
    await warmUp(engine);
    const before = await settledStats(engine);
    const t0 = performance.now();
    const t = await runOne(engine, { index: 0, promptIds, maxTokens: outputTokens, long: false });
    const wall = (performance.now() - t0) / 1000;
    const s = await settledStats(engine);
    const decodeSteps = s.stepsPerSync * s.syncs - before.stepsPerSync * before.syncs;
    return {
      model: options.model,
      promptTokens: promptIds.length,
      outputTokens: t.outputTokens,
      tokPerS: t.outputTokens / wall,
      itlMs: scalePercentiles(summarize(t.itl), 1000),
      waitCapTokPerS: 1000 / 11,
      stepsPerSync: s.syncs > before.syncs ? decodeSteps / (s.syncs - before.syncs) : 0,
    };
  } finally {
    await engine.close();
  }
}
