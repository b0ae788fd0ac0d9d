/**
 * Yardsticks for the prototype benchmark, written for it (not runtime kernels):
 *
 * - **streaming-read roofs**: read-reduce kernels that only load the bytes and fold them
 *   together, in the two access patterns a matmul can have: each invocation reading its own
 *   contiguous run of 16-byte words (4 per step), and adjacent invocations reading adjacent
 *   words. The faster one is the adapter's bandwidth roof every kernel is measured against.
 * - **transposed GEMV**: the strong simple reference from issue 10 (a dozen lines): f16
 *   weights stored transposed so adjacent invocations read adjacent 16-byte words, each word
 *   4 output columns x 2 inputs, one invocation per 4 columns, rows of x looped inside.
 *
 * Bindings: 0 uniform {k, n, m, words}, 1 x (f32), 2 w (vec4<u32>), 3 out (f32).
 * @module
 */
import type { HostMatrix } from "../../src/model/weight_layout.ts";

/** A benchmark-only kernel: source, grid, and the weight layout it reads. */
export interface YardstickKernel {
  name: string;
  description: string;
  source: string;
  grid: (n: number, m: number) => [number, number, number];
}

const HEADER = `
struct P { k: u32, n: u32, m: u32, words: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
`;

/** Lanes of the roof kernels (each reads words / LANES consecutive words). */
export const ROOF_LANES = 384;

/** Read-reduce, each invocation its own contiguous run, 4 words per step. */
export const ROOF_RUNS: YardstickKernel = {
  name: "roof: read-reduce, contiguous run per invocation",
  description: "each of 384 invocations XORs its own run of 16-byte words, 4 per step",
  source: HEADER + `
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let per = p.words / ${ROOF_LANES}u;
  let b = g.x * per;
  var a = vec4<u32>(0u);
  for (var i = 0u; i + 3u < per; i += 4u) { a ^= w[b + i] ^ w[b + i + 1u] ^ w[b + i + 2u] ^ w[b + i + 3u]; }
  out[g.x] = a.x ^ a.y ^ a.z ^ a.w ^ bitcast<u32>(x[0].x);
}`,
  grid: () => [ROOF_LANES / 16, 1, 1],
};

/** Read-reduce, adjacent invocations reading adjacent words. */
export const ROOF_ADJACENT: YardstickKernel = {
  name: "roof: read-reduce, adjacent invocations adjacent words",
  description: "invocation i XORs words i, i + 384, ...",
  source: HEADER + `
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = vec4<u32>(0u);
  for (var i = g.x; i < p.words; i += ${ROOF_LANES}u) { a ^= w[i]; }
  out[g.x] = a.x ^ a.y ^ a.z ^ a.w ^ bitcast<u32>(x[0].x);
}`,
  grid: () => [ROOF_LANES / 16, 1, 1],
};

/** Issue 10's transposed f16 GEMV: 4 columns per invocation, words [k / 2][n / 4]. */
export const TRANSPOSED_GEMV: YardstickKernel = {
  name: "reference: transposed GEMV",
  description:
    "f16 weights transposed (adjacent invocations, adjacent 16-byte words), 4 columns x 2 k per word",
  source: HEADER.replace("array<u32>;\n", "array<f32>;\n") + `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let c = g.x;
  let nc = p.n / 4u;
  if (c >= nc) { return; }
  for (var r = 0u; r < p.m; r++) {
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < p.k / 4u; j++) {
      let xv = x[r * p.k / 4u + j];
      let q0 = w[(2u * j) * nc + c];
      let q1 = w[(2u * j + 1u) * nc + c];
      acc += vec4<f32>(dot(unpack2x16float(q0.x), xv.xy), dot(unpack2x16float(q0.y), xv.xy),
                       dot(unpack2x16float(q0.z), xv.xy), dot(unpack2x16float(q0.w), xv.xy));
      acc += vec4<f32>(dot(unpack2x16float(q1.x), xv.zw), dot(unpack2x16float(q1.y), xv.zw),
                       dot(unpack2x16float(q1.z), xv.zw), dot(unpack2x16float(q1.w), xv.zw));
    }
    for (var q = 0u; q < 4u; q++) { out[r * p.n + 4u * c + q] = acc[q]; }
  }
}`,
  grid: (n) => [Math.ceil(n / 4 / 64), 1, 1],
};

/** The transposed layout: word (j, c) = columns 4c..4c+3 at k = 2j, 2j+1. Needs N % 4 == 0, K % 4 == 0. */
export function packTransposed(m: HostMatrix): Uint16Array<ArrayBuffer> {
  if (!(m.data instanceof Uint16Array)) throw new TypeError("packTransposed takes f16 bits");
  const { rows: N, cols: K, data } = m;
  const out = new Uint16Array(N * K);
  let i = 0;
  for (let j = 0; j < K / 2; j++) {
    for (let c = 0; c < N / 4; c++) {
      for (let q = 0; q < 4; q++) {
        out[i++] = data[(4 * c + q) * K + 2 * j];
        out[i++] = data[(4 * c + q) * K + 2 * j + 1];
      }
    }
  }
  return out;
}
