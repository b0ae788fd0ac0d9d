/**
 * llama.cpp as a peer, through node-llama-cpp (npm, its prebuilt CPU binaries; Deno loads it
 * through deno.json's npm: import, Bun from node_modules): the bench converts the checkpoint
 * to GGUF itself and runs the same prompts greedily, one stream and `parallel` sequences in
 * one context, against our engine on the same weights. Tokens/s = generated tokens / wall
 * time of the whole request (short prompt prefill included) on both sides. node-llama-cpp is
 * imported only when the peer section runs ({@link loadLlamaCpp}), so nothing else needs it.
 * @module
 */
import type { Llama, Token } from "node-llama-cpp";
import { createEngine } from "../mod.ts";
import { RUNTIME, runtimeInfo } from "../src/runtime/runtime.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { SectionSkipped } from "./report.ts";

const NODE_LLAMA_CPP_VERSION = "3.21.1";

/**
 * Loads node-llama-cpp and its prebuilt CPU binary, or throws {@link SectionSkipped} with
 * "node-llama-cpp not available under <runtime>: <reason>". Dispose the result when done.
 */
export async function loadLlamaCpp(): Promise<Llama> {
  // A variable specifier: neither runtime resolves it before the peer section asks for it.
  const name = "node-llama-cpp";
  try {
    const m: typeof import("node-llama-cpp") = await import(name);
    return await m.getLlama({ gpu: false, build: "never", logLevel: m.LlamaLogLevel.error });
  } catch (e) {
    throw new SectionSkipped(
      `node-llama-cpp not available under ${RUNTIME}: ${(e as Error).message ?? e}`,
    );
  }
}

/** Options of {@link benchPeer}. */
export interface PeerOptions {
  model: string;
  /** Where the GGUF file goes (a temp dir). */
  ggufPath: string;
  prompts: number[][];
  outputTokens: number;
  parallel: number;
  threads: number;
  /** Our engine's options for the comparison. */
  maxContext: number;
  /** From {@link loadLlamaCpp}. */
  llama: Llama;
  /** Alternating rounds (default 1). */
  rounds?: number;
  /**
   * A `performance.now()` time: a round after the first starts only if, taking as long as the
   * one before, it ends by then (`--quick`'s time budget). `rounds` in the result is what ran.
   */
  stopBy?: number;
}

/** One side's numbers. */
export interface PeerSide {
  singleTokPerS: number;
  parallelTokPerS: number;
}

/** The peer section for one model. */
export interface PeerResult {
  model: string;
  runtime: string;
  gguf: { bytes: number; tensors: number; fileType: string };
  /** Whether llama.cpp's greedy continuation of the first prompt equals ours. */
  sameGreedyTokens: boolean;
  matchingPrefix: number;
  outputTokens: number;
  parallel: number;
  threads: number;
  llamaCpp: PeerSide;
  ours: PeerSide;
  /** ours / llama.cpp. */
  singleRatio: number;
  parallelRatio: number;
  rounds: number;
  /** Every round's tok/s, in order (llama.cpp and ours alternate). */
  samples: { llamaSingle: number[]; oursSingle: number[]; llamaPar: number[]; oursPar: number[] };
}

/** Whether a round taking `lastRoundMs` (as the last one did) and starting `now` ends by `stopBy`. */
export function anotherRoundFits(now: number, lastRoundMs: number, stopBy: number | undefined): boolean {
  return stopBy === undefined || now + lastRoundMs <= stopBy;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Loads both sides on the same GGUF-converted weights and prompts, warms both of llama.cpp's
 * paths (its first generations after loading are far slower), then alternates the two round
 * by round (llama.cpp single, ours single, llama.cpp parallel, ours parallel): on a shared
 * machine the load changes by the minute, and only interleaved runs give ratios that mean
 * something. Rates are medians over the rounds.
 */
export async function benchPeer(options: PeerOptions): Promise<PeerResult> {
  const conversion = await convertToGguf(options.model, options.ggufPath);
  const n = options.outputTokens;
  const par = options.prompts.slice(0, options.parallel);
  const rounds = Math.max(1, options.rounds ?? 1);

  const model = await options.llama.loadModel({ modelPath: options.ggufPath });
  const contextSize = Math.max(...options.prompts.map((p) => p.length)) + n + 8;
  const context = await model.createContext({
    contextSize: contextSize * options.parallel,
    sequences: options.parallel,
    threads: options.threads,
    batchSize: 512,
  });
  const engine = await createEngine({
    model: options.model,
    maxSeqs: options.parallel,
    maxContext: options.maxContext,
  });
  let llamaFirst: number[] = [];
  let roundsRun = 0;
  let ourFirst: number[] = [];
  const samples = { llamaSingle: [] as number[], llamaPar: [] as number[], oursSingle: [] as number[], oursPar: [] as number[] };
  try {
    const seqs = Array.from({ length: options.parallel }, () => context.getSequence());
    const llamaGen = async (i: number, prompt: number[], tokens: number) => {
      const out: number[] = [];
      for await (const t of seqs[i].evaluate(prompt as Token[], { temperature: 0 })) {
        out.push(t as number);
        if (out.length >= tokens) break;
      }
      await seqs[i].clearHistory();
      return out;
    };
    const ourGen = (prompt: number[], tokens: number) =>
      engine.generate({ prompt, maxTokens: tokens, ignoreEos: true, temperature: 0 }).then((r) => r.ids);
    const rate = async (run: () => Promise<number[][]>) => {
      const t0 = performance.now();
      const outs = await run();
      return { outs, tokPerS: outs.reduce((a, o) => a + o.length, 0) / ((performance.now() - t0) / 1000) };
    };
    // Warm-up: both llama.cpp paths and every row tile of ours.
    await llamaGen(0, [1, 5, 6, 7], 16);
    await Promise.all(par.map((p, i) => llamaGen(i, p, 16)));
    await ourGen([1, 5, 6, 7], 4);
    await Promise.all(par.map((p) => ourGen(p, 4)));
    let done = 0;
    for (let r = 0; r < rounds; r++) {
      const roundStart = performance.now();
      const ls = await rate(async () => [await llamaGen(0, options.prompts[0], n)]);
      const os = await rate(async () => [await ourGen(options.prompts[0], n)]);
      const lp = await rate(() => Promise.all(par.map((p, i) => llamaGen(i, p, n))));
      const op = await rate(() => Promise.all(par.map((p) => ourGen(p, n))));
      if (r === 0) [llamaFirst, ourFirst] = [ls.outs[0], os.outs[0]];
      samples.llamaSingle.push(ls.tokPerS);
      samples.oursSingle.push(os.tokPerS);
      samples.llamaPar.push(lp.tokPerS);
      samples.oursPar.push(op.tokPerS);
      done++;
      const took = performance.now() - roundStart;
      if (!anotherRoundFits(performance.now(), took, options.stopBy)) break;
    }
    roundsRun = done;
  } finally {
    await engine.close();
    await context.dispose();
    await model.dispose();
  }
  const llamaCpp: PeerSide = { singleTokPerS: median(samples.llamaSingle), parallelTokPerS: median(samples.llamaPar) };
  const ours: PeerSide = { singleTokPerS: median(samples.oursSingle), parallelTokPerS: median(samples.oursPar) };
  let prefix = 0;
  while (
    prefix < Math.min(ourFirst.length, llamaFirst.length) && ourFirst[prefix] === llamaFirst[prefix]
  ) prefix++;
  return {
    model: options.model,
    runtime:
      `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (prebuilt CPU binary) loaded by ${runtimeInfo().runtime}`,
    gguf: { bytes: conversion.bytes, tensors: conversion.tensors, fileType: conversion.fileType },
    sameGreedyTokens: prefix === n && llamaFirst.length === n,
    matchingPrefix: prefix,
    outputTokens: n,
    parallel: options.parallel,
    threads: options.threads,
    llamaCpp,
    ours,
    singleRatio: ours.singleTokPerS / llamaCpp.singleTokPerS,
    parallelRatio: ours.parallelTokPerS / llamaCpp.parallelTokPerS,
    rounds: roundsRun,
    samples,
  };
}
