/**
 * Whole decode steps (forward pass + GPU sampler, as the engine encodes them) at several
 * context lengths and batch sizes on one loaded runner: GPU time of the step (timestamps),
 * wall time per step when 8 steps share one GPU->CPU wait, and the dispatches the step
 * records (`forward.plan(shape).length`). Points are measured round-robin, one step per
 * point per round, so load changes on a shared machine hit every point alike.
 * @module
 */
import type { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, shapeOf } from "../src/runner/step_meta.ts";
import { SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { GpuTimer } from "./gpu_timer.ts";
import { percentile } from "./stats.ts";

/** One measured step shape. */
export interface StepPoint {
  seqs: number;
  context: number;
  /** Dispatches of the forward pass (the sampler's are not counted). */
  dispatches: number;
  /** Median GPU time of one step, ms. */
  gpuMs: number;
  /** Median wall time per step with 8 steps per wait, ms. */
  wallMs: number;
}

/** A model's step sweep. */
export interface StepSweep {
  model: string;
  layers: number;
  rounds: number;
  /** One sequence at each context length. */
  byContext: StepPoint[];
  /** Each batch size at `batchContext`. */
  byBatch: StepPoint[];
  batchContext: number;
}

/** Blocks a runner needs for {@link sweepSteps} over these points (one table per sequence). */
export function sweepBlocks(
  contexts: readonly number[],
  batches: readonly number[],
  batchContext: number,
  blockSize: number,
): number {
  const one = Math.ceil(Math.max(...contexts) / blockSize);
  const many = Math.max(...batches) * Math.ceil(batchContext / blockSize);
  return Math.max(one, many);
}

/** Measures decode steps of one sequence at `contexts` and of `batches` sequences at `batchContext`. */
export async function sweepSteps(
  runner: ModelRunner,
  options: {
    model: string;
    contexts: number[];
    batches: number[];
    batchContext: number;
    rounds: number;
  },
): Promise<StepSweep> {
  const device = runner.gpu.device;
  const bs = runner.cache.options.blockSize;
  const points = [
    ...options.contexts.map((context) => ({ seqs: 1, context })),
    ...options.batches.map((seqs) => ({ seqs, context: options.batchContext })),
  ].map(({ seqs, context }) => {
    const perSeq = Math.ceil(context / bs);
    if (perSeq * seqs > runner.cache.options.numBlocks) {
      throw new RangeError(`not enough KV blocks for ${seqs} x ${context}`);
    }
    const batch = buildStepBatch(
      Array.from({ length: seqs }, (_, s) => ({
        tokens: [5 + s],
        start: context - 1,
        blockTable: Array.from({ length: perSeq }, (_, j) => s * perSeq + j),
        logits: "last" as const,
      })),
      bs,
    );
    const rows = Array.from(
      { length: seqs },
      (_, s) => ({ sampling: SAMPLING_DEFAULTS, outputIndex: 0, seqSlot: s }),
    );
    return {
      seqs,
      context,
      batch,
      rows,
      shape: shapeOf(batch),
      gpu: [] as number[],
      wall: [] as number[],
    };
  });
  const timer = new GpuTimer(device, 1);
  const encodeStep = (p: (typeof points)[number], timed: boolean) => {
    const offset = runner.writeStep(p.batch, { rows: p.rows, recordBase: 0 });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(timed ? timer.pass(0) : undefined);
    runner.forward.encode(pass, offset, p.shape);
    runner.sampler.encode(pass, offset, p.seqs);
    pass.end();
    if (timed) timer.resolve(encoder, 1);
    device.queue.submit([encoder.finish()]);
  };
  for (const p of points) { // warm-up: compiles every variant before timing
    encodeStep(p, true);
    await timer.read(1);
  }
  for (let r = 0; r < options.rounds; r++) {
    for (const p of points) {
      encodeStep(p, true);
      p.gpu.push((await timer.read(1))[0] / 1e6);
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) encodeStep(p, false);
      await device.queue.onSubmittedWorkDone();
      p.wall.push((performance.now() - t0) / 8);
    }
  }
  timer.destroy();
  const out = points.map((p) => ({
    seqs: p.seqs,
    context: p.context,
    dispatches: runner.forward.plan(p.shape).length,
    gpuMs: percentile(p.gpu, 50),
    wallMs: percentile(p.wall, 50),
  }));
  return {
    model: options.model,
    layers: runner.spec.numLayers,
    rounds: options.rounds,
    byContext: out.slice(0, options.contexts.length),
    byBatch: out.slice(options.contexts.length),
    batchContext: options.batchContext,
  };
}

/**
 * Step cost per batch size from measured points (linear between them, flat beyond): the
 * cost model of the continuous-vs-static ideal.
 */
export function stepCostModel(
  points: readonly { seqs: number; ms: number }[],
): (batch: number) => number {
  const p = [...points].sort((a, b) => a.seqs - b.seqs);
  if (p.length === 0) return () => 1;
  return (b) => {
    if (b <= p[0].seqs) return p[0].ms;
    for (let i = 1; i < p.length; i++) {
      if (b <= p[i].seqs) {
        const t = (b - p[i - 1].seqs) / (p[i].seqs - p[i - 1].seqs);
        return p[i - 1].ms + t * (p[i].ms - p[i - 1].ms);
      }
    }
    return p.at(-1)!.ms;
  };
}
