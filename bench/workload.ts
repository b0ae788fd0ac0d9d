/**
 * The offline workload (a fixed-seed mix of short and long requests), Poisson arrival times
 * for the serving benchmark, and the decode-step arithmetic that says how much continuous
 * batching can gain over static batching for a given set of output lengths.
 * @module
 */
import { Rng } from "./rng.ts";

/** One benchmark request: prompt token ids and an exact output length (EOS ignored). */
export interface BenchRequest {
  index: number;
  promptIds: number[];
  maxTokens: number;
  /** Whether it was drawn from the long-output tail. */
  long: boolean;
}

/** Shape of a workload; defaults are the issue's: 64 requests, 1/4 long tail. */
export interface WorkloadOptions {
  seed?: number;
  requests?: number;
  /** Prompt length range in tokens, inclusive (BOS included). */
  promptLen?: [number, number];
  /** Output length range of the short requests, inclusive. */
  shortOutput?: [number, number];
  /** Output length range of the long tail, inclusive. */
  longOutput?: [number, number];
  /** Fraction of requests in the long tail (rounded to a whole count). */
  longFraction?: number;
  /** Vocabulary size: prompt ids are drawn from [firstId, vocab). */
  vocab: number;
  /** Smallest id a prompt token may use (skips special tokens); default 3. */
  firstId?: number;
  /** Prepended to every prompt when set (e.g. BOS). */
  bosId?: number | null;
}

/** The workload: 64 requests, prompts 16-256, outputs 16-64 (3/4) or 192-384 (1/4). */
export const DEFAULT_WORKLOAD: Required<Omit<WorkloadOptions, "vocab" | "bosId" | "firstId">> = {
  seed: 5,
  requests: 64,
  promptLen: [16, 256],
  shortOutput: [16, 64],
  longOutput: [192, 384],
  longFraction: 0.25,
};

/**
 * Builds the workload deterministically from its seed: exactly round(requests *
 * longFraction) requests, at seeded positions, get a long output length.
 */
export function makeWorkload(options: WorkloadOptions): BenchRequest[] {
  const o = { ...DEFAULT_WORKLOAD, ...options };
  const rng = new Rng(o.seed);
  const longCount = Math.round(o.requests * o.longFraction);
  const isLong = rng.shuffle(Array.from({ length: o.requests }, (_, i) => i < longCount));
  const firstId = o.firstId ?? 3;
  const bos = options.bosId ?? null;
  return isLong.map((long, index) => {
    const len = rng.int(o.promptLen[0], o.promptLen[1]);
    const promptIds: number[] = [];
    if (bos !== null) promptIds.push(bos);
    while (promptIds.length < len) promptIds.push(rng.int(firstId, o.vocab - 1));
    const [lo, hi] = long ? o.longOutput : o.shortOutput;
    return { index, promptIds, maxTokens: rng.int(lo, hi), long };
  });
}

/** Seconds after the start at which each of `n` requests arrives (Poisson process). */
export function poissonArrivals(n: number, ratePerSecond: number, seed: number): number[] {
  const rng = new Rng(seed);
  const out: number[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    out.push(t);
    t += rng.exponential(ratePerSecond);
  }
  return out;
}

/**
 * Decode steps static batching needs: requests run in consecutive groups of `concurrency`,
 * each group until its longest output is done, before the next group starts.
 */
export function staticDecodeSteps(outputs: readonly number[], concurrency: number): number {
  let steps = 0;
  for (let i = 0; i < outputs.length; i += concurrency) {
    steps += Math.max(...outputs.slice(i, i + concurrency));
  }
  return steps;
}

/**
 * Decode steps continuous batching needs when a request joins the moment a slot frees
 * (FIFO, one token per step per running request): the makespan of list scheduling.
 */
export function continuousDecodeSteps(outputs: readonly number[], concurrency: number): number {
  const free = new Array(Math.min(concurrency, outputs.length)).fill(0);
  let end = 0;
  for (const len of outputs) {
    let slot = 0;
    for (let s = 1; s < free.length; s++) if (free[s] < free[slot]) slot = s;
    free[slot] += len;
    end = Math.max(end, free[slot]);
  }
  return end;
}

/** The most continuous batching can gain over static: static's steps / continuous's. */
export function idealBatchingRatio(outputs: readonly number[], concurrency: number): number {
  const c = continuousDecodeSteps(outputs, concurrency);
  return c === 0 ? 1 : staticDecodeSteps(outputs, concurrency) / c;
}

/** Scales a workload's lengths (for --quick), keeping at least one token each. */
export function scaleWorkloadOptions(
  o: typeof DEFAULT_WORKLOAD,
  requests: number,
  lengthScale: number,
) {
  const s = (r: [number, number]): [number, number] => [
    Math.max(1, Math.round(r[0] * lengthScale)),
    Math.max(1, Math.round(r[1] * lengthScale)),
  ];
  return {
    ...o,
    requests,
    promptLen: s(o.promptLen),
    shortOutput: s(o.shortOutput),
    longOutput: s(o.longOutput),
  };
}

/** Running sequences at each decode step of static batching (groups of `concurrency`, each until its longest is done). */
export function staticRunning(outputs: readonly number[], concurrency: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < outputs.length; i += concurrency) {
    const group = outputs.slice(i, i + concurrency);
    const longest = Math.max(...group);
    for (let t = 0; t < longest; t++) out.push(group.filter((n) => n > t).length);
  }
  return out;
}

/** Running sequences at each decode step of continuous batching (the schedule of {@link continuousDecodeSteps}). */
export function continuousRunning(outputs: readonly number[], concurrency: number): number[] {
  const free = new Array(Math.min(concurrency, outputs.length)).fill(0);
  const delta: number[] = [];
  for (const len of outputs) {
    let slot = 0;
    for (let s = 1; s < free.length; s++) if (free[s] < free[slot]) slot = s;
    delta[free[slot]] = (delta[free[slot]] ?? 0) + 1;
    free[slot] += len;
    delta[free[slot]] = (delta[free[slot]] ?? 0) - 1;
  }
  const end = Math.max(0, ...free);
  const out: number[] = [];
  let running = 0;
  for (let t = 0; t < end; t++) out.push((running += delta[t] ?? 0));
  return out;
}

/**
 * The most continuous batching can gain over static when a step running `b` sequences costs
 * `cost(b)` (measured per batch size): static's summed step cost / continuous's. With a
 * constant cost this is {@link idealBatchingRatio}.
 */
export function costIdealBatchingRatio(
  outputs: readonly number[],
  concurrency: number,
  cost: (batch: number) => number,
): number {
  const sum = (running: number[]) => running.reduce((a, b) => a + cost(b), 0);
  const c = sum(continuousRunning(outputs, concurrency));
  return c === 0 ? 1 : sum(staticRunning(outputs, concurrency)) / c;
}
