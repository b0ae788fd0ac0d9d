/**
 * The quant section: f16, Q8_0 and Q4_0 weights of one model (the SmolLM2-135M-shaped
 * synthetic model) side by side, ours next to llama.cpp (node-llama-cpp) on a GGUF file of the
 * same type written by our converter (the same blocks as our load-time quantization):
 * weight bytes on the GPU, load time, decode tok/s with one stream and with `parallel`
 * streams, and the peak host memory of a load (RSS high-water mark, measured in a child
 * process, {@link ./quant_load_probe.ts}) against its bound: the largest tensor's f32 size +
 * the runtime's baseline + the bytes uploaded (on a CPU adapter GPU buffers are host memory
 * too). The baseline is the peak of the same probe loading a tiny model (`baselineModel`,
 * stories260K: runtime, adapter and shader compilers, ~1 MB of weights), since compiling the
 * kernels alone raises the high-water mark by tens of MB on lavapipe. Our side runs the default (exact) path
 * and, for the quantized types, the fast path (`quantizedActivations`).
 *
 * Decode runs every engine (ours exact and fast, llama.cpp) loaded at once, round-robin over
 * `rounds` rounds with a rotating start, and reports medians: on a shared machine a busy
 * moment then slows every variant alike instead of one type's whole measurement.
 *
 * Standalone: `deno run -A bench/quant_section.ts [--tokens N] [--rounds N] [--model DIR]`.
 * @module
 */
import { execFile } from "node:child_process";
import type { Llama, Token } from "node-llama-cpp";
import { createEngine } from "../mod.ts";
import type { Quantization } from "../src/types/api.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import * as rt from "../src/runtime/runtime.ts";
import type { LoadProbe } from "./quant_load_probe.ts";
import { loadLlamaCpp } from "./peer_llama_cpp.ts";

/** One weight type's row. */
export interface QuantRow {
  type: "f16" | "q8_0" | "q4_0";
  load: LoadProbe & { boundBytes: number; withinBound: boolean };
  /** Load of the GGUF file of this type (the same blocks). */
  ggufLoad: LoadProbe;
  ggufBytes: number;
  ours: { singleTokPerS: number; parallelTokPerS: number };
  /** Quantized types: the fast path (activations quantized too). */
  oursFast?: { singleTokPerS: number; parallelTokPerS: number };
  llamaCpp: { singleTokPerS: number; parallelTokPerS: number } | null;
}

/** The section's result. */
export interface QuantSectionResult {
  model: string;
  outputTokens: number;
  parallel: number;
  threads: number;
  largestTensorF32Bytes: number;
  /** The tiny model's load peak (the bound's baseline). */
  baselineHwmBytes: number;
  /** Decode rounds; each figure is the median over them. */
  rounds: number;
  rows: QuantRow[];
  notes: string[];
}

/** Options of {@link benchQuant}. */
export interface QuantSectionOptions {
  model: string;
  /** Temp dir for the GGUF files. */
  tmp: string;
  prompts: number[][];
  outputTokens: number;
  parallel: number;
  threads: number;
  /** A tiny model whose load peak is the runtime's baseline. */
  baselineModel: string;
  /** Interleaved decode rounds (each variant once a round; medians reported). */
  rounds?: number;
  /** Whether the fast path (quantized activations) is measured too (default true). */
  fastPath?: boolean;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(String(stdout));
    });
  });
}

/** Loads `model` in a child process and returns its probe line. */
async function probe(model: string, quantization: Quantization): Promise<LoadProbe> {
  const script = new URL("./quant_load_probe.ts", import.meta.url).pathname;
  const { cmd, args } = rt.scriptCommand(script, [model, quantization]);
  const out = await run(cmd, args);
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

async function largestTensorF32(model: string): Promise<number> {
  const index = await openCheckpointTensors(model);
  try {
    return Math.max(...index.names().map((n) => 4 * index.get(n).shape.reduce((a, b) => a * b, 1)));
  } finally {
    index.close();
  }
}

/** Decode tok/s of one stream and of `parallel` streams. */
type DecodeRate = { singleTokPerS: number; parallelTokPerS: number };

/** One engine (ours or llama.cpp) kept loaded across the rounds. */
interface Decoder {
  /** One stream, then `parallel` streams at once (tok/s of the whole requests). */
  measure(): Promise<DecodeRate>;
  close(): Promise<void>;
}

async function oursDecoder(
  model: string,
  quantization: Quantization,
  quantizedActivations: boolean,
  o: QuantSectionOptions,
): Promise<Decoder> {
  const engine = await createEngine({
    model,
    quantization,
    quantizedActivations,
    maxSeqs: o.parallel,
    maxContext: 256,
  });
  const gen = (prompt: number[]) =>
    engine.generate({ prompt, maxTokens: o.outputTokens, ignoreEos: true, temperature: 0 });
  await gen([1, 5, 6, 7]);
  return {
    async measure() {
      let t0 = performance.now();
      const one = await gen(o.prompts[0]);
      const singleTokPerS = one.ids.length / ((performance.now() - t0) / 1000);
      t0 = performance.now();
      const outs = await Promise.all(o.prompts.slice(0, o.parallel).map(gen));
      const parallelTokPerS = outs.reduce((a, r) => a + r.ids.length, 0) /
        ((performance.now() - t0) / 1000);
      return { singleTokPerS, parallelTokPerS };
    },
    close: () => engine.close(),
  };
}

async function llamaDecoder(llama: Llama, gguf: string, o: QuantSectionOptions): Promise<Decoder> {
  const model = await llama.loadModel({ modelPath: gguf });
  const contextSize = Math.max(...o.prompts.map((p) => p.length)) + o.outputTokens + 8;
  const context = await model.createContext({
    contextSize: contextSize * o.parallel,
    sequences: o.parallel,
    threads: o.threads,
    batchSize: 512,
  });
  const seqs = Array.from({ length: o.parallel }, () => context.getSequence());
  const generate = async (seq: ReturnType<typeof context.getSequence>, prompt: number[]) => {
    const out: number[] = [];
    for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
      out.push(t as number);
      if (out.length >= o.outputTokens) break;
    }
    await seq.clearHistory();
    return out;
  };
  await generate(seqs[0], [1, 5, 6, 7]);
  return {
    async measure() {
      let t0 = performance.now();
      const one = await generate(seqs[0], o.prompts[0]);
      const singleTokPerS = one.length / ((performance.now() - t0) / 1000);
      t0 = performance.now();
      const outs = await Promise.all(
        o.prompts.slice(0, o.parallel).map((p, i) => generate(seqs[i], p)),
      );
      const parallelTokPerS = outs.reduce((a, r) => a + r.length, 0) /
        ((performance.now() - t0) / 1000);
      return { singleTokPerS, parallelTokPerS };
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Measures every decoder `rounds` times, round-robin with a rotating start (a busy minute on a
 * shared machine then hits every variant, not one), and returns the medians.
 */
async function interleaved(decoders: Map<string, Decoder>, rounds: number): Promise<Map<string, DecodeRate>> {
  const names = [...decoders.keys()];
  const seen = new Map(names.map((n) => [n, [] as DecodeRate[]]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length];
      seen.get(name)!.push(await decoders.get(name)!.measure());
    }
  }
  return new Map(names.map((n) => {
    const rs = seen.get(n)!;
    return [n, {
      singleTokPerS: median(rs.map((x) => x.singleTokPerS)),
      parallelTokPerS: median(rs.map((x) => x.parallelTokPerS)),
    }];
  }));
}

/** Runs the section (types one after another: a noisy shared machine, see the notes). */
export async function benchQuant(
  o: QuantSectionOptions,
  log: (line: string) => void = console.log,
): Promise<QuantSectionResult> {
  const notes: string[] = [];
  const largest = await largestTensorF32(o.model);
  const baseline = await probe(o.baselineModel, "none");
  let llama: Llama | null = null;
  try {
    llama = await loadLlamaCpp();
  } catch (e) {
    notes.push(`llama.cpp side skipped: ${(e as Error).message}`);
  }
  const rounds = o.rounds ?? 3;
  const types = ["f16", "q8_0", "q4_0"] as const;
  const loads = new Map<string, Pick<QuantRow, "load" | "ggufLoad" | "ggufBytes">>();
  const decoders = new Map<string, Decoder>();
  let rates: Map<string, DecodeRate>;
  try {
    // Loads (each in a child process, for its memory peak), then every engine at once.
    for (const type of types) {
      const quantization: Quantization = type === "f16" ? "none" : type;
      const gguf = `${o.tmp}/${type}.gguf`;
      const conversion = await convertToGguf(o.model, gguf, { quantization });
      const load = await probe(o.model, quantization);
      const ggufLoad = await probe(gguf, "none");
      const boundBytes = largest + baseline.peakHwmBytes + load.weightBytes;
      loads.set(type, {
        load: { ...load, boundBytes, withinBound: load.peakHwmBytes <= boundBytes },
        ggufLoad,
        ggufBytes: conversion.bytes,
      });
      decoders.set(`ours ${type}`, await oursDecoder(o.model, quantization, false, o));
      if (type !== "f16" && o.fastPath !== false) decoders.set(`fast ${type}`, await oursDecoder(o.model, quantization, true, o));
      if (llama) decoders.set(`llama.cpp ${type}`, await llamaDecoder(llama, gguf, o));
    }
    log(`  decode: ${decoders.size} engines, ${rounds} interleaved round(s)...`);
    rates = await interleaved(decoders, rounds);
  } finally {
    for (const d of decoders.values()) await d.close();
    await llama?.dispose();
  }
  const rows: QuantRow[] = types.map((type) => ({
    type,
    ...loads.get(type)!,
    ours: rates.get(`ours ${type}`)!,
    oursFast: rates.get(`fast ${type}`),
    llamaCpp: rates.get(`llama.cpp ${type}`) ?? null,
  }));
  const f = (v: number) => v.toFixed(2);
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  for (const r of rows) {
    log(
      `  ${r.type}: weights ${(r.load.weightBytes / 2 ** 20).toFixed(1)} MiB, load ${f(r.load.loadS)} s ` +
        `(gguf ${f(r.ggufLoad.loadS)} s), peak RSS ${mib(r.load.peakHwmBytes)} MiB (gguf ${mib(r.ggufLoad.peakHwmBytes)}; ` +
        `bound ${mib(r.load.boundBytes)}), ours ${f(r.ours.singleTokPerS)} / ${f(r.ours.parallelTokPerS)} tok/s` +
        (r.oursFast ? `, fast ${f(r.oursFast.singleTokPerS)} / ${f(r.oursFast.parallelTokPerS)}` : "") +
        (r.llamaCpp ? `, llama.cpp ${f(r.llamaCpp.singleTokPerS)} / ${f(r.llamaCpp.parallelTokPerS)}` : ""),
    );
  }
  notes.push(
    `decode figures are medians of ${rounds} interleaved round(s), every engine loaded at once (a busy moment hits every variant); a shared 2-core machine: compare within a run`,
  );
  return {
    model: o.model,
    outputTokens: o.outputTokens,
    parallel: o.parallel,
    threads: o.threads,
    largestTensorF32Bytes: largest,
    baselineHwmBytes: baseline.peakHwmBytes,
    rounds,
    rows,
    notes,
  };
}

if (import.meta.main) {
  const argv = rt.args();
  const flag = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const { writeSyntheticModel } = await import("./synthetic_model.ts");
  const { makeWorkload } = await import("./workload.ts");
  const tmp = await rt.makeTempDir("quant-bench-");
  try {
    const stories = new URL("../tests/fixtures/models/stories260K", import.meta.url).pathname;
    let model = flag("--model");
    if (!model) {
      model = `${tmp}/smollm2-135m-synthetic`;
      await writeSyntheticModel(model, { tokenizerDir: stories });
    }
    const vocab = JSON.parse(await rt.readTextFile(`${model}/config.json`)).vocab_size as number;
    const prompts = makeWorkload({ vocab, bosId: 1, requests: 8, promptLen: [16, 32], seed: 3 })
      .map((r) => r.promptIds);
    const result = await benchQuant({
      model,
      tmp,
      prompts,
      outputTokens: Number(flag("--tokens") ?? 16),
      rounds: Number(flag("--rounds") ?? 3),
      parallel: 8,
      threads: navigator.hardwareConcurrency || 2,
      baselineModel: stories,
    });
    const out = flag("--json");
    if (out) await rt.writeFile(out, JSON.stringify(result, null, 2));
    else console.log(JSON.stringify(result, null, 2));
  } finally {
    await rt.remove(tmp);
  }
}
