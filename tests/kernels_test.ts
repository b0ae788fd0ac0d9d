/**
 * The kernels one at a time, dispatched exactly as the forward pass dispatches them
 * (`matmulOp`, `PagedAttention`, `EagerAttention`, the registry's named bindings), against
 * plain CPU references, for every kernel family and weight type, on odd shapes: K not a
 * multiple of 8 (or 4), N not a multiple of the column block, 1..9 and 40 rows, matrices
 * split over several bindings, contexts ending inside a KV block, scattered block tables,
 * sliding windows, GQA groups 1..4, soft-capping, f32 and f16 KV caches; and the properties
 * batch invariance rests on: a row's bits do not depend on the rows beside it or on the
 * kernel variant its step picks (gemv_c8 row tiles; gemv_wg vs gemm_tiled; attention query
 * tiles and split counts).
 *
 * Tolerances: every kernel computes in f32; the references use doubles on the same (f16 or
 * f32) weights and cache values. Error measure max |a - b| / (1 + |b|): 2e-5 (summation
 * order). Values stored into an f16 cache are compared after rounding the reference to f16:
 * 1e-3 (one f16 ulp, 2^-10, when the f32 result sits next to a rounding boundary).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { GpuKit } from "./helpers/gpu_kit.ts";
import { attentionRef, geluTanh, type HostKvCache, kvOffset, matmulRef, maxRelErr, rmsNormRef, ropeRef, silu } from "./helpers/cpu_reference.ts";
import { type ColumnMap, gluColumns, type HostMatrix, identityColumns, permuteColumns, ropeColumns } from "../src/model/weight_layout.ts";
import { type MatrixWeight, uploadMatrix } from "../src/model/weights.ts";
import { matmulOp, type MatmulUse } from "../src/runner/matmul_op.ts";
import { type AttentionImplementation, EagerAttention, PagedAttention } from "../src/runner/attention_op.ts";
import { buildStepBatch, type SequenceChunk, shapeOf, type StepCapacity } from "../src/runner/step_meta.ts";
import { ropeInverseFrequencies } from "../src/model/rope.ts";
import type { RopeSpec } from "../src/model/config.ts";
import { EMBED, RMSNORM, ROPE_KV } from "../src/kernels/descriptors.ts";
import { KERNEL_FAMILIES, type KernelFamily } from "../src/types/api.ts";
import { Rng } from "../bench/rng.ts";

const TOL = 2e-5;
const F16_TOL = 1e-3;
const LAYOUT = { cpu: "column_blocks", gpu: "padded_rows" } as const;
const ROPE: RopeSpec = { theta: 10000, type: "default", factor: 1, lowFreqFactor: 1, highFreqFactor: 1, originalMaxPositionEmbeddings: 4096 };
const CAP: StepCapacity = { maxTokens: 64, maxSeqs: 4, maxLogitRows: 64, maxBlocksPerSeq: 8 };

function randomF32(rng: Rng, n: number, scale = 1): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => scale * (rng.next() * 2 - 1));
}

/** A random weight matrix [n, k] as the kernels store it (f16 bits or f32), with its exact values. */
function randomMatrix(rng: Rng, n: number, k: number, dtype: "f16" | "f32", scale = 0.5): { host: HostMatrix; values: Float32Array } {
  const values = randomF32(rng, n * k, scale);
  if (dtype === "f32") return { host: { data: values, rows: n, cols: k }, values };
  const h = Float16Array.from(values);
  return { host: { data: new Uint16Array(h.buffer), rows: n, cols: k }, values: Float32Array.from(h) };
}

function upload(kit: GpuKit, family: KernelFamily, m: HostMatrix, columns?: ColumnMap, maxBinding = 1 << 30): MatrixWeight {
  return uploadMatrix(kit.device, m, { layout: LAYOUT[family], columns, maxBinding, label: "w" }).weight;
}

/** A step of `rows` tokens of one sequence (positions 0..rows-1), every token a logit row. */
function tokensStep(kit: GpuKit, rows: number) {
  return kit.meta(buildStepBatch([{ tokens: Array(rows).fill(1), start: 0, blockTable: [0, 1, 2, 3, 4, 5, 6, 7], logits: "all" }], 16), CAP);
}

/** Runs a matmul the way the forward pass does for a step of `rows` rows. */
async function runMatmul(kit: GpuKit, family: KernelFamily, w: MatrixWeight, use: MatmulUse, rows: number, meta: GPUBufferBinding): Promise<void> {
  const op = matmulOp(kit.pipelines, family, w, use, "test");
  const v = op.variant(rows);
  await kit.run(meta, op.parts.map((p) => ({ kernel: op.kernels[v], resources: p.resources, grid: p.grid(rows, v) })));
  op.uniforms.forEach((b) => b.destroy());
}

function f16Round(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(Float16Array.from(a as ArrayLike<number>));
}

test("kernels matmul: every family and weight type matches the reference on odd shapes; a row's bits never depend on the batch", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(11);
    // [N, K, rows]: K % 8 != 0, K % 4 != 0, N not a multiple of 8 or 64, several K tiles.
    const shapes: [number, number, number[]][] = [
      [40, 36, [1, 2, 3, 4, 5, 6, 7, 8, 9]],
      [13, 30, [1, 5, 9]],
      [100, 72, [3, 16]],
      [70, 264, [2, 9, 40]],
      [24, 20, [40]],
    ];
    for (const family of KERNEL_FAMILIES) {
      for (const dtype of ["f16", "f32"] as const) {
        for (const [n, k, rowsList] of shapes) {
          const { host, values } = randomMatrix(rng, n, k, dtype);
          const w = upload(kit, family, host);
          for (const rows of rowsList) {
            await t.step(`${family} ${dtype} N=${n} K=${k} rows=${rows}`, async () => {
              const x = randomF32(rng, rows * k);
              const out = kit.buffer(rows * n * 4);
              await runMatmul(kit, family, w, { x: kit.buffer(x), out, ldo: n, nOut: n, rows: "tokens" }, rows, tokensStep(kit, rows));
              const got = await kit.read(out, rows * n);
              const e = maxRelErr(got, matmulRef(x, values, rows, n, k));
              assert(e <= TOL, `error vs reference ${e}`);
              if (rows < 9) return;
              // Each row alone (a 1-row step: another variant, gemv_wg instead of gemm_tiled
              // from 16 rows) gives the same bits.
              for (const r of [0, rows - 1, rows >> 1]) {
                const one = kit.buffer(n * 4);
                await runMatmul(kit, family, w, { x: kit.buffer(x.slice(r * k, (r + 1) * k)), out: one, ldo: n, nOut: n, rows: "tokens" }, 1, tokensStep(kit, 1));
                assertEquals(Array.from(await kit.read(one, n)), Array.from(got.subarray(r * n, (r + 1) * n)), `row ${r} alone`);
              }
            });
          }
        }
      }
    }
  } finally {
    kit.destroy();
  }
});

test("kernels matmul epilogues: residual add + bias over split parts, logit-row gather, RMSNorm (gamma), soft-cap, act(gate) * up", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(12);
    const [n, k, rows, eps] = [44, 28, 5, 1e-5];
    for (const family of KERNEL_FAMILIES) {
      const { host, values } = randomMatrix(rng, n, k, "f16");
      const x = randomF32(rng, rows * k, 3);
      const base = matmulRef(x, values, rows, n, k);
      const meta = tokensStep(kit, rows);
      await t.step(`${family} ACCUM + BIAS, 3 parts`, async () => {
        // 16 columns per part: 6 blocks in 3 parts, the last one half padding.
        const blockBytes = 8 * (family === "cpu" ? k : Math.ceil(k / 8) * 8) * 2;
        const w = upload(kit, family, host, undefined, 2 * blockBytes);
        assertEquals(w.parts.length, 3);
        const residual = randomF32(rng, rows * n);
        const bias = randomF32(rng, n);
        const out = kit.buffer(residual.slice());
        const b = kit.buffer(permuteColumns(bias, identityColumns(n)));
        await runMatmul(kit, family, w, { x: kit.buffer(x), out, ldo: n, nOut: n, rows: "tokens", bias: b, accumulate: true }, rows, meta);
        const e = maxRelErr(await kit.read(out, rows * n), base.map((v, i) => v + bias[i % n] + residual[i]));
        assert(e <= TOL, `error ${e}`);
      });
      const w = upload(kit, family, host);
      await t.step(`${family} GATHER (logits of tokens 1, 2, 3, 4)`, async () => {
        const batch = buildStepBatch([
          { tokens: [1, 2], start: 0, blockTable: [0], logits: "last" },
          { tokens: [3, 4, 5], start: 0, blockTable: [1], logits: "all" },
        ], 16);
        const out = kit.buffer(4 * n * 4);
        await runMatmul(kit, family, w, { x: kit.buffer(x), out, ldo: n, nOut: n, rows: "logits" }, 4, kit.meta(batch, CAP));
        const expect = new Float32Array(4 * n);
        [1, 2, 3, 4].forEach((tok, r) => expect.set(base.subarray(tok * n, (tok + 1) * n), r * n));
        const e = maxRelErr(await kit.read(out, 4 * n), expect);
        assert(e <= TOL, `error ${e}`);
      });
      await t.step(`${family} NORM + GAMMA + SOFTCAP`, async () => {
        const gamma = Float32Array.from({ length: k }, () => 1 + 0.2 * (rng.next() - 0.5));
        const out = kit.buffer(rows * n * 4);
        const norm = { gamma: kit.buffer(gamma), eps };
        await runMatmul(kit, family, w, { x: kit.buffer(x), out, ldo: n, nOut: n, rows: "tokens", norm, softcap: 3 }, rows, meta);
        const ref = matmulRef(rmsNormRef(x, gamma, rows, k, eps), values, rows, n, k).map((v) => 3 * Math.tanh(v / 3));
        const e = maxRelErr(await kit.read(out, rows * n), ref);
        assert(e <= TOL, `error ${e}`);
      });
      for (const gelu of [false, true]) {
        await t.step(`${family} GLU ${gelu ? "GELU" : "SiLU"} (gate|up in gluColumns order)`, async () => {
          const inter = 21;
          const gu = randomMatrix(rng, 2 * inter, k, "f16");
          const wg = upload(kit, family, gu.host, gluColumns(inter));
          const out = kit.buffer(rows * inter * 4);
          await runMatmul(kit, family, wg, { x: kit.buffer(x), out, ldo: inter, nOut: inter, rows: "tokens", glu: { gelu } }, rows, meta);
          const full = matmulRef(x, gu.values, rows, 2 * inter, k);
          const act = gelu ? geluTanh : silu;
          const ref = Float32Array.from({ length: rows * inter }, (_, i) => {
            const r = Math.floor(i / inter);
            const c = i % inter;
            return act(full[r * 2 * inter + c]) * full[r * 2 * inter + inter + c];
          });
          const e = maxRelErr(await kit.read(out, rows * inter), ref);
          assert(e <= TOL, `error ${e}`);
        });
      }
    }
  } finally {
    kit.destroy();
  }
});

test("kernels matmul: q|k|v with RoPE and the paged KV write in the epilogue (bias; f32 and f16 cache)", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(14);
    const [nh, nkv, hd, k, bs] = [4, 2, 16, 40, 4];
    const rows = 6;
    const qkvRows = (nh + 2 * nkv) * hd;
    const invFreq = ropeInverseFrequencies(ROPE, hd);
    // Tokens at positions 3..8 of a sequence whose blocks are scattered: [5, 2, 7].
    const table = [5, 2, 7];
    const batch = buildStepBatch([{ tokens: Array(rows).fill(1), start: 3, blockTable: table, logits: "all" }], bs);
    const cap = { ...CAP, maxBlocksPerSeq: 8 };
    for (const family of KERNEL_FAMILIES) {
      for (const kvF16 of [false, true]) {
        await t.step(`${family} ${kvF16 ? "f16" : "f32"} cache`, async () => {
          const { host, values } = randomMatrix(rng, qkvRows, k, "f16");
          const bias = randomF32(rng, qkvRows, 0.3);
          const columns = ropeColumns(nh, nkv, hd);
          const w = upload(kit, family, host, columns);
          const x = randomF32(rng, rows * k);
          const numBlocks = 8;
          const cacheWords = numBlocks * nkv * bs * hd;
          const kCache = kit.buffer(cacheWords * (kvF16 ? 2 : 4));
          const vCache = kit.buffer(cacheWords * (kvF16 ? 2 : 4));
          const q = kit.buffer(rows * nh * hd * 4);
          const use: MatmulUse = {
            x: kit.buffer(x),
            out: q,
            ldo: nh * hd,
            nOut: qkvRows,
            rows: "tokens",
            bias: kit.buffer(permuteColumns(bias, columns)),
            rope: { invFreq: kit.buffer(invFreq), kCache, vCache, kvF16, numHeads: nh, numKvHeads: nkv, headDim: hd, blockSize: bs },
          };
          await runMatmul(kit, family, w, use, rows, kit.meta(batch, cap));
          const full = matmulRef(x, values, rows, qkvRows, k).map((v, i) => v + bias[i % qkvRows]);
          const refQ = new Float32Array(rows * nh * hd);
          const refK = new Float32Array(cacheWords);
          const refV = new Float32Array(cacheWords);
          const shape = { numKvHeads: nkv, headDim: hd, blockSize: bs };
          for (let r = 0; r < rows; r++) {
            const pos = 3 + r;
            const slot = table[Math.floor(pos / bs)] * bs + (pos % bs);
            for (let h = 0; h < nh + 2 * nkv; h++) {
              const v = full.slice(r * qkvRows + h * hd, r * qkvRows + (h + 1) * hd);
              if (h < nh + nkv) ropeRef(v, pos, invFreq);
              if (h < nh) refQ.set(v, (r * nh + h) * hd);
              else if (h < nh + nkv) refK.set(v, kvOffset(shape, slot, h - nh));
              else refV.set(v, kvOffset(shape, slot, h - nh - nkv));
            }
          }
          assert(maxRelErr(await kit.read(q, rows * nh * hd), refQ) <= TOL, "q");
          const readCache = async (b: GPUBuffer) =>
            kvF16
              ? Float32Array.from(new Float16Array(await kit.readBytes(b, cacheWords * 2)))
              : await kit.read(b, cacheWords);
          const tol = kvF16 ? F16_TOL : TOL;
          const ek = maxRelErr(await readCache(kCache), kvF16 ? f16Round(refK) : refK);
          const ev = maxRelErr(await readCache(vCache), kvF16 ? f16Round(refV) : refV);
          assert(ek <= tol && ev <= tol, `cache errors k ${ek} v ${ev}`);
        });
      }
    }
  } finally {
    kit.destroy();
  }
});

interface AttentionCase {
  name: string;
  nh: number;
  nkv: number;
  hd: number;
  window?: number;
  softcap?: number;
}

const ATTENTION_CASES: AttentionCase[] = [
  { name: "GQA 2, head dim 32", nh: 4, nkv: 2, hd: 32 },
  { name: "MQA (group 4), window 20", nh: 4, nkv: 1, hd: 16, window: 20 },
  { name: "group 3, head dim 64, soft-cap 5", nh: 6, nkv: 2, hd: 64, softcap: 5 },
  { name: "group 1, head dim 8", nh: 2, nkv: 2, hd: 8 },
];

/** A random paged cache (f32 values, or f16 with the reference on the rounded values). */
function randomCache(kit: GpuKit, rng: Rng, c: AttentionCase, numBlocks: number, bs: number, kvF16: boolean) {
  const words = numBlocks * c.nkv * bs * c.hd;
  const raw = (() => {
    const k = randomF32(rng, words);
    const v = randomF32(rng, words);
    return kvF16 ? { k: f16Round(k), v: f16Round(v) } : { k, v };
  })();
  const host: HostKvCache = { k: raw.k as Float32Array<ArrayBuffer>, v: raw.v as Float32Array<ArrayBuffer>, numKvHeads: c.nkv, headDim: c.hd, blockSize: bs };
  const gpu = (a: Float32Array) => kit.buffer(kvF16 ? new Uint16Array(Float16Array.from(a).buffer) : (a as Float32Array<ArrayBuffer>));
  return { host, k: gpu(raw.k), v: gpu(raw.v) };
}

/** Runs one layer's attention for `chunks` and returns [tokens, nh * hd]. */
async function runAttention(
  kit: GpuKit,
  impl: AttentionImplementation,
  c: AttentionCase,
  cache: { k: GPUBuffer; v: GPUBuffer },
  q: Float32Array<ArrayBuffer>,
  chunks: SequenceChunk[],
  bs: number,
  cap: StepCapacity,
): Promise<Float32Array> {
  const [out] = await kit.readMany([submitAttention(kit, impl, c, cache, q, chunks, bs, cap)]);
  return out;
}

/** Submits one attention step (its own metadata and output) without waiting for it. */
function submitAttention(
  kit: GpuKit,
  impl: AttentionImplementation,
  c: AttentionCase,
  cache: { k: GPUBuffer; v: GPUBuffer },
  q: Float32Array<ArrayBuffer>,
  chunks: SequenceChunk[],
  bs: number,
  cap: StepCapacity,
): { buffer: GPUBuffer; count: number } {
  const batch = buildStepBatch(chunks, bs);
  const shape = shapeOf(batch);
  const out = kit.buffer(shape.tokens * c.nh * c.hd * 4);
  const dispatches = impl.layer({
    query: kit.buffer(q),
    qStride: c.nh * c.hd,
    kCache: cache.k,
    vCache: cache.v,
    out,
    window: c.window ?? 0,
    scale: 1 / Math.sqrt(c.hd),
    softcap: c.softcap ?? 0,
  }, "attention");
  kit.submit(kit.meta(batch, cap), dispatches.map((d) => {
    const v = d.pick(shape);
    return { kernel: d.kernels[v], resources: d.resources, grid: d.grid(shape, v) };
  }));
  return { buffer: out, count: shape.tokens * c.nh * c.hd };
}

test("kernels attention: decode and ragged prefill vs the reference (paged with 1 or many splits, eager; f32 and f16 KV); bits independent of batch, tile and split count", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(21);
    const bs = 16;
    const numBlocks = 24;
    const cap: StepCapacity = { maxTokens: 64, maxSeqs: 4, maxLogitRows: 64, maxBlocksPerSeq: 8 };
    // Scattered block tables; contexts end inside blocks.
    const tables = [[3, 9, 1, 17, 5], [0], [22, 6, 12, 2, 20], [8, 14]];
    for (const c of ATTENTION_CASES) {
      for (const kvF16 of [false, true]) {
        const cache = randomCache(kit, rng, c, numBlocks, bs, kvF16);
        const shape = { numHeads: c.nh, numKvHeads: c.nkv, headDim: c.hd, blockSize: bs, kvF16, maxTokens: cap.maxTokens, maxContext: 8 * bs };
        const limits = { maxBindingBytes: kit.gpu.limits.maxStorageBufferBindingSize, maxWorkgroupBytes: kit.gpu.limits.maxComputeWorkgroupStorageSize };
        const impls: [string, AttentionImplementation][] = [
          ["paged, one split", new PagedAttention(kit.device, kit.pipelines, shape, { ...limits, splitLen: 128 })],
          ["paged, split 16", new PagedAttention(kit.device, kit.pipelines, shape, { ...limits, splitLen: 16 })],
          ["eager", new EagerAttention(kit.device, kit.pipelines, shape, limits)],
        ];
        // Decode: contexts 70, 5, 37; then a ragged step: a 20-token prefill, a decode at 61,
        // a 7-token chunk at 10..16 and a decode at 29.
        const decode: SequenceChunk[] = [[0, 70], [1, 5], [2, 37]].map(([s, ctx]) => ({ tokens: [1], start: ctx - 1, blockTable: tables[s], logits: "last" }));
        const ragged: SequenceChunk[] = [
          { tokens: Array(20).fill(1), start: 0, blockTable: tables[0], logits: "all" },
          { tokens: [1], start: 60, blockTable: tables[2], logits: "last" },
          { tokens: Array(7).fill(1), start: 10, blockTable: tables[3], logits: "all" },
          { tokens: [1], start: 28, blockTable: tables[1].concat([4, 7]), logits: "last" },
        ];
        for (const [label, chunks] of [["decode", decode], ["ragged", ragged]] as const) {
          const tokens = chunks.reduce((n, ch) => n + ch.tokens.length, 0);
          const q = randomF32(rng, tokens * c.nh * c.hd);
          const refTokens = chunks.flatMap((ch) => Array.from(ch.tokens, (_, i) => ({ pos: ch.start + i, blockTable: ch.blockTable })));
          const ref = attentionRef({ q, qStride: c.nh * c.hd, tokens: refTokens, cache: cache.host, numHeads: c.nh, scale: 1 / Math.sqrt(c.hd), window: c.window, softcap: c.softcap });
          for (const [name, impl] of impls) {
            await t.step(`${c.name}, ${kvF16 ? "f16" : "f32"} KV, ${label}, ${name}`, async () => {
              const got = await runAttention(kit, impl, c, cache, q, chunks, bs, cap);
              const e = maxRelErr(got, ref);
              assert(e <= TOL, `error vs reference ${e}`);
              if (name === "eager") return;
              // Every token alone, as a one-token decode step (query tile 1, its own split
              // count): the same bits. Each is its own submitted step; all are read at once.
              const row = c.nh * c.hd;
              const alone: { buffer: GPUBuffer; count: number }[] = [];
              let t0 = 0;
              for (const ch of chunks) {
                for (let i = 0; i < ch.tokens.length; i++, t0++) {
                  alone.push(submitAttention(kit, impl, c, cache, q.slice(t0 * row, (t0 + 1) * row), [{ tokens: [1], start: ch.start + i, blockTable: ch.blockTable, logits: "last" }], bs, cap));
                }
              }
              (await kit.readMany(alone)).forEach((bits, k) => {
                assertEquals(Array.from(bits), Array.from(got.subarray(k * row, (k + 1) * row)), `token ${k} alone`);
              });
            });
          }
        }
        impls.forEach(([, impl]) => impl.destroy());
      }
    }
  } finally {
    kit.destroy();
  }
});

test("kernels rope_kv (Qwen3 q/k norm, head dims not a multiple of 8), rmsnorm add, embedding from both layouts", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(31);
    for (const [qkNorm, hd] of [[true, 16], [false, 12]] as const) {
      for (const kvF16 of [false, true]) {
        await t.step(`rope_kv QK_NORM=${qkNorm} head_dim ${hd} ${kvF16 ? "f16" : "f32"} cache`, async () => {
          const [nh, nkv, bs, rows, eps] = [4, 2, 4, 5, 1e-6];
          const stride = (nh + 2 * nkv) * hd;
          const qkv = randomF32(rng, rows * stride, 2);
          const qNorm = Float32Array.from({ length: hd }, () => 1 + 0.3 * (rng.next() - 0.5));
          const kNorm = Float32Array.from({ length: hd }, () => 1 + 0.3 * (rng.next() - 0.5));
          const invFreq = ropeInverseFrequencies(ROPE, hd);
          const table = [6, 1, 3];
          const batch = buildStepBatch([{ tokens: Array(rows).fill(1), start: 2, blockTable: table, logits: "none" }], bs);
          const words = 8 * nkv * bs * hd;
          const kCache = kit.buffer(words * (kvF16 ? 2 : 4));
          const vCache = kit.buffer(words * (kvF16 ? 2 : 4));
          const qkvBuf = kit.buffer(qkv);
          const kernel = kit.pipelines.get(ROPE_KV, { QK_NORM: qkNorm, HALF: hd / 2, KV_F16: kvF16, PARTIAL: false, ROT_HALF: hd / 2 });
          const p = kernel.uniform({ nh, nkv, head_dim: hd, block_size: bs, qkv_stride: stride, eps });
          await kit.run(kit.meta(batch, CAP), [{
            kernel,
            resources: { p, qkv: qkvBuf, inv_freq: kit.buffer(invFreq), k_cache: kCache, v_cache: vCache, ...(qkNorm ? { q_norm: kit.buffer(qNorm), k_norm: kit.buffer(kNorm) } : {}) },
            grid: [nh + 2 * nkv, rows, 1],
          }]);
          const refQ = qkv.slice();
          const refK = new Float32Array(words);
          const refV = new Float32Array(words);
          const shape = { numKvHeads: nkv, headDim: hd, blockSize: bs };
          for (let r = 0; r < rows; r++) {
            const pos = 2 + r;
            const slot = table[Math.floor(pos / bs)] * bs + (pos % bs);
            for (let h = 0; h < nh + 2 * nkv; h++) {
              let v: Float32Array = qkv.slice(r * stride + h * hd, r * stride + (h + 1) * hd);
              if (h < nh + nkv) {
                if (qkNorm) v = rmsNormRef(v, h < nh ? qNorm : kNorm, 1, hd, eps);
                ropeRef(v, pos, invFreq);
              }
              if (h < nh) refQ.set(v, r * stride + h * hd);
              else if (h < nh + nkv) refK.set(v, kvOffset(shape, slot, h - nh));
              else refV.set(v, kvOffset(shape, slot, h - nh - nkv));
            }
          }
          const qs = Array.from({ length: rows }, (_, r) => Array.from(refQ.subarray(r * stride, r * stride + nh * hd)));
          const got = await kit.read(qkvBuf, rows * stride);
          const gotQ = Array.from({ length: rows }, (_, r) => Array.from(got.subarray(r * stride, r * stride + nh * hd)));
          assert(maxRelErr(gotQ.flat(), qs.flat()) <= TOL, "q");
          const readCache = async (b: GPUBuffer) =>
            kvF16 ? Float32Array.from(new Float16Array(await kit.readBytes(b, words * 2))) : await kit.read(b, words);
          const tol = kvF16 ? F16_TOL : TOL;
          assert(maxRelErr(await readCache(kCache), kvF16 ? f16Round(refK) : refK) <= tol, "k cache");
          assert(maxRelErr(await readCache(vCache), kvF16 ? f16Round(refV) : refV) <= tol, "v cache");
        });
      }
    }
    await t.step("rmsnorm adds x / rms(x) * gamma into its output", async () => {
      const [rows, dim, eps] = [3, 200, 1e-6];
      const x = randomF32(rng, rows * dim, 4);
      const gamma = randomF32(rng, dim);
      const base = randomF32(rng, rows * dim);
      const out = kit.buffer(base.slice());
      const kernel = kit.pipelines.get(RMSNORM, { AT_SLOT: false });
      await kit.run(tokensStep(kit, rows), [{ kernel, resources: { p: kernel.uniform({ dim, eps }), x: kit.buffer(x), gamma: kit.buffer(gamma), out }, grid: [rows, 1, 1] }]);
      const ref = rmsNormRef(x, gamma, rows, dim, eps).map((v, i) => v + base[i]);
      assert(maxRelErr(await kit.read(out, rows * dim), ref) <= TOL, "rmsnorm");
    });
    for (const family of KERNEL_FAMILIES) {
      for (const dtype of ["f16", "f32"] as const) {
        await t.step(`embedding gather from the ${family} family's ${dtype} layout, over 2 parts`, async () => {
          const [vocab, dim] = [37, 20];
          const { host, values } = randomMatrix(rng, vocab, dim, dtype);
          const blockBytes = 8 * (family === "cpu" ? dim : 24) * (dtype === "f16" ? 2 : 4);
          const table = upload(kit, family, host, undefined, 3 * blockBytes);
          assertEquals(table.parts.length, 2);
          const ids = [36, 0, 7, 8, 23, 24, 31];
          const batch = buildStepBatch([{ tokens: ids, start: 0, blockTable: [0], logits: "none" }], 16);
          const out = kit.buffer(ids.length * dim * 4);
          const meta = kit.meta(batch, CAP);
          const kernel = kit.pipelines.get(EMBED, { F16: dtype === "f16", COLUMN_BLOCKS: table.layout === "column_blocks" });
          await kit.run(meta, table.parts.map((part) => ({
            kernel,
            resources: {
              p: kernel.uniform({ dim, row_start: part.blockStart * 8, row_end: Math.min(vocab, (part.blockStart + part.blocks) * 8), stride: table.rowStride, scale: 2, record_words: 1 }),
              table: part.buffer,
              out,
              records: kit.buffer(16),
            },
            grid: [1, ids.length, 1],
          })));
          const ref = ids.flatMap((id) => Array.from(values.subarray(id * dim, (id + 1) * dim), (v) => 2 * v));
          assertEquals(Array.from(await kit.read(out, ids.length * dim)), ref);
        });
      }
    }
  } finally {
    kit.destroy();
  }
});
