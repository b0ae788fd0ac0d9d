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
}

/** Runs llama.cpp then our engine on the same GGUF-converted weights and prompts. */
export async function benchPeer(options: PeerOptions): Promise<PeerResult> {
  const conversion = await convertToGguf(options.model, options.ggufPath);
  const n = options.outputTokens;
  const par = options.prompts.slice(0, options.parallel);

  const model = await options.llama.loadModel({ modelPath: options.ggufPath });
  const contextSize = Math.max(...options.prompts.map((p) => p.length)) + n + 8;
  const context = await model.createContext({
    contextSize: contextSize * options.parallel,
    sequences: options.parallel,
    threads: options.threads,
    batchSize: 512,
  });
  let llamaFirst: number[] = [];
  const llamaCpp: PeerSide = { singleTokPerS: 0, parallelTokPerS: 0 };
  try {
    const generate = async (seq: ReturnType<typeof context.getSequence>, prompt: number[]) => {
      const out: number[] = [];
      for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
        out.push(t as number);
        if (out.length >= n) break;
      }
      return out;
    };
    const seqs = Array.from({ length: options.parallel }, () => context.getSequence());
    await generate(seqs[0], [1, 5, 6, 7]); // warm-up
    await seqs[0].clearHistory();
    let t0 = performance.now();
    llamaFirst = await generate(seqs[0], options.prompts[0]);
    llamaCpp.singleTokPerS = llamaFirst.length / ((performance.now() - t0) / 1000);
    await seqs[0].clearHistory();
    t0 = performance.now();
    const outs = await Promise.all(par.map((p, i) => generate(seqs[i], p)));
    llamaCpp.parallelTokPerS = outs.reduce((a, o) => a + o.length, 0) /
      ((performance.now() - t0) / 1000);
  } finally {
    await context.dispose();
    await model.dispose();
  }

  const engine = await createEngine({
    model: options.model,
    maxSeqs: options.parallel,
    maxContext: options.maxContext,
  });
  const ours: PeerSide = { singleTokPerS: 0, parallelTokPerS: 0 };
  let ourFirst: number[] = [];
  try {
    const gen = (prompt: number[]) =>
      engine.generate({ prompt, maxTokens: n, ignoreEos: true, temperature: 0 });
    await gen([1, 5, 6, 7]);
    let t0 = performance.now();
    ourFirst = (await gen(options.prompts[0])).ids;
    ours.singleTokPerS = ourFirst.length / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    const outs = await Promise.all(par.map(gen));
    ours.parallelTokPerS = outs.reduce((a, o) => a + o.ids.length, 0) /
      ((performance.now() - t0) / 1000);
  } finally {
    await engine.close();
  }
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
  };
}
