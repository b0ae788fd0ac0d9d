/**
 * Attention for one layer of the SmolLM2-135M shape (9 heads, 3 kv heads, head dim 64, KV
 * blocks of 16): decode at contexts 128..4096 for 1 and 8 sequences, and a 256-token prefill,
 * the current `paged_attention.wgsl` against `attention_lanes` (+ `attention_combine` when
 * the keys are split). GB/s counts the K and V bytes every query's keys cover once.
 * @module
 */
import type { GpuKit } from "./gpu_kit.ts";
import { type Timed, timeInterleaved } from "./timing.ts";
import { PAGED_ATTENTION } from "../../src/gpu/descriptors.ts";
import {
  ATTENTION_COMBINE,
  ATTENTION_LANES,
  attentionLanes,
  packAttentionParams,
} from "../../src/gpu/kernel_families.ts";
import { buildStepBatch, type SequenceChunk } from "../../src/model/step_batch.ts";
import { Rng } from "../rng.ts";

/** One measured attention case. */
export interface AttentionRow {
  kernel: string;
  case: string;
  seqs: number;
  context: number;
  /** Query tokens per sequence. */
  queries: number;
  splits: number;
  gpuMs: number;
  cpuMs: number;
  gbps: number;
}

const NH = 9;
const NKV = 3;
const HD = 64;
const BS = 16;

/** Runs the attention cases. */
export async function benchAttention(
  kit: GpuKit,
  options: {
    contexts: number[];
    seqs: number[];
    prefill: number;
    splitLen: number;
    rounds: number;
    targetPassMs: number;
    log: (s: string) => void;
  },
): Promise<AttentionRow[]> {
  const rng = new Rng(20);
  const items: Timed[] = [];
  const rows: Omit<AttentionRow, "gpuMs" | "cpuMs">[] = [];
  const qkvCols = (NH + 2 * NKV) * HD;
  const lanes = attentionLanes(NH / NKV, HD, 4);
  const cases: { name: string; chunks: SequenceChunk[]; context: number; queries: number }[] = [];
  for (const seqs of options.seqs) {
    for (const context of options.contexts) {
      const per = Math.ceil(context / BS);
      cases.push({
        name: `decode ${seqs}x${context}`,
        context,
        queries: 1,
        chunks: Array.from({ length: seqs }, (_, s) => ({
          tokens: [1],
          start: context - 1,
          blockTable: Array.from({ length: per }, (_, j) => s * per + j),
          logits: "last" as const,
        })),
      });
    }
  }
  if (options.prefill > 0) {
    const n = options.prefill;
    cases.push({
      name: `prefill 1x${n}`,
      context: n,
      queries: n,
      chunks: [{
        tokens: Array(n).fill(1),
        start: 0,
        blockTable: Array.from({ length: Math.ceil(n / BS) }, (_, j) => j),
        logits: "last",
      }],
    });
  }
  for (const c of cases) {
    const batch = buildStepBatch(c.chunks, BS);
    const T = batch.tokenIds.length;
    const seqs = c.chunks.length;
    const blocks = c.chunks.reduce((n, ch) => n + ch.blockTable.length, 0);
    const maxBlocks = Math.max(...c.chunks.map((ch) => ch.blockTable.length));
    const meta = kit.meta(batch, {
      maxTokens: T,
      maxSeqs: seqs,
      maxLogitRows: T,
      maxBlocksPerSeq: maxBlocks,
      samplingWordsPerRow: 0,
    });
    const cacheWords = blocks * NKV * BS * HD;
    const k = kit.buffer(Float32Array.from({ length: cacheWords }, () => rng.next() - 0.5));
    const v = kit.buffer(Float32Array.from({ length: cacheWords }, () => rng.next() - 0.5));
    const qkv = kit.buffer(Float32Array.from({ length: T * qkvCols }, () => rng.next() - 0.5));
    const out = kit.buffer(T * NH * HD * 4);
    // Each query reads its keys' K and V rows once (causal prefill: the triangle).
    // GB/s counts f32 K/V bytes for every kernel (the f16 cache moves half of them).
    const keysRead = c.queries === 1 ? seqs * c.context : (c.queries * (c.queries + 1)) / 2;
    const bytes = keysRead * NKV * HD * 4 * 2;
    const add = (kernel: string, splits: number, encode: Timed["encode"]) => {
      const id = `${kernel} | ${c.name} | ${splits}`;
      items.push({ id, encode });
      rows.push({
        kernel,
        case: c.name,
        seqs,
        context: c.context,
        queries: c.queries,
        splits,
        gbps: bytes,
      });
    };
    {
      const kernel = kit.kernel(PAGED_ATTENTION, { GROUP: NH / NKV, HEAD_DIM: HD });
      const p = new ArrayBuffer(32);
      new Uint32Array(p).set([NH, NKV, BS, qkvCols, 0]);
      new Float32Array(p)[5] = 1 / Math.sqrt(HD);
      const group = kit.bind(kernel, meta, [kit.uniform(p), qkv, k, v, out]);
      add("paged_attention.wgsl (current)", 1, (pass) => {
        pass.setPipeline(kernel.pipeline);
        pass.setBindGroup(0, group, [0]);
        pass.dispatchWorkgroups(NKV, T, 1);
      });
    }
    const splitLens = c.queries === 1 && c.context > options.splitLen
      ? [1 << 20, options.splitLen]
      : [options.splitLen];
    // The same K/V as f16 (the cache a later issue may adopt).
    const k16 = kit.buffer(cacheWords * 2);
    const v16 = kit.buffer(cacheWords * 2);
    const variants: { tq: number; f16: boolean }[] = c.queries > 1
      ? [{ tq: 1, f16: false }, { tq: 4, f16: false }, { tq: 4, f16: true }]
      : [{ tq: 1, f16: false }, { tq: 1, f16: true }];
    for (const { tq, f16 } of variants) {
      for (const splitLen of f16 ? [options.splitLen] : splitLens) {
        const splits = Math.ceil(c.context / splitLen);
        const params = kit.uniform(packAttentionParams({
          numHeads: NH,
          numKvHeads: NKV,
          blockSize: BS,
          qStride: qkvCols,
          window: 0,
          scale: 1 / Math.sqrt(HD),
          softcap: 0,
          maxSplits: splits,
          splitLen,
        }));
        const ak = kit.kernel(ATTENTION_LANES, {
          GROUP: NH / NKV,
          HEAD_DIM: HD,
          TQ: tq,
          WG: lanes,
          KV_F16: f16,
        });
        const partAcc = kit.buffer(T * NH * splits * HD * 4);
        const partMl = kit.buffer(T * NH * splits * 8);
        const info = kit.buffer(16);
        const group = kit.bind(ak, meta, [
          params,
          qkv,
          f16 ? k16 : k,
          f16 ? v16 : v,
          out,
          partAcc,
          partMl,
          info,
        ]);
        const ck = kit.kernel(ATTENTION_COMBINE, { HEAD_DIM: HD });
        const cgroup = kit.bind(ck, meta, [params, partAcc, partMl, info, out]);
        const tiles = tq === 1 ? T : Math.ceil(T / tq) + seqs;
        add(
          `attention_lanes${tq > 1 ? ` TQ=${tq}` : ""}${f16 ? " f16 KV" : ""}${
            splits > 1 ? " + combine" : ""
          }`,
          splits,
          (pass) => {
            pass.setPipeline(ak.pipeline);
            pass.setBindGroup(0, group, [0]);
            pass.dispatchWorkgroups(NKV, tiles, splits);
            if (splits > 1) {
              pass.setPipeline(ck.pipeline);
              pass.setBindGroup(0, cgroup, [0]);
              pass.dispatchWorkgroups(T, 1, 1);
            }
          },
        );
      }
    }
  }
  options.log(`  timing ${items.length} attention measurements...`);
  const times = await timeInterleaved(kit.device, items, {
    rounds: options.rounds,
    targetPassMs: options.targetPassMs,
    maxReps: 32,
  });
  return rows.map((r, i) => {
    const t = times.get(items[i].id)!;
    return { ...r, gpuMs: t.gpuMs, cpuMs: t.cpuMs, gbps: r.gbps / (t.gpuMs * 1e6) };
  });
}
