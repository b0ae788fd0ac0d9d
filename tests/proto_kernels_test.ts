/**
 * The packed-weight kernels (kernels/gemv_c8, gemv_wg, gemm_tiled, attention_lanes,
 * attention_combine) against a CPU reference and against the current kernels (matmul,
 * rmsnorm, act_mul, rope_kv, paged_attention) on the same inputs, for every family, on odd
 * shapes: K not a multiple of 8 (or 4), N not a multiple of the column block, 1..9 rows,
 * contexts that end inside a KV block, sliding windows, GQA groups 1/3/4, soft-capping.
 *
 * Tolerances: every kernel computes in f32 on f16 weights; the reference uses doubles on the
 * same f16 weights. Error measure: max |a - b| / (1 + |b|). Kernel vs reference and kernel vs
 * current kernel: <= 2e-5 (different summation orders). An RMSNorm weight folded into the
 * f16 matrix rounds the products once more: <= 5e-3 against the unfolded math.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { GpuKit } from "../bench/proto/gpu_kit.ts";
import {
  type MatmulVariant,
  matmulVariants,
  rowTile,
  runMatmul,
} from "../bench/proto/matmul_runner.ts";
import {
  attentionRef,
  geluTanh,
  type HostKvCache,
  kvOffset,
  matmulRef,
  maxRelErr,
  rmsNormRef,
  ropeRef,
  silu,
} from "../bench/proto/cpu_reference.ts";
import {
  gluColumns,
  identityColumns,
  normScale,
  permuteColumns,
  ropeColumns,
} from "../src/model/weight_layout.ts";
import {
  ACT_MUL,
  MATMUL,
  MATMUL_BIAS,
  PAGED_ATTENTION,
  RMSNORM,
  ROPE_KV,
} from "../src/gpu/descriptors.ts";
import {
  ATTENTION_COMBINE,
  ATTENTION_LANES,
  attentionLanes,
  packAttentionParams,
} from "../src/gpu/kernel_families.ts";
import { buildStepBatch, type SequenceChunk, type StepCapacity } from "../src/model/step_batch.ts";
import { ropeInverseFrequencies } from "../src/model/rope.ts";
import { Rng } from "../bench/rng.ts";

const TOL = 2e-5;
const FOLD_TOL = 5e-3;

function randomF32(rng: Rng, n: number, scale = 1): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => scale * (rng.next() * 2 - 1));
}

/** Random f16 weights as bits, plus their exact f32 values for the reference. */
function randomF16(
  rng: Rng,
  n: number,
  scale = 0.5,
): { bits: Uint16Array<ArrayBuffer>; values: Float32Array } {
  const h = new Float16Array(n);
  for (let i = 0; i < n; i++) h[i] = scale * (rng.next() * 2 - 1);
  return { bits: new Uint16Array(h.buffer), values: Float32Array.from(h) };
}

const CAP: StepCapacity = {
  maxTokens: 64,
  maxSeqs: 4,
  maxLogitRows: 64,
  maxBlocksPerSeq: 8,
  samplingWordsPerRow: 0,
};

/** A step of `rows` tokens of one sequence (positions 0..rows-1) with logits for `logitRows`. */
function tokensStep(kit: GpuKit, rows: number, logits: "all" | "last" = "all") {
  const batch = buildStepBatch([{
    tokens: Array(rows).fill(1),
    start: 0,
    blockTable: [0, 1, 2, 3, 4, 5, 6, 7],
    logits,
  }], 16);
  return kit.meta(batch, CAP);
}

/** The current kernels' matmul (HF layout) for comparison: out = x @ w^T (+ bias). */
async function currentMatmul(
  kit: GpuKit,
  meta: ReturnType<typeof tokensStep>,
  x: GPUBuffer,
  w: Uint16Array<ArrayBuffer>,
  n: number,
  k: number,
  rows: number,
  out: GPUBuffer,
  bias?: GPUBuffer,
): Promise<void> {
  const tm = rowTile(rows);
  const desc = bias ? MATMUL_BIAS : MATMUL;
  const kernel = kit.kernel(desc, {
    F16: true,
    VEC: k % 8 === 0,
    TM: tm,
    ACCUM: false,
    BIAS: !!bias,
  });
  const params = new Uint32Array([k, n, 0, n, 0, 0, 0, 0]);
  const buffers = [kit.uniform(params.buffer), x, kit.buffer(w), out];
  if (bias) buffers.push(bias);
  await kit.run([{
    kernel,
    group: kit.bind(kernel, meta, buffers),
    grid: [Math.ceil(n / 64), Math.ceil(rows / tm), 1],
  }]);
}

async function withKit(
  fn: (kit: GpuKit, variants: MatmulVariant[]) => Promise<void>,
): Promise<void> {
  const kit = await GpuKit.create();
  try {
    await fn(kit, matmulVariants(kit.gpu.hasSubgroups));
  } finally {
    kit.destroy();
  }
}

test("proto matmul: every family matches the reference and matmul.wgsl (odd shapes, 1..9 rows)", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(11);
    // [N, K, rows]: K % 8 != 0, K % 4 != 0, N not a multiple of 8 or 64, several K tiles.
    const shapes: [number, number, number[]][] = [
      [40, 36, [1, 2, 3, 4, 5, 6, 7, 8, 9]],
      [13, 30, [1, 5, 9]],
      [100, 72, [3]],
      [70, 264, [2, 9]],
      [24, 20, [40]],
    ];
    for (const [n, k, rowsList] of shapes) {
      const w = randomF16(rng, n * k);
      for (const rows of rowsList) {
        const x = randomF32(rng, rows * k);
        const ref = matmulRef(x, w.values, rows, n, k);
        const meta = tokensStep(kit, rows);
        const xb = kit.buffer(x);
        const current = kit.buffer(rows * n * 4);
        await currentMatmul(kit, meta, xb, w.bits, n, k, rows, current);
        const cur = await kit.readF32(current, rows * n);
        for (const variant of variants) {
          await t.step(`${variant.name} N=${n} K=${k} rows=${rows}`, async () => {
            const out = kit.buffer(rows * n * 4);
            await runMatmul(kit, {
              variant,
              weight: { data: w.bits, rows: n, cols: k },
              rows,
              meta,
              x: xb,
              out,
              ldx: k,
              ldo: n,
              nOut: n,
            });
            const got = await kit.readF32(out, rows * n);
            const e = maxRelErr(got, ref);
            assert(e <= TOL, `${variant.name}: error vs reference ${e}`);
            const c = maxRelErr(got, cur);
            assert(c <= TOL, `${variant.name}: difference from matmul.wgsl ${c}`);
          });
        }
      }
    }
  });
});

test("proto matmul: residual add, bias and logit-row gather epilogues", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(12);
    const [n, k, rows] = [44, 28, 5];
    const w = randomF16(rng, n * k);
    const x = randomF32(rng, rows * k);
    const residual = randomF32(rng, rows * n);
    const bias = randomF32(rng, n);
    const base = matmulRef(x, w.values, rows, n, k);
    const meta = tokensStep(kit, rows);
    for (const variant of variants) {
      await t.step(`${variant.name} ACCUM + BIAS`, async () => {
        const out = kit.buffer(residual.slice());
        await runMatmul(kit, {
          variant,
          weight: { data: w.bits, rows: n, cols: k },
          rows,
          meta,
          x: kit.buffer(x),
          out,
          ldx: k,
          ldo: n,
          nOut: n,
          bias: kit.buffer(permuteColumns(bias, identityColumns(n))),
          defines: { ACCUM: true },
        });
        const expect = base.map((v, i) => v + bias[i % n] + residual[i]);
        const e = maxRelErr(await kit.readF32(out, rows * n), expect);
        assert(e <= TOL, `error ${e}`);
      });
      await t.step(`${variant.name} GATHER (logits of tokens 4 and 1)`, async () => {
        const batch = buildStepBatch([
          { tokens: [1, 2], start: 0, blockTable: [0], logits: "last" },
          { tokens: [3, 4, 5], start: 0, blockTable: [1], logits: "all" },
        ], 16);
        // Logit rows: token 1 (last of seq 0), then tokens 2, 3, 4.
        const gmeta = kit.meta(batch, CAP);
        const out = kit.buffer(4 * n * 4);
        await runMatmul(kit, {
          variant,
          weight: { data: w.bits, rows: n, cols: k },
          rows: 4,
          meta: gmeta,
          x: kit.buffer(x),
          out,
          ldx: k,
          ldo: n,
          nOut: n,
          defines: { GATHER: true },
        });
        const got = await kit.readF32(out, 4 * n);
        const expect = new Float32Array(4 * n);
        [1, 2, 3, 4].forEach((tok, r) => expect.set(base.subarray(tok * n, (tok + 1) * n), r * n));
        const e = maxRelErr(got, expect);
        assert(e <= TOL, `error ${e}`);
      });
    }
  });
});

test("proto matmul: RMSNorm folded in (weight in the matrix, or GAMMA on x) vs rmsnorm.wgsl + matmul.wgsl", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(13);
    const [n, k, rows, eps] = [36, 40, 3, 1e-5];
    const w = randomF16(rng, n * k);
    const x = randomF32(rng, rows * k, 3);
    const gamma = Float32Array.from({ length: k }, () => 1 + 0.2 * (rng.next() - 0.5));
    const xn = rmsNormRef(x, gamma, rows, k, eps);
    const ref = matmulRef(xn, w.values, rows, n, k);
    const meta = tokensStep(kit, rows);
    // The current kernels: rmsnorm.wgsl then matmul.wgsl.
    const xb = kit.buffer(x);
    const normed = kit.buffer(rows * k * 4);
    const rk = kit.kernel(RMSNORM, { ADD: false, GATHER: false });
    const rp = new ArrayBuffer(16);
    new Uint32Array(rp)[0] = k;
    new Float32Array(rp)[1] = eps;
    await kit.run([{
      kernel: rk,
      group: kit.bind(rk, meta, [kit.uniform(rp), xb, kit.buffer(gamma), normed]),
      grid: [rows, 1, 1],
    }]);
    const current = kit.buffer(rows * n * 4);
    await currentMatmul(kit, meta, normed, w.bits, n, k, rows, current);
    const cur = await kit.readF32(current, rows * n);
    for (const variant of variants) {
      await t.step(`${variant.name} GAMMA (exact)`, async () => {
        const out = kit.buffer(rows * n * 4);
        await runMatmul(kit, {
          variant,
          weight: { data: w.bits, rows: n, cols: k },
          rows,
          meta,
          x: xb,
          out,
          ldx: k,
          ldo: n,
          nOut: n,
          eps,
          gamma: kit.buffer(gamma),
          defines: { NORM: true },
        });
        const got = await kit.readF32(out, rows * n);
        assert(maxRelErr(got, ref) <= TOL, `error vs reference ${maxRelErr(got, ref)}`);
        assert(maxRelErr(got, cur) <= TOL, `difference from rmsnorm+matmul ${maxRelErr(got, cur)}`);
      });
      await t.step(`${variant.name} folded weight`, async () => {
        const out = kit.buffer(rows * n * 4);
        await runMatmul(kit, {
          variant,
          weight: { data: w.bits, rows: n, cols: k },
          kScale: normScale(gamma, 0),
          rows,
          meta,
          x: xb,
          out,
          ldx: k,
          ldo: n,
          nOut: n,
          eps,
          defines: { NORM: true },
        });
        const got = await kit.readF32(out, rows * n);
        const e = maxRelErr(got, ref);
        assert(e <= FOLD_TOL, `error vs unfolded reference ${e}`);
        assert(e > 0, "folding into f16 should round at least one product");
      });
    }
  });
});

test("proto matmul: gate|up with act(gate) * up in the epilogue (SiLU, GELU) vs matmul + act_mul", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(14);
    const [inter, k, rows] = [10, 36, 4];
    const w = randomF16(rng, 2 * inter * k);
    const x = randomF32(rng, rows * k);
    const gu = matmulRef(x, w.values, rows, 2 * inter, k);
    const meta = tokensStep(kit, rows);
    const xb = kit.buffer(x);
    const guBuf = kit.buffer(rows * 2 * inter * 4);
    await currentMatmul(kit, meta, xb, w.bits, 2 * inter, k, rows, guBuf);
    for (const gelu of [false, true]) {
      const act = gelu ? geluTanh : silu;
      const expect = new Float32Array(rows * inter);
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < inter; i++) {
          expect[r * inter + i] = act(gu[r * 2 * inter + i]) * gu[r * 2 * inter + inter + i];
        }
      }
      const ak = kit.kernel(ACT_MUL, { GELU_TANH: gelu });
      const actBuf = kit.buffer(rows * inter * 4);
      await kit.run([{
        kernel: ak,
        group: kit.bind(ak, meta, [
          kit.uniform(new Uint32Array([inter, 0, 0, 0]).buffer),
          guBuf,
          actBuf,
        ]),
        grid: [1, rows, 1],
      }]);
      const cur = await kit.readF32(actBuf, rows * inter);
      for (const variant of variants) {
        await t.step(`${variant.name} ${gelu ? "GELU" : "SiLU"}`, async () => {
          const out = kit.buffer(rows * inter * 4);
          await runMatmul(kit, {
            variant,
            weight: { data: w.bits, rows: 2 * inter, cols: k },
            columns: gluColumns(inter),
            rows,
            meta,
            x: xb,
            out,
            ldx: k,
            ldo: inter,
            nOut: inter,
            defines: { GLU: true, GELU: gelu },
          });
          const got = await kit.readF32(out, rows * inter);
          assert(maxRelErr(got, expect) <= TOL, `error vs reference ${maxRelErr(got, expect)}`);
          assert(
            maxRelErr(got, cur) <= TOL,
            `difference from matmul+act_mul ${maxRelErr(got, cur)}`,
          );
        });
      }
    }
  });
});

test("proto matmul: q|k|v with RoPE + KV-cache write in the epilogue (and bias) vs matmul + rope_kv", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(15);
    const [nh, nkv, hd, k, bs] = [3, 1, 16, 24, 4];
    const cols = (nh + 2 * nkv) * hd;
    // Two sequences, 3 + 2 tokens, continuing at positions 5 and 2 (blocks out of order).
    const chunks: SequenceChunk[] = [
      { tokens: [1, 2, 3], start: 5, blockTable: [3, 0], logits: "last" },
      { tokens: [4, 5], start: 2, blockTable: [1], logits: "last" },
    ];
    const batch = buildStepBatch(chunks, bs);
    const rows = batch.tokenIds.length;
    const meta = kit.meta(batch, CAP);
    const w = randomF16(rng, cols * k);
    const x = randomF32(rng, rows * k);
    const bias = randomF32(rng, cols, 0.3);
    const invFreq = ropeInverseFrequencies({
      theta: 10000,
      type: "default",
      factor: 1,
      lowFreqFactor: 1,
      highFreqFactor: 1,
      originalMaxPositionEmbeddings: 0,
    }, hd);
    const cacheWords = 4 * nkv * bs * hd;
    for (const withBias of [false, true]) {
      const qkv = matmulRef(x, w.values, rows, cols, k);
      if (withBias) qkv.forEach((v, i) => (qkv[i] = v + bias[i % cols]));
      // Reference: rotate q and k heads, scatter k and v into the cache.
      const host: HostKvCache = {
        k: new Float32Array(cacheWords),
        v: new Float32Array(cacheWords),
        numKvHeads: nkv,
        headDim: hd,
        blockSize: bs,
      };
      const qRef = new Float32Array(rows * nh * hd);
      for (let tk = 0; tk < rows; tk++) {
        for (let h = 0; h < nh + 2 * nkv; h++) {
          const v = qkv.slice(tk * cols + h * hd, tk * cols + (h + 1) * hd);
          if (h < nh + nkv) ropeRef(v, batch.positions[tk], invFreq);
          if (h < nh) qRef.set(v, (tk * nh + h) * hd);
          else if (h < nh + nkv) host.k.set(v, kvOffset(host, batch.slots[tk], h - nh));
          else host.v.set(v, kvOffset(host, batch.slots[tk], h - nh - nkv));
        }
      }
      // The current kernels: matmul (+bias) into qkv rows, then rope_kv.
      const xb = kit.buffer(x);
      const qkvBuf = kit.buffer(rows * cols * 4);
      await currentMatmul(
        kit,
        meta,
        xb,
        w.bits,
        cols,
        k,
        rows,
        qkvBuf,
        withBias ? kit.buffer(bias) : undefined,
      );
      const curK = kit.buffer(cacheWords * 4);
      const curV = kit.buffer(cacheWords * 4);
      const rk = kit.kernel(ROPE_KV, { QK_NORM: false, HALF: hd / 2 });
      const rp = new ArrayBuffer(32);
      new Uint32Array(rp).set([nh, nkv, hd, bs, cols]);
      await kit.run([{
        kernel: rk,
        group: kit.bind(rk, meta, [kit.uniform(rp), qkvBuf, kit.buffer(invFreq), curK, curV]),
        grid: [nh + 2 * nkv, rows, 1],
      }]);
      const curQkv = await kit.readF32(qkvBuf, rows * cols);
      const curQ = new Float32Array(rows * nh * hd);
      for (let tk = 0; tk < rows; tk++) {
        curQ.set(curQkv.subarray(tk * cols, tk * cols + nh * hd), tk * nh * hd);
      }
      const curKv = [await kit.readF32(curK, cacheWords), await kit.readF32(curV, cacheWords)];
      for (const variant of variants) {
        await t.step(`${variant.name}${withBias ? " + bias" : ""} f16 cache`, async () => {
          const q = kit.buffer(rows * nh * hd * 4);
          const kc = kit.buffer(cacheWords * 2);
          const vc = kit.buffer(cacheWords * 2);
          const columns = ropeColumns(nh, nkv, hd);
          await runMatmul(kit, {
            variant,
            weight: { data: w.bits, rows: cols, cols: k },
            columns,
            rows,
            meta,
            x: xb,
            out: q,
            ldx: k,
            ldo: nh * hd,
            nOut: cols,
            bias: withBias ? kit.buffer(permuteColumns(bias, columns)) : undefined,
            rope: {
              invFreq: kit.buffer(invFreq),
              kCache: kc,
              vCache: vc,
              numHeads: nh,
              numKvHeads: nkv,
              headDim: hd,
              blockSize: bs,
            },
            defines: { KV_F16: true },
          });
          const halves = async (b: GPUBuffer) =>
            Float32Array.from(new Float16Array((await kit.readF32(b, cacheWords / 2)).buffer));
          // One f16 rounding of an f32 result: within an f16 ulp (2^-10 relative).
          const ek = maxRelErr(await halves(kc), host.k);
          const ev = maxRelErr(await halves(vc), host.v);
          assert(ek <= 1e-3 && ev <= 1e-3, `f16 cache error k ${ek} v ${ev}`);
        });
        await t.step(`${variant.name}${withBias ? " + bias" : ""}`, async () => {
          const q = kit.buffer(rows * nh * hd * 4);
          const kc = kit.buffer(cacheWords * 4);
          const vc = kit.buffer(cacheWords * 4);
          const columns = ropeColumns(nh, nkv, hd);
          await runMatmul(kit, {
            variant,
            weight: { data: w.bits, rows: cols, cols: k },
            columns,
            rows,
            meta,
            x: xb,
            out: q,
            ldx: k,
            ldo: nh * hd,
            nOut: cols,
            bias: withBias ? kit.buffer(permuteColumns(bias, columns)) : undefined,
            rope: {
              invFreq: kit.buffer(invFreq),
              kCache: kc,
              vCache: vc,
              numHeads: nh,
              numKvHeads: nkv,
              headDim: hd,
              blockSize: bs,
            },
          });
          const gotQ = await kit.readF32(q, rows * nh * hd);
          const gotK = await kit.readF32(kc, cacheWords);
          const gotV = await kit.readF32(vc, cacheWords);
          assert(maxRelErr(gotQ, qRef) <= TOL, `q error ${maxRelErr(gotQ, qRef)}`);
          assert(maxRelErr(gotK, host.k) <= TOL, `k cache error ${maxRelErr(gotK, host.k)}`);
          assert(maxRelErr(gotV, host.v) <= TOL, `v cache error ${maxRelErr(gotV, host.v)}`);
          assert(maxRelErr(gotQ, curQ) <= TOL, `q differs from rope_kv ${maxRelErr(gotQ, curQ)}`);
          assert(maxRelErr(gotK, curKv[0]) <= TOL, "k cache differs from rope_kv");
          assert(maxRelErr(gotV, curKv[1]) <= TOL, "v cache differs from rope_kv");
        });
      }
    }
  });
});

test("proto matmul: a row's bits do not depend on the batch (every family; gemv_wg sliced == gemm_tiled)", async (t) => {
  await withKit(async (kit, variants) => {
    const rng = new Rng(16);
    const [n, k] = [48, 200];
    const w = randomF16(rng, n * k);
    const x = randomF32(rng, 9 * k);
    const gamma = Float32Array.from({ length: k }, () => 1 + 0.1 * rng.next());
    const results = new Map<string, Float32Array>();
    for (const variant of variants) {
      await t.step(variant.name, async () => {
        const rowsOf = async (rows: number) => {
          const out = kit.buffer(rows * n * 4);
          await runMatmul(kit, {
            variant,
            weight: { data: w.bits, rows: n, cols: k },
            rows,
            meta: tokensStep(kit, rows),
            x: kit.buffer(x.subarray(0, rows * k)),
            out,
            ldx: k,
            ldo: n,
            nOut: n,
            eps: 1e-6,
            gamma: kit.buffer(gamma),
            defines: { NORM: true },
          });
          return kit.readF32(out, rows * n);
        };
        const alone = await rowsOf(1);
        for (const rows of [2, 3, 5, 9]) {
          const batch = await rowsOf(rows);
          assertEquals(
            Array.from(batch.subarray(0, n)),
            Array.from(alone),
            `row 0 alone vs in ${rows} rows`,
          );
        }
        results.set(variant.name, await rowsOf(9));
      });
    }
    const sliced = results.get("gemv_wg sliced")!;
    const tiled = results.get("gemm_tiled")!;
    assertEquals(Array.from(sliced), Array.from(tiled), "gemv_wg sliced and gemm_tiled differ");
  });
});

/** A paged cache filled with random K/V for `seqs` (each a context length and a block table). */
function randomCache(
  rng: Rng,
  numBlocks: number,
  nkv: number,
  hd: number,
  bs: number,
): HostKvCache {
  const words = numBlocks * nkv * bs * hd;
  return {
    k: randomF32(rng, words),
    v: randomF32(rng, words),
    numKvHeads: nkv,
    headDim: hd,
    blockSize: bs,
  };
}

interface AttentionCase {
  name: string;
  nh: number;
  nkv: number;
  hd: number;
  chunks: SequenceChunk[];
  window: number;
  softcap: number;
}

async function checkAttention(
  kit: GpuKit,
  c: AttentionCase,
  rng: Rng,
  t: { step: (n: string, f: () => Promise<void>) => Promise<void> },
) {
  const bs = 16;
  const batch = buildStepBatch(c.chunks, bs);
  const cap: StepCapacity = {
    maxTokens: 64,
    maxSeqs: 4,
    maxLogitRows: 64,
    maxBlocksPerSeq: 8,
    samplingWordsPerRow: 0,
  };
  const meta = kit.meta(batch, cap);
  const T = batch.tokenIds.length;
  const qkvCols = (c.nh + 2 * c.nkv) * c.hd;
  const q = randomF32(rng, T * qkvCols);
  const cache = randomCache(rng, 32, c.nkv, c.hd, bs);
  const scale = 1 / Math.sqrt(c.hd);
  const tokens = Array.from(
    { length: T },
    (_, i) => ({
      pos: batch.positions[i],
      blockTable: Array.from(batch.blockTables[batch.tokenSeq[i]]),
    }),
  );
  const ref = attentionRef({
    q,
    qStride: qkvCols,
    tokens,
    cache,
    numHeads: c.nh,
    scale,
    window: c.window,
    softcap: c.softcap,
  });
  const qb = kit.buffer(q);
  const kb = kit.buffer(cache.k);
  const vb = kit.buffer(cache.v);
  const outWords = T * c.nh * c.hd;
  // The current kernel on the same inputs.
  const pk = kit.kernel(PAGED_ATTENTION, { GROUP: c.nh / c.nkv, HEAD_DIM: c.hd });
  const pp = new ArrayBuffer(32);
  new Uint32Array(pp).set([c.nh, c.nkv, bs, qkvCols, c.window]);
  new Float32Array(pp).set([scale, c.softcap], 5);
  const curOut = kit.buffer(outWords * 4);
  await kit.run([{
    kernel: pk,
    group: kit.bind(pk, meta, [kit.uniform(pp), qb, kb, vb, curOut]),
    grid: [c.nkv, T, 1],
  }]);
  const cur = await kit.readF32(curOut, outWords);
  assert(
    maxRelErr(cur, ref) <= TOL,
    `${c.name}: paged_attention.wgsl vs reference ${maxRelErr(cur, ref)}`,
  );
  const maxQuery = Math.max(...c.chunks.map((ch) => ch.tokens.length));
  const tqs = maxQuery > 1 ? [1, 2, 4] : [1];
  const group = c.nh / c.nkv;
  // One lane count for every tile size (the lane of a key fixes the summation order).
  const lanes = attentionLanes(group, c.hd, Math.max(...tqs));
  const maxContext = Math.max(...batch.contextLens);
  const results: Float32Array[] = [];
  for (const tq of tqs) {
    for (const splitLen of [1024, 16]) {
      const splits = Math.ceil(maxContext / splitLen);
      await t.step(`${c.name} TQ=${tq} splits=${splits}`, async () => {
        const params = kit.uniform(
          packAttentionParams({
            numHeads: c.nh,
            numKvHeads: c.nkv,
            blockSize: bs,
            qStride: qkvCols,
            window: c.window,
            scale,
            softcap: c.softcap,
            maxSplits: splits,
            splitLen,
          }),
        );
        const ak = kit.kernel(ATTENTION_LANES, {
          GROUP: group,
          HEAD_DIM: c.hd,
          TQ: tq,
          WG: lanes,
          KV_F16: false,
        });
        const out = kit.buffer(outWords * 4);
        const partAcc = kit.buffer(T * c.nh * splits * c.hd * 4);
        const partMl = kit.buffer(T * c.nh * splits * 8);
        const info = kit.buffer(16);
        const tiles = tq === 1 ? T : Math.ceil(T / tq) + c.chunks.length;
        const dispatches = [{
          kernel: ak,
          group: kit.bind(ak, meta, [params, qb, kb, vb, out, partAcc, partMl, info]),
          grid: [c.nkv, tiles, splits] as [number, number, number],
        }];
        if (splits > 1) {
          const ck = kit.kernel(ATTENTION_COMBINE, { HEAD_DIM: c.hd });
          dispatches.push({
            kernel: ck,
            group: kit.bind(ck, meta, [params, partAcc, partMl, info, out]),
            grid: [T, 1, 1],
          });
        }
        await kit.run(dispatches);
        const got = await kit.readF32(out, outWords);
        assert(maxRelErr(got, ref) <= TOL, `error vs reference ${maxRelErr(got, ref)}`);
        assert(
          maxRelErr(got, cur) <= TOL,
          `difference from paged_attention.wgsl ${maxRelErr(got, cur)}`,
        );
        if (splitLen === 16) results.push(got);
      });
    }
  }
  // Query tiles change nothing (same lanes, same absolute splits): bit for bit.
  for (const r of results.slice(1)) {
    assertEquals(Array.from(r), Array.from(results[0]), `${c.name}: tiles changed the bits`);
  }
  // Each sequence alone gives the bits it gets in the batch.
  await t.step(`${c.name} each sequence alone`, async () => {
    const splitLen = 16;
    for (let s = 0; s < c.chunks.length; s++) {
      const alone = buildStepBatch([c.chunks[s]], bs);
      const first = batch.queryStart[s];
      const n = c.chunks[s].tokens.length;
      const ameta = kit.meta(alone, cap);
      const aq = kit.buffer(q.slice(first * qkvCols, (first + n) * qkvCols));
      const splits = Math.ceil(Math.max(...alone.contextLens) / splitLen);
      const params = kit.uniform(
        packAttentionParams({
          numHeads: c.nh,
          numKvHeads: c.nkv,
          blockSize: bs,
          qStride: qkvCols,
          window: c.window,
          scale,
          softcap: c.softcap,
          maxSplits: splits,
          splitLen,
        }),
      );
      const ak = kit.kernel(ATTENTION_LANES, {
        GROUP: group,
        HEAD_DIM: c.hd,
        TQ: 1,
        WG: lanes,
        KV_F16: false,
      });
      const out = kit.buffer(n * c.nh * c.hd * 4);
      const partAcc = kit.buffer(n * c.nh * splits * c.hd * 4);
      const partMl = kit.buffer(n * c.nh * splits * 8);
      const info = kit.buffer(16);
      const dispatches = [{
        kernel: ak,
        group: kit.bind(ak, ameta, [params, aq, kb, vb, out, partAcc, partMl, info]),
        grid: [c.nkv, n, splits] as [number, number, number],
      }];
      if (splits > 1) {
        const ck = kit.kernel(ATTENTION_COMBINE, { HEAD_DIM: c.hd });
        dispatches.push({
          kernel: ck,
          group: kit.bind(ck, ameta, [params, partAcc, partMl, info, out]),
          grid: [n, 1, 1],
        });
      }
      await kit.run(dispatches);
      const got = await kit.readF32(out, n * c.nh * c.hd);
      const inBatch = results[0].subarray(first * c.nh * c.hd, (first + n) * c.nh * c.hd);
      assertEquals(
        Array.from(got),
        Array.from(inBatch),
        `${c.name}: sequence ${s} alone differs from in the batch`,
      );
    }
  });
  // An f16 cache: the same kernel reading half the words, against the reference on the
  // f16-rounded cache.
  if (c.hd % 8 === 0) {
    await t.step(`${c.name} f16 KV cache`, async () => {
      const kh = new Float16Array(cache.k);
      const vh = new Float16Array(cache.v);
      const rounded = { ...cache, k: Float32Array.from(kh), v: Float32Array.from(vh) };
      const ref16 = attentionRef({
        q,
        qStride: qkvCols,
        tokens,
        cache: rounded,
        numHeads: c.nh,
        scale,
        window: c.window,
        softcap: c.softcap,
      });
      const splitLen = 16;
      const splits = Math.ceil(maxContext / splitLen);
      const params = kit.uniform(
        packAttentionParams({
          numHeads: c.nh,
          numKvHeads: c.nkv,
          blockSize: bs,
          qStride: qkvCols,
          window: c.window,
          scale,
          softcap: c.softcap,
          maxSplits: splits,
          splitLen,
        }),
      );
      const ak = kit.kernel(ATTENTION_LANES, {
        GROUP: group,
        HEAD_DIM: c.hd,
        TQ: 1,
        WG: lanes,
        KV_F16: true,
      });
      const out = kit.buffer(outWords * 4);
      const partAcc = kit.buffer(T * c.nh * splits * c.hd * 4);
      const partMl = kit.buffer(T * c.nh * splits * 8);
      const info = kit.buffer(16);
      const dispatches = [{
        kernel: ak,
        group: kit.bind(ak, meta, [
          params,
          qb,
          kit.buffer(new Uint16Array(kh.buffer)),
          kit.buffer(new Uint16Array(vh.buffer)),
          out,
          partAcc,
          partMl,
          info,
        ]),
        grid: [c.nkv, T, splits] as [number, number, number],
      }];
      if (splits > 1) {
        const ck = kit.kernel(ATTENTION_COMBINE, { HEAD_DIM: c.hd });
        dispatches.push({
          kernel: ck,
          group: kit.bind(ck, meta, [params, partAcc, partMl, info, out]),
          grid: [T, 1, 1],
        });
      }
      await kit.run(dispatches);
      const got = await kit.readF32(out, outWords);
      assert(
        maxRelErr(got, ref16) <= TOL,
        `error vs reference on the f16 cache ${maxRelErr(got, ref16)}`,
      );
    });
  }
}

test("proto attention: decode, split-K + combine, GQA 1/3/4, window, soft-cap vs reference and paged_attention; batch-invariant", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(21);
    // Contexts 37, 5, 70 (ending inside a block of 16), blocks scattered.
    const decode = (): SequenceChunk[] => [
      { tokens: [1], start: 36, blockTable: [7, 2, 9], logits: "last" },
      { tokens: [1], start: 4, blockTable: [4], logits: "last" },
      { tokens: [1], start: 69, blockTable: [11, 0, 5, 13, 20], logits: "last" },
    ];
    const cases: AttentionCase[] = [
      {
        name: "GQA 3 (9/3, hd 64)",
        nh: 9,
        nkv: 3,
        hd: 64,
        chunks: decode(),
        window: 0,
        softcap: 0,
      },
      { name: "MHA (3/3, hd 32)", nh: 3, nkv: 3, hd: 32, chunks: decode(), window: 0, softcap: 0 },
      {
        name: "GQA 4 (8/2, hd 32) window 20",
        nh: 8,
        nkv: 2,
        hd: 32,
        chunks: decode(),
        window: 20,
        softcap: 0,
      },
      {
        name: "GQA 2 (4/2, hd 16) soft-cap 5",
        nh: 4,
        nkv: 2,
        hd: 16,
        chunks: decode(),
        window: 0,
        softcap: 5,
      },
    ];
    for (const c of cases) await checkAttention(kit, c, rng, t);
  } finally {
    kit.destroy();
  }
});

test("proto attention: ragged prefill + decode batch, query tiles TQ 1/2/4, window", async (t) => {
  const kit = await GpuKit.create();
  try {
    const rng = new Rng(22);
    const chunks = (): SequenceChunk[] => [
      { tokens: [1, 2, 3, 4, 5, 6, 7], start: 0, blockTable: [3], logits: "last" },
      { tokens: [1, 2, 3, 4, 5], start: 14, blockTable: [8, 1], logits: "all" },
      { tokens: [1], start: 40, blockTable: [2, 6, 10], logits: "last" },
    ];
    const cases: AttentionCase[] = [
      {
        name: "GQA 3 (6/2, hd 32)",
        nh: 6,
        nkv: 2,
        hd: 32,
        chunks: chunks(),
        window: 0,
        softcap: 0,
      },
      {
        name: "GQA 4 (4/1, hd 16) window 6 soft-cap 8",
        nh: 4,
        nkv: 1,
        hd: 16,
        chunks: chunks(),
        window: 6,
        softcap: 8,
      },
    ];
    for (const c of cases) await checkAttention(kit, c, rng, t);
  } finally {
    kit.destroy();
  }
});
