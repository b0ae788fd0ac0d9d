/**
 * The pure parts of the benchmark suite (bench/): the workload generator, the ideal
 * continuous/static ratio, percentile math (the GGUF writer and reader are in gguf_test.ts).
 * No GPU, no timing assertions.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  continuousDecodeSteps,
  continuousRunning,
  costIdealBatchingRatio,
  DEFAULT_WORKLOAD,
  idealBatchingRatio,
  makeWorkload,
  poissonArrivals,
  staticDecodeSteps,
  staticRunning,
} from "../bench/workload.ts";
import { stepCostModel } from "../bench/step_sweep.ts";
import { percentile, summarize } from "../bench/stats.ts";
import { parseBenchArgs, QUICK_BUDGET_S, QUICK_END_S, section } from "../bench/main.ts";
import { anotherRoundFits } from "../bench/peer_llama_cpp.ts";
import { compareMarkdown, runtimeOf } from "../bench/compare.ts";
import { type BenchResults, quantTargets, renderMarkdown } from "../bench/report.ts";

test("bench workload: deterministic, 64 requests, 3/4 short and 1/4 long, lengths in range", () => {
  const a = makeWorkload({ vocab: 512, bosId: 1 });
  const b = makeWorkload({ vocab: 512, bosId: 1 });
  assertEquals(a, b);
  assertEquals(a.length, 64);
  const long = a.filter((r) => r.long);
  assertEquals(long.length, 16);
  for (const r of a) {
    assert(r.promptIds.length >= 16 && r.promptIds.length <= 256, `prompt ${r.promptIds.length}`);
    assertEquals(r.promptIds[0], 1);
    assert(r.promptIds.slice(1).every((id) => id >= 3 && id < 512), "prompt ids in range");
    const [lo, hi] = r.long ? DEFAULT_WORKLOAD.longOutput : DEFAULT_WORKLOAD.shortOutput;
    assert(r.maxTokens >= lo && r.maxTokens <= hi, `output ${r.maxTokens} (long ${r.long})`);
  }
  // Long requests are spread over the workload, not bunched at one end.
  assert(long.some((r) => r.index < 32) && long.some((r) => r.index >= 32), "long tail spread");
  const other = makeWorkload({ vocab: 512, bosId: 1, seed: 6 });
  assert(JSON.stringify(other) !== JSON.stringify(a), "another seed, another workload");
});

test("bench workload: Poisson arrivals are deterministic, increasing, near the rate", () => {
  const t = poissonArrivals(2000, 4, 1);
  assertEquals(t, poissonArrivals(2000, 4, 1));
  assertEquals(t[0], 0);
  for (let i = 1; i < t.length; i++) assert(t[i] >= t[i - 1], "non-decreasing");
  const rate = (t.length - 1) / t.at(-1)!;
  assert(rate > 3.6 && rate < 4.4, `rate ${rate}`);
});

test("bench ideal ratio: static and continuous decode steps", () => {
  // Two groups of 2: static = max(10, 1) + max(1, 1) = 11; continuous: slots 10 | 1+1+1 -> 10.
  assertEquals(staticDecodeSteps([10, 1, 1, 1], 2), 11);
  assertEquals(continuousDecodeSteps([10, 1, 1, 1], 2), 10);
  assertEquals(idealBatchingRatio([10, 1, 1, 1], 2), 1.1);
  // Equal lengths gain nothing.
  assertEquals(idealBatchingRatio([5, 5, 5, 5, 5, 5, 5, 5], 4), 1);
  // A long tail, one long request in each group of 8: static pays 100 steps per group.
  const outs = Array.from({ length: 64 }, (_, i) => (i % 8 === 0 ? 100 : 10));
  assertEquals(staticDecodeSteps(outs, 8), 800);
  assert(continuousDecodeSteps(outs, 8) >= 170, "never beats perfect packing (1360 / 8)");
  // Longs first: 8 slots of 100, then 7 x 10 on each = perfect packing.
  const first = Array.from({ length: 64 }, (_, i) => (i < 8 ? 100 : 10));
  assertEquals(continuousDecodeSteps(first, 8), 170);
  assertEquals(staticDecodeSteps(first, 8), 100 + 7 * 10);
  const w = makeWorkload({ vocab: 512 }).map((r) => r.maxTokens);
  const ideal = idealBatchingRatio(w, 8);
  assert(ideal > 1 && ideal < 8, `ideal ${ideal}`);
  assert(
    continuousDecodeSteps(w, 8) >= Math.ceil(w.reduce((a, b) => a + b, 0) / 8),
    "no better than perfect packing",
  );
});

test("bench percentiles: linear interpolation like numpy", () => {
  assertEquals(percentile([], 50), 0);
  assertEquals(percentile([7], 99), 7);
  assertEquals(percentile([1, 2, 3, 4], 50), 2.5);
  assertEquals(percentile([4, 1, 3, 2], 0), 1);
  assertEquals(percentile([4, 1, 3, 2], 100), 4);
  const xs = Array.from({ length: 101 }, (_, i) => 100 - i);
  assertEquals(percentile(xs, 95), 95);
  assertEquals(percentile(xs, 99), 99);
  assertEquals(Math.round(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) * 1000) / 1000, 9.55);
  const s = summarize([1, 2, 3, 4]);
  assertEquals([s.count, s.mean, s.p50], [4, 2.5, 2.5]);
  assertThrows(() => percentile([1], 101));
});

test("bench CLI flags", () => {
  assertEquals(parseBenchArgs([]), { quick: false, json: null, only: null });
  const a = parseBenchArgs(["--quick", "--json", "/tmp/x.json", "--only", "kernels,peer"]);
  assertEquals([a.quick, a.json, [...a.only!]], [true, "/tmp/x.json", ["kernels", "peer"]]);
  assertEquals([...parseBenchArgs(["--only", "constrained"]).only!], ["constrained"]);
});

test("bench compare: one column per runtime, the second over the first, n/a where not measured", () => {
  const skipped = { status: "skipped" as const, reason: "not selected (--only)" };
  const base = {
    startedAt: "2026-01-01T00:00:00.000Z",
    quick: true,
    notes: [],
    kernels: skipped,
    stepProfiles: skipped,
    offline: skipped,
    singleStream: skipped,
    peer: skipped,
    targets: [],
    durationS: 100,
  };
  const serving = (reqPerS: number) => ({
    status: "ok" as const,
    data: {
      model: "stories260K",
      requests: 16,
      completed: 16,
      failed: 0,
      ratePerSecond: 4,
      durationS: 4,
      requestThroughput: reqPerS,
      outputTokPerS: 100,
      outputTokens: 400,
      ttftMs: { count: 16, mean: 50, p50: 40, p95: 90, p99: 99 },
      itlMs: { count: 16, mean: 5, p50: 4, p95: 9, p99: 9.9 },
      e2eMs: { count: 16, mean: 500, p50: 400, p95: 900, p99: 990 },
      errors: [],
    },
  });
  const env = { engine: "V8", os: "linux x64", cpus: 2, adapter: "llvmpipe" };
  const deno = { ...base, environment: { ...env, runtime: "deno 2.9.6" }, serving: serving(2) };
  const bun = { ...base, environment: { ...env, runtime: "bun 1.3.14" }, serving: serving(3) };
  const md = compareMarkdown([deno, bun]);
  const lines = md.split("\n");
  assertEquals(lines[0], "| figure | deno 2.9.6 --quick | bun 1.3.14 --quick | bun / deno |");
  assert(lines.includes("| serving req/s | 2.00 | 3.00 | 1.50 |"), md);
  assert(lines.includes("| offline continuous out tok/s | n/a | n/a | n/a |"), md);
  assert(lines.includes("| batch tok/s, 1 of 8 constrained | n/a | n/a | n/a |"), md);
  assert(md.includes("offline skipped: not selected (--only)"), md);
  // The constrained section, when there: its table and the cost line.
  const variant = (variant: string, own: number | null) => ({
    variant,
    batchTokPerS: 400,
    othersTokPerS: 350,
    constrainedTokPerS: own,
    forcedTokens: own === null ? null : 90,
    wallS: 2,
    wallsS: [2, 2],
  });
  const withConstrained = {
    ...deno,
    constrained: {
      status: "ok" as const,
      data: {
        model: "x/stories260K",
        sequences: 8,
        outputTokens: 128,
        repeats: 2,
        schema: {},
        variants: [variant("none", null), variant("1 of 8 constrained", 80)] as never,
        othersCost: 0.02,
        othersIdentical: true,
        coldStartMs: 300,
      },
    },
  };
  const report = renderMarkdown(withConstrained as unknown as BenchResults);
  assert(report.includes("| 1 of 8 constrained | 400.0 | 350.0 | 80.0 | 90 | 2.00 |"), report);
  assert(
    report.includes("cost to the others: 2.0% of their tok/s; their outputs identical"),
    report,
  );
  assert(
    compareMarkdown([withConstrained as unknown as BenchResults]).includes(
      "| batch tok/s, 1 of 8 constrained | 400.0 |",
    ),
  );
  // Files written before the runtime was recorded were Deno's.
  const old = {
    ...deno,
    environment: { deno: "2.9.5", v8: "x", os: "linux", cpus: 2, adapter: "a" },
  };
  assertEquals(runtimeOf(old as unknown as BenchResults), "deno 2.9.5");
});

test("bench ideal ratio from a measured step cost per batch size", () => {
  // [10, 1, 1, 1] on 2 slots: static runs 2,1,...,1 (10 steps) then 2 (1 step);
  // continuous runs 2 for 3 steps then 1 for 7.
  assertEquals(staticRunning([10, 1, 1, 1], 2), [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
  assertEquals(continuousRunning([10, 1, 1, 1], 2), [2, 2, 2, 1, 1, 1, 1, 1, 1, 1]);
  const w = makeWorkload({ vocab: 512 }).map((r) => r.maxTokens);
  assertEquals(staticRunning(w, 8).length, staticDecodeSteps(w, 8));
  assertEquals(continuousRunning(w, 8).length, continuousDecodeSteps(w, 8));
  const tokens = w.reduce((a, b) => a + b, 0);
  assertEquals(staticRunning(w, 8).reduce((a, b) => a + b, 0), tokens);
  assertEquals(continuousRunning(w, 8).reduce((a, b) => a + b, 0), tokens);
  // A constant cost gives the step ratio; a cost growing with the batch lowers the ideal.
  assertEquals(costIdealBatchingRatio(w, 8, () => 3), idealBatchingRatio(w, 8));
  const linear = stepCostModel([{ seqs: 1, ms: 10 }, { seqs: 8, ms: 80 }]);
  assertEquals([linear(1), linear(4.5), linear(8), linear(20)], [10, 45, 80, 80]);
  assert(
    costIdealBatchingRatio(w, 8, linear) < idealBatchingRatio(w, 8),
    "per-token cost: continuous gains less",
  );
  assertEquals(stepCostModel([])(3), 1);
});

test("bench quant section: issue 11's targets from the rows, and its table", () => {
  const MiB = 2 ** 20;
  const load = (weightMiB: number, peakMiB: number, boundMiB: number) => ({
    loadS: 4,
    weightBytes: weightMiB * MiB,
    baselineHwmBytes: 100 * MiB,
    peakHwmBytes: peakMiB * MiB,
    quantKernels: true,
    boundBytes: boundMiB * MiB,
    withinBound: peakMiB <= boundMiB,
  });
  const row = (
    type: "f16" | "q8_0" | "q4_0",
    weightMiB: number,
    peak: number,
    bound: number,
    tokPerS: number,
    llama: number,
  ) => ({
    type,
    load: load(weightMiB, peak, bound),
    ggufLoad: load(weightMiB, peak, bound),
    ggufBytes: weightMiB * MiB,
    ours: { singleTokPerS: tokPerS, parallelTokPerS: 2 * tokPerS },
    oursFast: type === "f16" ? undefined : { singleTokPerS: tokPerS / 2, parallelTokPerS: tokPerS },
    llamaCpp: { singleTokPerS: llama, parallelTokPerS: 2 * llama },
  });
  const data = {
    model: "smollm2",
    outputTokens: 16,
    parallel: 8,
    threads: 2,
    largestTensorF32Bytes: 108 * MiB,
    baselineHwmBytes: 197 * MiB,
    rounds: 3,
    rows: [
      row("f16", 256, 500, 560, 10, 40),
      row("q8_0", 160, 440, 460, 14, 20),
      row("q4_0", 70, 430, 416, 8, 10),
    ],
    notes: ["a note"],
  };
  const targets = quantTargets(data);
  const met = (name: string) => targets.find((t) => t.name === name)?.met;
  assertEquals(met("Q4_0 weight bytes vs f16 (whole model)"), true); // 70 / 256 = 0.27
  assertEquals(met("q8_0 single-stream decode vs our f16"), true); // 1.4x
  assertEquals(met("q4_0 single-stream decode vs our f16"), false); // 0.8x
  assertEquals(met("q8_0 single stream vs llama.cpp Q8_0"), true); // 0.7x
  assertEquals(met("f16 single stream vs llama.cpp F16"), false); // 0.25x
  assertEquals(met("q8_0 8-stream decode vs our f16"), true); // 28 vs 20
  assertEquals(met("q4_0 8-stream decode vs our f16"), false);
  assertEquals(met("q8_0 load-time load peak host memory"), true);
  assertEquals(met("q4_0 load-time load peak host memory"), false);
  assertEquals(met("q8_0 .gguf load peak host memory"), true);
  const skipped = { status: "skipped" as const, reason: "not selected (--only)" };
  const report = renderMarkdown({
    startedAt: "2026-01-01T00:00:00.000Z",
    quick: true,
    environment: { runtime: "deno 2.9.6", engine: "V8", os: "linux", cpus: 2, adapter: "llvmpipe" },
    notes: [],
    kernels: skipped,
    stepProfiles: skipped,
    offline: skipped,
    singleStream: skipped,
    serving: skipped,
    peer: skipped,
    quant: { status: "ok", data },
    targets,
    durationS: 1,
  } as unknown as BenchResults);
  assert(
    report.includes(
      "| q8_0 | 160.0 | 4.00 (4.00) | 440.0 / 440.0 (460.0) | 14.0 / 28.0 | 7.0 / 14.0 | 20.0 / 40.0 |",
    ),
    report,
  );
  assert(report.includes("| q4_0 load-time load peak host memory |"), report);
});

test("bench --quick: a section due to start past the time budget is skipped and says why", async () => {
  let ran = 0;
  const work = () => Promise.resolve(++ran);
  assertEquals(await section("a", true, work, performance.now() + 60_000), { status: "ok", data: 1 });
  const late = await section("b", true, work, performance.now() - 1);
  assertEquals([late.status, ran], ["skipped", 1]);
  assert(late.status === "skipped" && late.reason.includes(`${QUICK_BUDGET_S} s budget`), JSON.stringify(late));
  // Without --quick nothing is ever late.
  assertEquals((await section("c", true, work)).status, "ok");
  assert(QUICK_BUDGET_S * 1000 < 5 * 60_000, "the budget leaves room for the last section within 5 minutes");
});

test("bench spec section: its tables (tok/s off and on, tokens per verify step, acceptance, verify-step cost per k)", () => {
  const data = {
    model: "stories260K",
    config: { numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 2 },
    kernelFamily: "cpu",
    runs: 5,
    rows: [
      { workload: "(a) copying, 1 stream", plainTokPerS: 600, specTokPerS: 300, speedup: 0.5, tokensPerVerifyStep: 3.6, acceptance: 0.68 },
      { workload: "(b) free text, 1 stream", plainTokPerS: 600, specTokPerS: 580, speedup: 580 / 600, tokensPerVerifyStep: 0, acceptance: 0 },
    ],
    costModel: "smollm2-135m-synthetic",
    context: 128,
    verifyCost: [{ k: 0, wallMs: 10, ratio: 1 }, { k: 4, wallMs: 25, ratio: 2.5 }],
  };
  const skipped = { status: "skipped" as const, reason: "not selected (--only)" };
  const report = renderMarkdown({
    startedAt: "2026-01-01T00:00:00.000Z",
    quick: false,
    environment: { runtime: "deno 2.9.6", engine: "V8", os: "linux", cpus: 2, adapter: "llvmpipe" },
    notes: [],
    kernels: skipped,
    stepProfiles: skipped,
    offline: skipped,
    singleStream: skipped,
    serving: skipped,
    peer: skipped,
    spec: { status: "ok", data },
    targets: [],
    durationS: 1,
  } as unknown as BenchResults);
  assert(report.includes("## Speculative decoding"), report);
  assert(report.includes("| (a) copying, 1 stream | 600.0 | 300.0 | 0.50 | 3.60 | 68% |"), report);
  assert(report.includes("| (b) free text, 1 stream | 600.0 | 580.0 | 0.97 | - | - |"), report);
  assert(report.includes("| 4 | 25.00 | 2.50 |"), report);
  assert(parseBenchArgs(["--only", "spec"]).only?.has("spec"));
});

test("bench --quick: the peer section starts no round it expects to end past the run's end budget", () => {
  // A 100 s round at 150 s fits a 280 s end; at 190 s it does not; without a budget, all run.
  assert(anotherRoundFits(150_000, 100_000, QUICK_END_S * 1000));
  assert(!anotherRoundFits(190_000, 100_000, QUICK_END_S * 1000));
  assert(anotherRoundFits(1e9, 1e9, undefined));
  assert(QUICK_END_S < 300 && QUICK_END_S > QUICK_BUDGET_S, "rounds end within the 5 minutes, after the last section may start");
});
