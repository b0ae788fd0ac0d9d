/**
 * Whole decode steps of the SmolLM2-135M-shaped synthetic model: the prototype kernels
 * assembled by `decoder.ts` against the current forward pass (`ModelRunner`) on the same
 * checkpoint, in the same run: a logits cross-check, GPU time per step for 1 and 8 sequences
 * at contexts 128..4096 (interleaved), per-op time, dispatches per step, and the wall time
 * of a decode loop that keeps token ids on the GPU (one wait per 32 steps).
 * @module
 */
import type { GpuKit } from "./gpu_kit.ts";
import { type Timed, timeInterleaved } from "./timing.ts";
import { type NormMode, ProtoDecoder } from "./decoder.ts";
import { loadHostWeights } from "./host_weights.ts";
import { ModelRunner } from "../../src/model/model_runner.ts";
import {
  buildStepBatch,
  type SequenceChunk,
  type StepCapacity,
} from "../../src/model/step_batch.ts";
import { GpuTimer } from "../gpu_timer.ts";
import { percentile } from "../stats.ts";
import type { LlamaCppPeer, PeerRates } from "./bench_peer.ts";

/** One step-time measurement. */
export interface StepRow {
  impl: string;
  seqs: number;
  context: number;
  gpuMs: number;
  cpuMs: number;
  dispatches: number;
}

/** Per-op times of one step. */
export interface OpRow {
  impl: string;
  seqs: number;
  op: string;
  dispatches: number;
  ms: number;
}

/** The decode loop's wall time (median over the rounds), next to llama.cpp's in the same rounds. */
export interface LoopRow {
  impl: string;
  seqs: number;
  steps: number;
  msPerStep: number;
  tokPerS: number;
  /** llama.cpp tok/s, median of the runs alternating with ours (when the peer ran). */
  peerTokPerS?: number;
  /** Median of the per-round ratios ours / llama.cpp. */
  ratio?: number;
}

/** The section's results. */
export interface StepSection {
  /** Max |proto - current| / max |current| over a 16-token prefill's logits. */
  logitsRelDiff: { norm: NormMode | "gamma + f16 KV"; relDiff: number }[];
  steps: StepRow[];
  ops: OpRow[];
  loops: LoopRow[];
  /** Packed weight bytes of the prototype decoder. */
  weightBytes: number;
  /** llama.cpp's rates from the alternating rounds. */
  peer?: PeerRates;
}

const BS = 16;

function decodeChunks(
  seqs: number,
  context: number,
  perSeq: number,
  token: (s: number) => number,
): SequenceChunk[] {
  return Array.from({ length: seqs }, (_, s) => ({
    tokens: [token(s)],
    start: context - 1,
    blockTable: Array.from({ length: Math.ceil(context / BS) }, (_, j) => s * perSeq + j),
    logits: "last" as const,
  }));
}

const family = (label: string) => label.replace(/^l\d+\./, "").replace(/\[\d+\]$/, "");

/** Runs the section on a synthetic checkpoint directory. */
export async function benchSteps(
  kit: GpuKit,
  options: {
    modelDir: string;
    contexts: number[];
    seqs: number[];
    rounds: number;
    loopSteps: number;
    log: (s: string) => void;
    /** llama.cpp, alternated with our decode loop round by round. */
    peer?: LlamaCppPeer;
    peerRounds?: number;
  },
): Promise<StepSection> {
  const { spec, weights } = await loadHostWeights(options.modelDir);
  const maxContext = Math.max(...options.contexts);
  const perSeq = Math.ceil(maxContext / BS);
  const maxSeqs = Math.max(...options.seqs);
  const numBlocks = maxSeqs * perSeq + 1;
  const configs = options.seqs.flatMap((seqs) =>
    options.contexts.map((context) => ({ seqs, context }))
  );
  const cap: StepCapacity = {
    maxTokens: 64,
    maxSeqs,
    maxLogitRows: 16,
    maxBlocksPerSeq: perSeq,
    samplingWordsPerRow: 0,
  };
  options.log(
    `  loading the current pass and the prototype decoder (${numBlocks} KV blocks each)...`,
  );
  const runner = await ModelRunner.load(options.modelDir, {
    gpu: kit.gpu,
    maxTokens: 64,
    maxSeqs,
    maxLogitRows: 16,
    blockSize: BS,
    numBlocks,
    maxContext,
    metaSlots: configs.length + 1,
  });
  const proto = new ProtoDecoder(kit, spec, weights, {
    family: "cpu",
    norm: "gamma",
    capacity: cap,
    blockSize: BS,
    numBlocks,
    metaSlots: configs.length + 1,
  });
  const protoF16 = new ProtoDecoder(kit, spec, weights, {
    family: "cpu",
    norm: "gamma",
    capacity: cap,
    blockSize: BS,
    numBlocks,
    metaSlots: configs.length + 1,
    kvF16: true,
  });
  const V = spec.vocabSize;
  try {
    // Cross-check: a 16-token prefill through both (and through the folded-norm variant).
    const prompt = Array.from({ length: 16 }, (_, i) => 100 + 37 * i);
    const prefill = buildStepBatch(
      [{ tokens: prompt, start: 0, blockTable: [0], logits: "all" }],
      BS,
    );
    const current = (await runner.run(prefill, { logits: true })).logits!;
    const relDiff = async (dec: ProtoDecoder) => {
      const shape = dec.writeStep(prefill, 0);
      const encoder = kit.device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      dec.encode(pass, shape, shape.offset);
      pass.end();
      kit.device.queue.submit([encoder.finish()]);
      const ours = await kit.readF32(dec.logits, 16 * V);
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < ours.length; i++) {
        diff = Math.max(diff, Math.abs(ours[i] - current[i]));
        scale = Math.max(scale, Math.abs(current[i]));
      }
      return diff / scale;
    };
    const logitsRelDiff: StepSection["logitsRelDiff"] = [
      { norm: "gamma", relDiff: await relDiff(proto) },
      { norm: "gamma + f16 KV" as const, relDiff: await relDiff(protoF16) },
    ];
    {
      const folded = new ProtoDecoder(kit, spec, weights, {
        family: "cpu",
        norm: "fold",
        capacity: { ...cap, maxBlocksPerSeq: 2 },
        blockSize: BS,
        numBlocks: 2,
      });
      logitsRelDiff.push({ norm: "fold", relDiff: await relDiff(folded) });
    }
    for (const r of logitsRelDiff) {
      options.log(`  logits vs current pass (norm ${r.norm}): ${r.relDiff.toExponential(2)}`);
    }

    // Step times, every (seqs, context) in its own metadata slot, interleaved.
    const items: Timed[] = [];
    const steps: Omit<StepRow, "gpuMs" | "cpuMs">[] = [];
    configs.forEach(({ seqs, context }, i) => {
      const batch = buildStepBatch(decodeChunks(seqs, context, perSeq, (s) => 5 + s), BS);
      const shape = { tokens: seqs, logitRows: seqs, maxContext: context };
      const offset = runner.writeStep(batch);
      items.push({
        id: `current ${seqs}x${context}`,
        encode: (pass) => runner.forward.encode(pass, offset, shape),
      });
      steps.push({
        impl: "current forward pass",
        seqs,
        context,
        dispatches: runner.forward.dispatchCount,
      });
      const pshape = proto.writeStep(batch, i + 1);
      items.push({
        id: `proto ${seqs}x${context}`,
        encode: (pass) => proto.encode(pass, pshape, pshape.offset),
      });
      steps.push({
        impl: "prototype kernels",
        seqs,
        context,
        dispatches: proto.plan(pshape).length,
      });
      const fshape = protoF16.writeStep(batch, i + 1);
      items.push({
        id: `proto f16 ${seqs}x${context}`,
        encode: (pass) => protoF16.encode(pass, fshape, fshape.offset),
      });
      steps.push({
        impl: "prototype kernels, f16 KV",
        seqs,
        context,
        dispatches: protoF16.plan(fshape).length,
      });
    });
    options.log(`  timing ${items.length} whole steps...`);
    const times = await timeInterleaved(kit.device, items, {
      rounds: options.rounds,
      targetPassMs: 1,
      maxReps: 1,
    });
    const stepRows = steps.map((s, i) => ({
      ...s,
      gpuMs: times.get(items[i].id)!.gpuMs,
      cpuMs: times.get(items[i].id)!.cpuMs,
    }));

    // Per-op time at the shortest context.
    const ops: OpRow[] = [];
    const c0 = Math.min(...options.contexts);
    for (const seqs of options.seqs) {
      const batch = buildStepBatch(decodeChunks(seqs, c0, perSeq, (s) => 5 + s), BS);
      const pshape = proto.writeStep(batch, 0);
      const plan = proto.plan(pshape);
      const timer = new GpuTimer(kit.device, plan.length);
      const samples: number[][] = plan.map(() => []);
      for (let r = 0; r < options.rounds; r++) {
        const encoder = kit.device.createCommandEncoder();
        plan.forEach((d, j) => {
          const pass = encoder.beginComputePass(timer.pass(j, d.label));
          pass.setPipeline(d.kernel.pipeline);
          pass.setBindGroup(0, d.group, [pshape.offset]);
          pass.dispatchWorkgroups(...d.grid);
          pass.end();
        });
        timer.resolve(encoder, plan.length);
        kit.device.queue.submit([encoder.finish()]);
        (await timer.read(plan.length)).forEach((ns, j) => samples[j].push(ns / 1e6));
      }
      timer.destroy();
      const byOp = new Map<string, { dispatches: number; ms: number }>();
      plan.forEach((d, j) => {
        const e = byOp.get(family(d.label)) ?? { dispatches: 0, ms: 0 };
        e.dispatches++;
        e.ms += percentile(samples[j], 50);
        byOp.set(family(d.label), e);
      });
      for (const [op, e] of byOp) ops.push({ impl: "prototype kernels", seqs, op, ...e });
    }

    // Decode loop: ids stay on the GPU (a token id with the top bit names last step's row).
    // Rounds alternate with llama.cpp's runs of the same length when the peer is there.
    const loops: LoopRow[] = [];
    let peerRates: PeerRates | undefined;
    const peerSingle: number[] = [];
    const peerParallel: number[] = [];
    for (const seqs of options.seqs) {
      const run = async (steps: number) => {
        const t0 = performance.now();
        for (let i = 0; i < steps; i++) {
          const batch = buildStepBatch(
            decodeChunks(seqs, c0 + i, perSeq, (s) => (i === 0 ? 5 + s : (0x80000000 | s) >>> 0)),
            BS,
          );
          const shape = proto.writeStep(batch, 0);
          const encoder = kit.device.createCommandEncoder();
          const pass = encoder.beginComputePass();
          proto.encode(pass, shape, shape.offset);
          pass.end();
          kit.device.queue.submit([encoder.finish()]);
        }
        await kit.device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / steps;
      };
      await run(2);
      const ours: number[] = [];
      const theirs: number[] = [];
      const ratios: number[] = [];
      const rounds = options.peer ? options.peerRounds ?? 3 : 1;
      for (let r = 0; r < rounds; r++) {
        const ms = await run(options.loopSteps);
        ours.push((seqs * 1000) / ms);
        if (options.peer) {
          const p = seqs === 1
            ? await options.peer.single(options.loopSteps)
            : await options.peer.parallelRate(options.loopSteps);
          theirs.push(p);
          ratios.push(ours.at(-1)! / p);
          (seqs === 1 ? peerSingle : peerParallel).push(p);
        }
      }
      const tok = percentile(ours, 50);
      const row: LoopRow = {
        impl: "prototype kernels",
        seqs,
        steps: options.loopSteps,
        msPerStep: (seqs * 1000) / tok,
        tokPerS: tok,
      };
      if (options.peer) {
        row.peerTokPerS = percentile(theirs, 50);
        row.ratio = percentile(ratios, 50);
      }
      loops.push(row);
      options.log(
        `  decode loop ${seqs} seq: ${row.msPerStep.toFixed(1)} ms/step, ${tok.toFixed(1)} tok/s` +
          (options.peer
            ? `; llama.cpp ${row.peerTokPerS!.toFixed(1)} tok/s, ratio ${row.ratio!.toFixed(2)}`
            : ""),
      );
    }
    if (options.peer) {
      peerRates = {
        singleTokPerS: percentile(peerSingle, 50),
        parallelTokPerS: percentile(peerParallel, 50),
        parallel: options.peer.parallel,
        outputTokens: options.loopSteps,
        threads: options.peer.threads,
      };
    }
    return {
      logitsRelDiff,
      steps: stepRows,
      ops,
      loops,
      weightBytes: proto.weightBytes,
      peer: peerRates,
    };
  } finally {
    runner.close();
  }
}
