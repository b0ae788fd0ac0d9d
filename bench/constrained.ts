/**
 * What constrained decoding costs a batch: 8 sequences with the same prompts and lengths,
 * none constrained vs 1 of the 8 constrained by a JSON schema, run interleaved on warmed
 * engines: with the defaults (jump-forward, readbacks every `constrainedStepsPerSync` = 2
 * steps while the constrained row waits), with the others' readbacks left at `stepsPerSync`,
 * and without jump-forward (a request with logprobs turns it off). Every sequence generates
 * exactly `outputTokens` tokens (ignoreEos; the schema's array is longer than that), so the
 * only difference is the grammar. Reports the batch's output tok/s, the 7 unconstrained
 * sequences' tok/s (what the constrained row costs the others), the constrained sequence's own
 * tok/s, and whether the unconstrained outputs stayed identical.
 * @module
 */
import { createEngine, type EngineClient, type GenerateOptions } from "../mod.ts";
import { makeWorkload } from "./workload.ts";
import { percentile } from "./stats.ts";

const median = (xs: readonly number[]) => percentile(xs, 50);

/** Options of {@link benchConstrained}. */
export interface ConstrainedBenchOptions {
  model: string;
  /** Tokens every sequence generates. */
  outputTokens: number;
  /** Interleaved repetitions of each variant. */
  repeats: number;
  maxBatchTokens?: number;
  stepsPerSync?: number;
}

/** The variants, in the order each repetition runs them. */
export const CONSTRAINED_VARIANTS = [
  "none",
  "1 of 8 constrained",
  "1 of 8 constrained, readbacks every stepsPerSync",
  "1 of 8 constrained, no jump-forward",
] as const;
export type ConstrainedVariant = (typeof CONSTRAINED_VARIANTS)[number];

/** One variant's figures (medians over the repetitions). */
export interface ConstrainedVariantResult {
  variant: ConstrainedVariant;
  /** All 8 sequences' output tokens / wall time. */
  batchTokPerS: number;
  /** The 7 sequences that are never constrained: their tokens / time until the last ended. */
  othersTokPerS: number;
  /** The constrained sequence's tokens / its own time (null when none is). */
  constrainedTokPerS: number | null;
  /** Of the constrained sequence's tokens, those appended by jump-forward (not sampled). */
  forcedTokens: number | null;
  wallS: number;
  /** Wall time of each repetition. */
  wallsS: number[];
}

/** The section's result. */
export interface ConstrainedResult {
  model: string;
  sequences: number;
  outputTokens: number;
  repeats: number;
  /** The constraint: a JSON schema (an array of 64 small objects). */
  schema: Record<string, unknown>;
  variants: ConstrainedVariantResult[];
  /**
   * 1 - others' tok/s with one constrained (defaults) / with none (positive: the others
   * slowed down).
   */
  othersCost: number;
  /** Whether the 7 unconstrained outputs were identical in every variant and repetition. */
  othersIdentical: boolean;
  /** First constrained request on a fresh engine: probe compile, xgrammar load, engine compile (ms). */
  coldStartMs: number;
}

/** A JSON schema whose valid outputs are far longer than the bench's outputs. */
export const BENCH_SCHEMA: Record<string, unknown> = {
  type: "array",
  items: {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 8 },
      age: { type: "integer", minimum: 0, maximum: 99 },
    },
    required: ["name", "age"],
    additionalProperties: false,
  },
  minItems: 64,
  maxItems: 64,
};

interface SeqTiming {
  ids: number[];
  endMs: number;
}

async function runSeq(engine: EngineClient, options: GenerateOptions, t0: number): Promise<SeqTiming> {
  const ids: number[] = [];
  for await (const d of engine.stream(options)) ids.push(...d.ids);
  return { ids, endMs: performance.now() - t0 };
}

/** Runs the variants interleaved on two engines (the default, and one whose constrained rows leave the readbacks alone). */
export async function benchConstrained(
  options: ConstrainedBenchOptions,
  log: (line: string) => void = () => {},
): Promise<ConstrainedResult> {
  const sync = options.stepsPerSync ?? 8;
  const open = (constrainedStepsPerSync?: number) =>
    createEngine({
      model: options.model,
      maxSeqs: 8,
      maxBatchTokens: options.maxBatchTokens ?? 256,
      maxContext: 1024,
      stepsPerSync: sync,
      constrainedStepsPerSync,
    });
  const engine = await open();
  const plain = await open(sync);
  try {
    const prompts = makeWorkload({ vocab: 512, bosId: 1, requests: 8, promptLen: [16, 32], seed: 3 }).map((r) => r.promptIds);
    const base = (i: number): GenerateOptions => ({ prompt: prompts[i], maxTokens: options.outputTokens, ignoreEos: true, temperature: 0 });
    const responseFormat = { type: "json_schema" as const, schema: BENCH_SCHEMA };
    // Warm-up: every batch size's kernels, then the grammar (cold start timed on its own).
    let coldStartMs = 0;
    for (const e of [engine, plain]) {
      for (const n of [1, 2, 4, 8]) await Promise.all(Array.from({ length: n }, (_, i) => e.generate({ ...base(i), maxTokens: 4 })));
      const c0 = performance.now();
      await e.generate({ ...base(0), maxTokens: 4, responseFormat });
      if (e === engine) coldStartMs = performance.now() - c0;
      await e.generate({ ...base(0), maxTokens: 4, responseFormat, logprobs: true });
    }

    const walls = new Map<ConstrainedVariant, { wall: number; batch: number; others: number; own: number | null; forced: number | null }[]>();
    let reference: number[][] | null = null;
    let identical = true;
    for (let rep = 0; rep < options.repeats; rep++) {
      for (const variant of CONSTRAINED_VARIANTS) {
        const e = variant === "1 of 8 constrained, readbacks every stepsPerSync" ? plain : engine;
        const before = e.stats();
        const t0 = performance.now();
        const jobs = prompts.map((_, i) => {
          const o = base(i);
          if (i === 0 && variant !== "none") {
            o.responseFormat = responseFormat;
            if (variant === "1 of 8 constrained, no jump-forward") o.logprobs = true;
          }
          return runSeq(e, o, t0);
        });
        const done = await Promise.all(jobs);
        const wall = (performance.now() - t0) / 1000;
        // Stats arrive from the engine's Worker a moment after the last token.
        await new Promise((r) => setTimeout(r, 100));
        const after = e.stats();
        const others = done.slice(1);
        const othersIds = others.map((d) => d.ids);
        if (reference === null) reference = othersIds;
        else if (JSON.stringify(reference) !== JSON.stringify(othersIds)) identical = false;
        const tokens = done.reduce((n, d) => n + d.ids.length, 0);
        const othersTokens = others.reduce((n, d) => n + d.ids.length, 0);
        const othersEnd = Math.max(...others.map((d) => d.endMs)) / 1000;
        const promptTokens = prompts.reduce((n, p) => n + p.length, 0);
        const list = walls.get(variant) ?? [];
        list.push({
          wall,
          batch: tokens / wall,
          others: othersTokens / othersEnd,
          own: variant === "none" ? null : done[0].ids.length / (done[0].endMs / 1000),
          // Prefill beyond the prompts: the forced tokens the grammar appended.
          forced: variant === "none" ? null : after.prefillTokens - before.prefillTokens - promptTokens + after.prefixCacheHits - before.prefixCacheHits,
        });
        walls.set(variant, list);
        log(`  ${variant}: ${(tokens / wall).toFixed(1)} tok/s (others ${(othersTokens / othersEnd).toFixed(1)})`);
      }
    }
    const variants = CONSTRAINED_VARIANTS.map((variant): ConstrainedVariantResult => {
      const runs = walls.get(variant)!;
      const med = (xs: (number | null)[]) => (xs[0] === null ? null : median(xs as number[]));
      return {
        variant,
        batchTokPerS: median(runs.map((r) => r.batch)),
        othersTokPerS: median(runs.map((r) => r.others)),
        constrainedTokPerS: med(runs.map((r) => r.own)),
        forcedTokens: med(runs.map((r) => r.forced)),
        wallS: median(runs.map((r) => r.wall)),
        wallsS: runs.map((r) => r.wall),
      };
    });
    return {
      model: options.model,
      sequences: 8,
      outputTokens: options.outputTokens,
      repeats: options.repeats,
      schema: BENCH_SCHEMA,
      variants,
      othersCost: 1 - variants[1].othersTokPerS / variants[0].othersTokPerS,
      othersIdentical: identical,
      coldStartMs,
    };
  } finally {
    await engine.close();
    await plain.close();
  }
}
