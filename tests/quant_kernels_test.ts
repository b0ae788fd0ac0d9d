/**
 * The quantized matmuls (kernels/qgemv_c8 for CPU adapters, qgemv_wg + qgemm_tiled for GPUs,
 * quantize_rows for the fast path) on llama.cpp Q8_0 / Q4_0 blocks, against CPU references
 * built from the dequantizers in src/model/quant/:
 * - exact path: f32 activations times the dequantized weights, <= 1e-5 (max |a-b| / (1+|b|));
 * - fast path: quantize_rows must produce llama.cpp's Q8 activation blocks, and the matmul the
 *   exact integer dot products of those blocks scaled by d_w * d_x (<= 1e-5 against that);
 * - batch invariance bit for bit (a row alone vs in 2..9 rows, qgemv_wg == qgemm_tiled, the
 *   packed_4x8 builtins == their shift fallback);
 * - the shared epilogues (residual + bias, logit-row gather, RMSNorm, GLU, RoPE + KV cache).
 * Shapes: K a multiple of 32, N not a multiple of 8, 1..9 rows and 40 (two qgemm row tiles).
 * Q8X and Q4X (K-quants transcoded at load; exact path only) have their own tests at the end:
 * packers, exact products at decode and prefill row counts, batch invariance, the refusal of
 * XQ, and the epilogues (RoPE + KV cache in the q|k|v test above).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { QuantKit } from "../bench/quant/kit.ts";
import {
  type BuiltQMatmul,
  type QKernelName,
  type QMatmulJob,
  runQMatmul,
} from "../bench/quant/qmatmul.ts";
import {
  dequantizeMatrix,
  fastMatmulRef,
  quantizeRowRef,
  quantMatmulRef,
  type QuantRow,
  readQuantRows,
} from "../bench/quant/reference.ts";
import {
  geluTanh,
  type HostKvCache,
  kvOffset,
  maxRelErr,
  rmsNormRef,
  ropeRef,
  silu,
} from "./helpers/cpu_reference.ts";
import {
  c8TileWords,
  packQuantColumnBlocks,
  type QuantMatrix,
} from "../src/model/quant/pack_c8.ts";
import { packQuantRows } from "../src/model/quant/pack_rows.ts";
import { Q8X_BYTES, transcodeToQ8X } from "../src/model/quant/q8x.ts";
import { Q4X_BYTES, transcodeQ4KToQ4X } from "../src/model/quant/q4x.ts";
import { randomQ4K, randomQ6K } from "./helpers/k_quant_blocks.ts";
import { quantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { quantizeQ4_0 } from "../src/model/quant/q4_0.ts";
import { gluColumns, permuteColumns, ropeColumns } from "../src/model/weight_layout.ts";
import {
  QGEMM_TILED,
  QGEMV_C8,
  QGEMV_WG,
  QMATMUL_DEFAULTS,
  xqRowWords,
} from "../src/kernels/quant_matmul.ts";
import { buildStepBatch } from "../src/runner/step_meta.ts";
import { ropeInverseFrequencies } from "../src/model/rope.ts";
import { Rng } from "../bench/rng.ts";

const TOL = 1e-5;
const EPILOGUE_TOL = 2e-5;
const KERNELS: QKernelName[] = ["qgemv_c8", "qgemv_wg", "qgemm_tiled"];
const TYPES = ["Q8_0", "Q4_0"] as const;

function gaussian(rng: Rng, n: number, scale = 1): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

function quantMatrix(rng: Rng, type: "Q8_0" | "Q4_0", rows: number, k: number): QuantMatrix {
  const v = gaussian(rng, rows * k, 0.5);
  // A zero block and one with a single non-zero value: scales of 0 and exact extremes.
  v.fill(0, 0, 32);
  v.fill(0, 32, 64);
  v[40] = -3;
  return { type, rows, k, data: type === "Q8_0" ? quantizeQ8_0(v) : quantizeQ4_0(v) };
}

async function withKit(fn: (kit: QuantKit) => Promise<void>): Promise<void> {
  const kit = await QuantKit.create();
  try {
    await fn(kit);
  } finally {
    kit.destroy();
  }
}

/** Runs a job and reads `rows * n` outputs. */
async function run(
  kit: QuantKit,
  job: QMatmulJob,
  n: number,
): Promise<{ out: Float32Array; built: BuiltQMatmul }> {
  const built = await runQMatmul(kit, job);
  return { out: await kit.readF32(job.out, job.rows * n), built };
}

/** The quantized activations a fast-path job produced. */
async function readXq(
  kit: QuantKit,
  built: BuiltQMatmul,
  rows: number,
  k: number,
): Promise<QuantRow[]> {
  const words = new Uint32Array(await kit.read(built.xqBuffer!, rows * xqRowWords(k)));
  return readQuantRows(words, rows, k);
}

/** GPU activation blocks against llama.cpp's math on `u` (rounding ties may differ by one). */
function checkQuantRows(got: QuantRow[], u: Float32Array, k: number): void {
  got.forEach((row, r) => {
    const want = quantizeRowRef(u.subarray(r * k, (r + 1) * k));
    const dErr = maxRelErr(row.d, want.d);
    assert(dErr <= 1e-6, `row ${r}: scales differ by ${dErr}`);
    let off = 0;
    for (let i = 0; i < k; i++) {
      const diff = Math.abs(row.q[i] - want.q[i]);
      assert(diff <= 1, `row ${r} k ${i}: quant ${row.q[i]} vs ${want.q[i]}`);
      off += diff;
    }
    assert(off <= k / 50, `row ${r}: ${off} quants off by one`);
    for (let b = 0; b < k / 32; b++) {
      const s = row.q.subarray(32 * b, 32 * b + 32).reduce((a, q) => a + q, 0);
      assertEquals(row.sum[b], s, `row ${r} block ${b}: stored sum`);
    }
  });
}

/** act(gate) * up of each row of `plain` (gate | up halves of n columns). */
function gluRef(plain: ArrayLike<number>, rows: number, n: number, act: (v: number) => number): Float64Array {
  const inter = n / 2;
  const want = new Float64Array(rows * inter);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < inter; i++) want[r * inter + i] = act(plain[r * n + i]) * plain[r * n + inter + i];
  }
  return want;
}

test("quant packers: column blocks and quantized rows hold llama.cpp's blocks (decoded back on the CPU)", () => {
  const rng = new Rng(41);
  for (const type of TYPES) {
    const m = quantMatrix(rng, type, 13, 96);
    const want = dequantizeMatrix(m);
    const kb = m.k / 32;
    const f16 = (bits: number) => new Float16Array(new Uint16Array([bits]).buffer)[0];
    const value = (q: number) => type === "Q8_0" ? (q << 24) >> 24 : q - 8;
    // Column blocks: per 8 columns, per block: a word of scales, then u32s of 4 consecutive k.
    const c8 = packQuantColumnBlocks(m);
    assertEquals(c8.cols, 16);
    assertEquals(c8.data.length, 2 * kb * 4 * c8TileWords(type));
    for (let n = 0; n < m.rows; n++) {
      for (let k = 0; k < m.k; k++) {
        const [c, q, b, kk] = [n >> 3, n & 7, k >> 5, k & 31];
        const tile = (c * kb + b) * 4 * c8TileWords(type);
        const d = f16((c8.data[tile + (q >> 1)] >>> (16 * (q & 1))) & 0xffff);
        let byte: number;
        if (type === "Q8_0") {
          byte = (c8.data[tile + 4 * (1 + 2 * (kk >> 2) + (q >> 2)) + (q & 3)] >>> (8 * (kk & 3))) &
            0xff;
        } else {
          const j = kk & 15;
          const word = c8.data[tile + 4 * (1 + 2 * (j >> 2) + (q >> 2)) + (q & 3)];
          byte = (word >>> (8 * (j & 3) + (kk >= 16 ? 4 : 0))) & 0xf;
        }
        assertEquals(Math.fround(value(byte) * d), want[n * m.k + k], `${type} c8 n=${n} k=${k}`);
      }
    }
    // Quantized rows: quants per column, then the scales.
    const rows = packQuantRows(m);
    const qWords = type === "Q8_0" ? 8 : 4;
    for (let n = 0; n < m.rows; n++) {
      for (let k = 0; k < m.k; k++) {
        const [b, kk] = [k >> 5, k & 31];
        const h = n * kb + b;
        const d = f16((rows.data[rows.cols * kb * qWords + (h >> 1)] >>> (16 * (h & 1))) & 0xffff);
        const base = (n * kb + b) * qWords;
        const byte = type === "Q8_0"
          ? (rows.data[base + (kk >> 2)] >>> (8 * (kk & 3))) & 0xff
          : (rows.data[base + ((kk & 15) >> 2)] >>> (8 * (kk & 3) + (kk >= 16 ? 4 : 0))) & 0xf;
        assertEquals(Math.fround(value(byte) * d), want[n * m.k + k], `${type} rows n=${n} k=${k}`);
      }
    }
  }
});

test("quant matmul: exact path equals f32 math on the dequantized weights (every kernel and type, odd shapes, 1..9 and 40 rows)", async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(42);
    // [N, K, row counts]: N not a multiple of 8, one or several K blocks.
    const shapes: [number, number, number[]][] = [
      [40, 64, [1, 2, 3, 4, 5, 6, 7, 8, 9]],
      [13, 32, [1, 5, 9]],
      [100, 96, [3]],
      [20, 160, [40]],
    ];
    for (const [n, k, rowsList] of shapes) {
      for (const type of TYPES) {
        const weight = quantMatrix(rng, type, n, k);
        for (const rows of rowsList) {
          const x = gaussian(rng, rows * k);
          const ref = quantMatmulRef(x, weight, rows);
          const xb = kit.buffer(x);
          const meta = kit.meta(rows);
          for (const kernel of KERNELS) {
            await t.step(`${kernel} ${type} N=${n} K=${k} rows=${rows}`, async () => {
              const { out } = await run(kit, {
                kernel,
                weight,
                rows,
                meta,
                x: xb,
                ldx: k,
                out: kit.buffer(rows * n * 4),
                ldo: n,
                nOut: n,
              }, n);
              const e = maxRelErr(out, ref);
              assert(e <= TOL, `error ${e}`);
            });
          }
        }
      }
    }
  });
});

test("quant matmul: fast path = llama.cpp's Q8 activation blocks times the weight blocks in exact integers (every kernel and type)", async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(43);
    const shapes: [number, number, number][] = [[40, 64, 1], [13, 96, 5], [36, 32, 9], [
      20,
      160,
      40,
    ]];
    for (const [n, k, rows] of shapes) {
      for (const type of TYPES) {
        const weight = quantMatrix(rng, type, n, k);
        const x = gaussian(rng, rows * k);
        x[3] = 0; // a row block of mixed zeros; the first block of row 0 extreme:
        x[5] = 40;
        const exact = quantMatmulRef(x, weight, rows);
        const xb = kit.buffer(x);
        const meta = kit.meta(rows);
        for (const kernel of KERNELS) {
          await t.step(`${kernel} ${type} N=${n} K=${k} rows=${rows}`, async () => {
            const { out, built } = await run(kit, {
              kernel,
              weight,
              xq: true,
              rows,
              meta,
              x: xb,
              ldx: k,
              out: kit.buffer(rows * n * 4),
              ldo: n,
              nOut: n,
            }, n);
            const xq = await readXq(kit, built, rows, k);
            checkQuantRows(xq, x, k);
            const e = maxRelErr(out, fastMatmulRef(xq, weight));
            assert(e <= TOL, `error vs the integer reference ${e}`);
            // Quantizing x costs accuracy but not much: within a few % of the largest product.
            const scale = exact.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            const approx = out.reduce((m, v, i) => Math.max(m, Math.abs(v - exact[i])), 0) / scale;
            assert(approx > 0 && approx < 0.05, `fast vs exact ${approx} of the largest product`);
          });
        }
      }
    }
  });
});

test("quant matmul: batch invariance bit for bit (a row alone vs in 2..9 rows; qgemv_wg == qgemm_tiled; packed_4x8 builtins == shifts)", async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(44);
    const [n, k] = [44, 96];
    const x = gaussian(rng, 9 * k);
    const xb = kit.buffer(x);
    const alone = Array.from({ length: 9 }, (_, r) => kit.buffer(x.slice(r * k, (r + 1) * k)));
    const dot4s = kit.gpu.hasPacked4x8 ? [true, false] : [false];
    for (const type of TYPES) {
      const weight = quantMatrix(rng, type, n, k);
      for (const xq of [false, true]) {
        const results = new Map<string, Float32Array>();
        for (const kernel of KERNELS) {
          for (const dot4 of dot4s) {
            await t.step(
              `${kernel} ${type} ${xq ? "fast" : "exact"}${dot4 ? " dot4" : ""}`,
              async () => {
                const job = (rows: number, x: GPUBuffer) => ({
                  kernel,
                  weight,
                  xq,
                  rows,
                  meta: kit.meta(rows),
                  x,
                  ldx: k,
                  out: kit.buffer(rows * n * 4),
                  ldo: n,
                  nOut: n,
                  defines: { DOT4: dot4 },
                });
                const single = [];
                for (let r = 0; r < 9; r++) single.push((await run(kit, job(1, alone[r]), n)).out);
                for (let rows = 2; rows <= 9; rows++) {
                  const { out } = await run(kit, job(rows, xb), n);
                  for (let r = 0; r < rows; r++) {
                    assertEquals(
                      Array.from(new Uint32Array(out.slice(r * n, (r + 1) * n).buffer)),
                      Array.from(new Uint32Array(single[r].buffer)),
                      `row ${r} of ${rows}`,
                    );
                  }
                  if (rows === 9) results.set(`${kernel}${dot4}`, out);
                }
              },
            );
          }
        }
        const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer));
        for (const dot4 of dot4s) {
          assertEquals(
            bits(results.get(`qgemv_wg${dot4}`)!),
            bits(results.get(`qgemm_tiled${dot4}`)!),
            "qgemv_wg vs qgemm_tiled",
          );
        }
        if (dot4s.length === 2) {
          for (const kernel of KERNELS) {
            assertEquals(
              bits(results.get(`${kernel}true`)!),
              bits(results.get(`${kernel}false`)!),
              `${kernel}: builtins vs shifts`,
            );
          }
        }
      }
    }
  });
});

test("quant matmul: epilogues (residual + bias, logit-row gather, RMSNorm + gamma, GLU) on both paths (Q8X, Q4X: exact)", async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(45);
    const [n, k, rows, eps] = [36, 64, 5, 1e-5];
    // Q8X / Q4X (random blocks: K is no multiple of 256) have the exact path only.
    for (const type of [...TYPES, "Q8X", "Q4X"] as const) {
      const x8 = type === "Q8X" || type === "Q4X";
      const weight = x8 ? X_MATRICES[type](rng, n, k) : quantMatrix(rng, type, n, k);
      const x = gaussian(rng, rows * k, 2);
      const xb = kit.buffer(x);
      const meta = kit.meta(rows);
      const residual = gaussian(rng, rows * n);
      const bias = gaussian(rng, n, 0.3);
      const gamma = Float32Array.from({ length: k }, () => 1 + 0.3 * (rng.next() - 0.5));
      for (const kernel of KERNELS) {
        for (const xq of x8 ? [false] : [false, true]) {
          const tag = `${kernel} ${type} ${xq ? "fast" : "exact"}`;
          const base = { kernel, weight, xq, rows, meta, x: xb, ldx: k, ldo: n, nOut: n };
          // The plain product on this path (fast: checked above against integer references).
          const plain = xq
            ? (await run(kit, { ...base, out: kit.buffer(rows * n * 4) }, n)).out
            : quantMatmulRef(x, weight, rows);
          await t.step(`${tag} ACCUM + BIAS`, async () => {
            const { out } = await run(kit, {
              ...base,
              out: kit.buffer(residual),
              bias: kit.buffer(bias),
              defines: { ACCUM: true },
            }, n);
            const want = plain.map((v, i) => v + bias[i % n] + residual[i]);
            assert(maxRelErr(out, want) <= EPILOGUE_TOL, `error ${maxRelErr(out, want)}`);
          });
          await t.step(`${tag} GATHER (logit rows of tokens 4, 1, 2)`, async () => {
            const gmeta = kit.meta(rows, [4, 1, 2]);
            const { out } = await run(kit, {
              ...base,
              meta: gmeta,
              rows: 3,
              out: kit.buffer(3 * n * 4),
              defines: { GATHER: true },
            }, n);
            const want = new Float64Array(3 * n);
            [4, 1, 2].forEach((tok, r) => want.set(plain.subarray(tok * n, (tok + 1) * n), r * n));
            assert(maxRelErr(out, want) <= EPILOGUE_TOL, `error ${maxRelErr(out, want)}`);
          });
          await t.step(`${tag} NORM + GAMMA`, async () => {
            const normed = rmsNormRef(x, gamma, rows, k, eps);
            const { out, built } = await run(kit, {
              ...base,
              out: kit.buffer(rows * n * 4),
              norm: true,
              gamma: kit.buffer(gamma),
              eps,
            }, n);
            let want: ArrayLike<number>;
            if (xq) {
              const q = await readXq(kit, built, rows, k);
              checkQuantRows(q, normed, k);
              want = fastMatmulRef(q, weight);
            } else {
              want = quantMatmulRef(normed, weight, rows);
            }
            assert(maxRelErr(out, want) <= EPILOGUE_TOL, `error ${maxRelErr(out, want)}`);
          });
        }
      }
      // GLU: gate | up rows (inter = n / 2), column order gluColumns.
      const inter = n / 2;
      for (const kernel of KERNELS) {
        for (const xq of x8 ? [false] : [false, true]) {
          for (const gelu of [false, true]) {
            await t.step(
              `${kernel} ${type} ${xq ? "fast" : "exact"} GLU ${gelu ? "GELU" : "SiLU"}`,
              async () => {
                const base = { kernel, weight, xq, rows, meta, x: xb, ldx: k };
                const plain = xq
                  ? (await run(kit, { ...base, out: kit.buffer(rows * n * 4), ldo: n, nOut: n }, n))
                    .out
                  : quantMatmulRef(x, weight, rows);
                const want = gluRef(plain, rows, n, gelu ? geluTanh : silu);
                const { out } = await run(kit, {
                  ...base,
                  columns: gluColumns(inter),
                  out: kit.buffer(rows * inter * 4),
                  ldo: inter,
                  nOut: inter,
                  defines: { GLU: true, GELU: gelu },
                }, inter);
                assert(maxRelErr(out, want) <= EPILOGUE_TOL, `error ${maxRelErr(out, want)}`);
              },
            );
          }
        }
      }
    }
  });
});

test("quant matmul: q|k|v with RoPE + KV-cache write (f32 and f16 cache, with bias) on both paths (Q8X, Q4X: exact)", async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(46);
    const [nh, nkv, hd, k, bs] = [3, 1, 16, 64, 4];
    const cols = (nh + 2 * nkv) * hd;
    // Two sequences, 3 + 2 tokens, continuing at positions 5 and 2 (blocks out of order).
    const batch = buildStepBatch([
      { tokens: [1, 2, 3], start: 5, blockTable: [3, 0], logits: "last" },
      { tokens: [4, 5], start: 2, blockTable: [1], logits: "last" },
    ], bs);
    const rows = batch.tokenIds.length;
    const meta = kit.metaBatch(batch);
    const invFreq = ropeInverseFrequencies({
      theta: 10000,
      type: "default",
      factor: 1,
      lowFreqFactor: 1,
      highFreqFactor: 1,
      originalMaxPositionEmbeddings: 0,
    }, hd);
    const cacheWords = 4 * nkv * bs * hd;
    const columns = ropeColumns(nh, nkv, hd);
    const x = gaussian(rng, rows * k);
    const xb = kit.buffer(x);
    const bias = gaussian(rng, cols, 0.3);
    // Q8X / Q4X (random blocks: K is no multiple of 256) have the exact path only.
    for (const type of [...TYPES, "Q8X", "Q4X"] as const) {
      const x8 = type === "Q8X" || type === "Q4X";
      const weight = x8 ? X_MATRICES[type](rng, cols, k) : quantMatrix(rng, type, cols, k);
      for (const kernel of KERNELS) {
        for (const xq of x8 ? [false] : [false, true]) {
          const base = { kernel, weight, xq, rows, meta, x: xb, ldx: k };
          const plain = xq
            ? (await run(
              kit,
              { ...base, out: kit.buffer(rows * cols * 4), ldo: cols, nOut: cols },
              cols,
            )).out
            : quantMatmulRef(x, weight, rows);
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
              const v = Float32Array.from(
                { length: hd },
                (_, d) => plain[tk * cols + h * hd + d] + bias[h * hd + d],
              );
              if (h < nh + nkv) ropeRef(v, batch.positions[tk], invFreq);
              if (h < nh) qRef.set(v, (tk * nh + h) * hd);
              else if (h < nh + nkv) host.k.set(v, kvOffset(host, batch.slots[tk], h - nh));
              else host.v.set(v, kvOffset(host, batch.slots[tk], h - nh - nkv));
            }
          }
          for (const f16 of [false, true]) {
            await t.step(
              `${kernel} ${type} ${xq ? "fast" : "exact"} ${f16 ? "f16" : "f32"} cache`,
              async () => {
                const q = kit.buffer(rows * nh * hd * 4);
                const kc = kit.buffer(cacheWords * (f16 ? 2 : 4));
                const vc = kit.buffer(cacheWords * (f16 ? 2 : 4));
                await runQMatmul(kit, {
                  ...base,
                  columns,
                  out: q,
                  ldo: nh * hd,
                  nOut: cols,
                  bias: kit.buffer(permuteColumns(bias, columns)),
                  rope: {
                    invFreq: kit.buffer(invFreq),
                    kCache: kc,
                    vCache: vc,
                    numHeads: nh,
                    numKvHeads: nkv,
                    headDim: hd,
                    blockSize: bs,
                  },
                  defines: { KV_F16: f16 },
                });
                const read = async (b: GPUBuffer) =>
                  f16
                    ? Float32Array.from(new Float16Array(await kit.read(b, cacheWords / 2)))
                    : await kit.readF32(b, cacheWords);
                // The f16 cache rounds an f32 result once: within 2^-10 relative.
                const tol = f16 ? 1e-3 : EPILOGUE_TOL;
                const eq = maxRelErr(await kit.readF32(q, rows * nh * hd), qRef);
                const ek = maxRelErr(await read(kc), host.k);
                const ev = maxRelErr(await read(vc), host.v);
                assert(
                  eq <= EPILOGUE_TOL && ek <= tol && ev <= tol,
                  `q ${eq}, k cache ${ek}, v cache ${ev}`,
                );
              },
            );
          }
        }
      }
    }
  });
});

/**
 * A Q8X matrix: with K a multiple of 256, Q4_K rows then Q6_K rows transcoded (a Q4_K_M q|k|v);
 * otherwise random blocks (scales that differ per half, mins, a zero block).
 */
function q8xMatrix(rng: Rng, rows: number, k: number): QuantMatrix {
  if (k % 256 === 0) {
    const a = Math.ceil(rows / 2);
    const sb = k / 256;
    const data = new Uint8Array(rows * (k / 32) * Q8X_BYTES);
    data.set(transcodeToQ8X("Q4_K", randomQ4K(rng, a * sb), a * sb));
    data.set(
      transcodeToQ8X("Q6_K", randomQ6K(rng, (rows - a) * sb), (rows - a) * sb),
      a * (k / 32) * Q8X_BYTES,
    );
    return { type: "Q8X", rows, k, data };
  }
  const blocks = rows * (k / 32);
  const data = new Uint8Array(blocks * Q8X_BYTES);
  const view = new DataView(data.buffer);
  for (let b = 1; b < blocks; b++) {
    view.setFloat32(44 * b, 0.02 * rng.next(), true);
    view.setFloat32(44 * b + 4, 0.02 * rng.next(), true);
    view.setFloat32(44 * b + 8, b % 3 === 0 ? 0 : 0.1 * rng.next(), true);
    for (let i = 0; i < 32; i++) data[44 * b + 12 + i] = Math.floor(rng.next() * 64) - 32;
  }
  return { type: "Q8X", rows, k, data };
}

/**
 * A Q4X matrix: with K a multiple of 256, transcoded Q4_K rows (an all-Q4_K q|k or gate|up);
 * otherwise random blocks (scales, mins, a zero block).
 */
function q4xMatrix(rng: Rng, rows: number, k: number): QuantMatrix {
  const sb = (rows * k) / 256;
  if (k % 256 === 0) return { type: "Q4X", rows, k, data: transcodeQ4KToQ4X(randomQ4K(rng, sb), sb) };
  const blocks = rows * (k / 32);
  const data = new Uint8Array(blocks * Q4X_BYTES);
  const view = new DataView(data.buffer);
  for (let b = 1; b < blocks; b++) {
    view.setFloat32(24 * b, 0.02 * rng.next(), true);
    view.setFloat32(24 * b + 4, b % 3 === 0 ? 0 : 0.1 * rng.next(), true);
    for (let i = 0; i < 16; i++) data[24 * b + 8 + i] = Math.floor(rng.next() * 256);
  }
  return { type: "Q4X", rows, k, data };
}

/** The Q8X / Q4X test matrices. */
const X_MATRICES = { Q8X: q8xMatrix, Q4X: q4xMatrix } as const;

test("quant Q4X packers: column blocks and quantized rows decode back to the blocks' values", () => {
  const m = q4xMatrix(new Rng(61), 13, 96);
  const want = dequantizeMatrix(m);
  const kb = m.k / 32;
  const f = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];
  const value = (q: number, s: number, min: number) => Math.fround(Math.fround(q * s) - min);
  const c8 = packQuantColumnBlocks(m);
  assertEquals(c8.data.length, 2 * kb * 4 * c8TileWords("Q4X"));
  const rows = packQuantRows(m);
  const nb = rows.cols * kb;
  assertEquals(rows.data.length, 6 * nb);
  for (let n = 0; n < m.rows; n++) {
    for (let k = 0; k < m.k; k++) {
      const [c, q, b, kk] = [n >> 3, n & 7, k >> 5, k & 31];
      // Nibble byte kk % 16 (low: k < 16), in Q4_0's order: word 4i + h holds bytes 4i..4i+3.
      const [byteAt, shift] = [kk & 15, kk < 16 ? 0 : 4];
      const tile = (c * kb + b) * 4 * c8TileWords("Q4X");
      const lane = (t: number) => c8.data[tile + 4 * (2 * t + (q >> 2)) + (q & 3)];
      const word = c8.data[tile + 4 * (4 + 2 * (byteAt >> 2) + (q >> 2)) + (q & 3)];
      const nib = (word >>> (8 * (byteAt & 3) + shift)) & 0xf;
      assertEquals(value(nib, f(lane(0)), f(lane(1))), want[n * m.k + k], `c8 n=${n} k=${k}`);
      const h = n * kb + b;
      const rnib = (rows.data[4 * h + (byteAt >> 2)] >>> (8 * (byteAt & 3) + shift)) & 0xf;
      assertEquals(value(rnib, f(rows.data[4 * nb + h]), f(rows.data[5 * nb + h])), want[n * m.k + k], `rows n=${n} k=${k}`);
    }
  }
});

test("quant Q8X packers: column blocks and quantized rows decode back to the blocks' values", () => {
  const m = q8xMatrix(new Rng(51), 13, 96);
  const want = dequantizeMatrix(m);
  const kb = m.k / 32;
  const f = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];
  const value = (byte: number, s: number, min: number) =>
    Math.fround(Math.fround(((byte << 24) >> 24) * s) - min);
  const c8 = packQuantColumnBlocks(m);
  assertEquals(c8.data.length, 2 * kb * 4 * c8TileWords("Q8X"));
  const rows = packQuantRows(m);
  const nb = rows.cols * kb;
  assertEquals(rows.data.length, 11 * nb);
  for (let n = 0; n < m.rows; n++) {
    for (let k = 0; k < m.k; k++) {
      const [c, q, b, kk] = [n >> 3, n & 7, k >> 5, k & 31];
      const tile = (c * kb + b) * 4 * c8TileWords("Q8X");
      const lane = (t: number) => c8.data[tile + 4 * (2 * t + (q >> 2)) + (q & 3)];
      const byte = (c8.data[tile + 4 * (6 + 2 * (kk >> 2) + (q >> 2)) + (q & 3)] >>> (8 * (kk & 3))) &
        0xff;
      const s = f(lane(kk < 16 ? 0 : 1));
      assertEquals(value(byte, s, f(lane(2))), want[n * m.k + k], `c8 n=${n} k=${k}`);
      const h = n * kb + b;
      const rbyte = (rows.data[8 * h + (kk >> 2)] >>> (8 * (kk & 3))) & 0xff;
      const rs = f(rows.data[8 * nb + (kk < 16 ? 0 : nb) + h]);
      assertEquals(value(rbyte, rs, f(rows.data[10 * nb + h])), want[n * m.k + k], `rows n=${n} k=${k}`);
    }
  }
});

for (const [type, seed] of [["Q8X", 52], ["Q4X", 62]] as const) test(`quant ${type} matmul: exact path at decode and prefill row counts, batch invariance, no fast path`, async (t) => {
  await withKit(async (kit) => {
    const rng = new Rng(seed);
    // K = 256: transcoded Q4_K (Q8X: and Q6_K) rows; K = 96: random blocks.
    for (const [n, k] of [[44, 256], [20, 96]] as const) {
      const weight = X_MATRICES[type](rng, n, k);
      const x = gaussian(rng, 40 * k);
      const xb = kit.buffer(x);
      const ref = quantMatmulRef(x, weight, 40);
      const results = new Map<string, Float32Array>();
      for (const kernel of KERNELS) {
        for (const rows of [1, 2, 8, 9, 40]) {
          await t.step(`${kernel} N=${n} K=${k} rows=${rows}`, async () => {
            const { out } = await run(kit, {
              kernel,
              weight,
              rows,
              meta: kit.meta(rows),
              x: xb,
              ldx: k,
              out: kit.buffer(rows * n * 4),
              ldo: n,
              nOut: n,
            }, n);
            // Relative to the largest product: Q4_K's mins make large terms that cancel.
            const want = ref.subarray(0, rows * n);
            const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            const e = out.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0) / scale;
            assert(e <= TOL, `error ${e} of the largest product`);
            results.set(`${kernel} ${rows}`, out);
          });
        }
      }
      const bits = (a: Float32Array, rows = a.length) => Array.from(new Uint32Array(a.buffer, 0, rows));
      for (const kernel of KERNELS) {
        for (const rows of [2, 8, 9, 40]) {
          // Row 0 of any batch is the row alone, bit for bit.
          assertEquals(
            bits(results.get(`${kernel} ${rows}`)!, n),
            bits(results.get(`${kernel} 1`)!),
            `${kernel}: row 0 of ${rows}`,
          );
        }
      }
      assertEquals(bits(results.get("qgemv_wg 9")!), bits(results.get("qgemm_tiled 9")!));
    }
  });
  // Q4X is defined with Q4 (Q4_0's nibble layout); XQ is refused either way.
  const defines = type === "Q8X" ? { Q8X: true } : { Q4: true, Q4X: true };
  for (const kernel of [QGEMV_C8, QGEMV_WG, QGEMM_TILED]) {
    kernel.derive!({ ...QMATMUL_DEFAULTS, ...defines });
    let refused = false;
    try {
      kernel.derive!({ ...QMATMUL_DEFAULTS, ...defines, XQ: true });
    } catch {
      refused = true;
    }
    assert(refused, `${kernel.file}: XQ with ${type} weights must be refused`);
  }
});

