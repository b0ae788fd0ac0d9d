/**
 * Where one decode step's time goes: every op of the forward pass (plus the GPU sampler)
 * in its own timed compute pass, summed per kernel family, next to the same step encoded as
 * one pass (the serving path) and the wall time of a step with and without a GPU->CPU wait.
 * @module
 */
import { Bench } from "tinybench";
import type { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, shapeOf } from "../src/runner/step_meta.ts";
import { SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { GpuTimer } from "./gpu_timer.ts";
import { percentile } from "./stats.ts";

/** Time of one kernel family in a step. */
export interface OpTime {
  op: string;
  dispatches: number;
  ms: number;
  share: number;
}

/** One model's decode-step profile. */
export interface StepProfile {
  model: string;
  seqs: number;
  context: number;
  dispatches: number;
  /** Sum of the per-op timed passes, ms (median over iterations). */
  perOpTotalMs: number;
  /** The step encoded as one pass, GPU time, ms. */
  onePassMs: number;
  /** Wall time of submit + wait for one step, ms (includes one GPU->CPU wait). */
  wallSyncEveryStepMs: number;
  /** Wall time per step when 8 steps share one wait, ms. */
  wallSync8Ms: number;
  ops: OpTime[];
}

/** Options of {@link profileDecodeStep}. */
export interface StepProfileOptions {
  model: string;
  seqs: number;
  context: number;
  iterations: number;
  benchTimeMs: number;
}

/** "l12.qkv[0]" -> "qkv". */
export function opFamily(label: string): string {
  return label.replace(/^l\d+\./, "").replace(/\[\d+\]$/, "");
}

/** Profiles a decode step of `seqs` sequences at `context` tokens on a loaded runner. */
export async function profileDecodeStep(
  runner: ModelRunner,
  options: StepProfileOptions,
): Promise<StepProfile> {
  const device = runner.gpu.device;
  const bs = runner.cache.options.blockSize;
  const perSeq = Math.ceil(options.context / bs);
  if (perSeq * options.seqs > runner.cache.options.numBlocks) {
    throw new RangeError("not enough KV blocks for the profile");
  }
  const batch = buildStepBatch(
    Array.from({ length: options.seqs }, (_, s) => ({
      tokens: [5 + s],
      start: options.context - 1,
      blockTable: Array.from({ length: perSeq }, (_, j) => s * perSeq + j),
      logits: "last" as const,
    })),
    bs,
  );
  const rows = Array.from({ length: options.seqs }, (_, s) => ({ sampling: SAMPLING_DEFAULTS, outputIndex: 0, seqSlot: s }));
  const shape = shapeOf(batch);
  const timer = new GpuTimer(device, runner.forward.plan(shape).length + 1);
  const stepOnce = async (profiled: boolean): Promise<{ labels: string[]; ns: number[] }> => {
    const offset = runner.writeStep(batch, { rows, recordBase: 0 });
    const encoder = device.createCommandEncoder();
    let labels: string[];
    if (profiled) {
      labels = runner.forward.encodeEach(
        encoder,
        offset,
        shape,
        (i, label) => timer.pass(i, label),
      );
      const pass = encoder.beginComputePass(timer.pass(labels.length, "sample"));
      runner.sampler.encode(pass, offset, options.seqs);
      pass.end();
      labels.push("sample");
    } else {
      labels = ["step"];
      const pass = encoder.beginComputePass(timer.pass(0));
      runner.forward.encode(pass, offset, shape);
      runner.sampler.encode(pass, offset, options.seqs);
      pass.end();
    }
    timer.resolve(encoder, labels.length);
    device.queue.submit([encoder.finish()]);
    return { labels, ns: await timer.read(labels.length) };
  };
  await stepOnce(false); // warm-up
  const perOp: number[][] = [];
  let labels: string[] = [];
  const onePass: number[] = [];
  for (let i = 0; i < options.iterations; i++) {
    const p = await stepOnce(true);
    labels = p.labels;
    p.ns.forEach((ns, j) => (perOp[j] ??= []).push(ns / 1e6));
    onePass.push((await stepOnce(false)).ns[0] / 1e6);
  }
  timer.destroy();

  // Wall time through tinybench: one wait per step, and one wait per 8 steps.
  const submitStep = () => {
    const offset = runner.writeStep(batch, { rows, recordBase: 0 });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    runner.forward.encode(pass, offset, shape);
    runner.sampler.encode(pass, offset, options.seqs);
    pass.end();
    device.queue.submit([encoder.finish()]);
  };
  const bench = new Bench({
    time: options.benchTimeMs,
    iterations: options.iterations,
    warmup: false,
  });
  bench.add("sync every step", async () => {
    submitStep();
    await device.queue.onSubmittedWorkDone();
  });
  bench.add("8 steps per sync", async () => {
    for (let i = 0; i < 8; i++) submitStep();
    await device.queue.onSubmittedWorkDone();
  });
  await bench.run();
  const p50 = (i: number) =>
    (bench.tasks[i].result as { latency?: { p50?: number } }).latency?.p50 ?? NaN;

  const families = new Map<string, { dispatches: number; ms: number }>();
  labels.forEach((label, j) => {
    const f = opFamily(label);
    const e = families.get(f) ?? { dispatches: 0, ms: 0 };
    e.dispatches++;
    e.ms += percentile(perOp[j], 50);
    families.set(f, e);
  });
  const total = [...families.values()].reduce((a, e) => a + e.ms, 0);
  const ops = [...families.entries()]
    .map(([op, e]) => ({ op, dispatches: e.dispatches, ms: e.ms, share: e.ms / total }))
    .sort((a, b) => b.ms - a.ms);
  return {
    model: options.model,
    seqs: options.seqs,
    context: options.context,
    dispatches: labels.length,
    perOpTotalMs: total,
    onePassMs: percentile(onePass, 50),
    wallSyncEveryStepMs: p50(0),
    wallSync8Ms: p50(1) / 8,
    ops,
  };
}
