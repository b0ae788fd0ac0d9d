/**
 * Yardsticks written for the benchmark (not runtime kernels), run on the same adapter as the
 * project's matmul family:
 *
 * - simple GEMVs: the textbook one-output-row-per-thread kernel, one workgroup per output
 *   row with coalesced vector loads and a shared-memory reduction (both on HF-layout f16
 *   weights [n, k]), and issue 10's transposed GEMV (f16 weights stored [k / 2][n / 4] so
 *   adjacent invocations read adjacent 16-byte words, 4 output columns per invocation).
 *   Bindings: 0 uniform {k, n, m}, 1 x [m, k] f32, 2 w (layout above), 3 out [m, n] f32.
 * - streaming-read roofs: read-reduce kernels that only load bytes and fold them together,
 *   each invocation on its own contiguous run, or adjacent invocations on adjacent words. The
 *   faster one is the adapter's bandwidth roof the matmuls are reported against.
 *   Bindings: 0 uniform {words}, 1 w (vec4<u32>), 2 out (u32).
 * @module
 */

/** A reference kernel: WGSL source for `m` rows and how to dispatch it. */
export interface ReferenceKernel {
  name: string;
  description: string;
  /** Weight layout it reads: HF [n, k] f16 (default) or {@link packTransposed}'s. */
  layout?: "hf" | "transposed";
  source: (m: number) => string;
  grid: (n: number, m: number) => [number, number, number];
}

const HEADER = `
struct P { k: u32, n: u32, m: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: P;
`;

/** One invocation per output row; scalar f16 pairs; loops over the M input rows. */
export const NAIVE_GEMV: ReferenceKernel = {
  name: "naive_row_per_thread",
  description: "one output row per thread, scalar f16x2 loads",
  source: () =>
    HEADER + `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x + gid.y * 65535u * 64u;
  if (n >= p.n) { return; }
  let k2 = p.k / 2u;
  for (var m = 0u; m < p.m; m++) {
    var acc = 0.0;
    for (var j = 0u; j < k2; j++) {
      let wv = unpack2x16float(w[n * k2 + j]);
      acc += wv.x * x[m * p.k + 2u * j] + wv.y * x[m * p.k + 2u * j + 1u];
    }
    out[m * p.n + n] = acc;
  }
}`,
  grid: (n) => {
    const groups = Math.ceil(n / 64);
    return groups <= 65535 ? [groups, 1, 1] : [65535, Math.ceil(groups / 65535), 1];
  },
};

/** One workgroup per output row, 8 halves per load, M rows per weight load, tree reduction. */
export const WORKGROUP_ROW_GEMV: ReferenceKernel = {
  name: "workgroup_per_row",
  description: "one output row per 64-thread workgroup, vec4<u32> loads, shared-memory reduction",
  source: (m) =>
    HEADER + `
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
const M: u32 = ${m}u;
var<workgroup> part: array<f32, ${64 * m}>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x + wid.y * 65535u;
  let k8 = p.k / 8u;
  var acc: array<f32, M>;
  if (n < p.n) {
    for (var j = lid; j < k8; j += 64u) {
      let q = w[n * k8 + j];
      let w0 = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
      let w1 = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
      for (var r = 0u; r < M; r++) {
        acc[r] += dot(w0, x[2u * (r * k8 + j)]) + dot(w1, x[2u * (r * k8 + j) + 1u]);
      }
    }
  }
  for (var r = 0u; r < M; r++) { part[r * 64u + lid] = acc[r]; }
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      for (var r = 0u; r < M; r++) { part[r * 64u + lid] += part[r * 64u + lid + s]; }
    }
    workgroupBarrier();
  }
  if (lid < M && n < p.n) { out[lid * p.n + n] = part[lid * 64u]; }
}`,
  grid: (n) => (n <= 65535 ? [n, 1, 1] : [65535, Math.ceil(n / 65535), 1]),
};

/** Issue 10's transposed f16 GEMV: 4 columns per invocation; needs n % 4 == 0 and k % 4 == 0. */
export const TRANSPOSED_GEMV: ReferenceKernel = {
  name: "transposed_4col",
  description:
    "f16 weights transposed, adjacent invocations read adjacent 16-byte words, 4 columns x 2 k per word",
  layout: "transposed",
  source: () =>
    HEADER + `
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
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

/** The transposed layout of f16 bits [n, k]: word (j, c) = columns 4c..4c+3 at k = 2j, 2j+1. */
export function packTransposed(data: Uint16Array, n: number, k: number): Uint16Array<ArrayBuffer> {
  if (n % 4 !== 0 || k % 4 !== 0) {
    throw new RangeError(`transposed GEMV needs n, k multiples of 4 (${n}, ${k})`);
  }
  const out = new Uint16Array(n * k);
  let i = 0;
  for (let j = 0; j < k / 2; j++) {
    for (let c = 0; c < n / 4; c++) {
      for (let q = 0; q < 4; q++) {
        out[i++] = data[(4 * c + q) * k + 2 * j];
        out[i++] = data[(4 * c + q) * k + 2 * j + 1];
      }
    }
  }
  return out;
}

/** The reference GEMVs the benchmark runs. */
export const REFERENCE_GEMVS: readonly ReferenceKernel[] = [
  NAIVE_GEMV,
  WORKGROUP_ROW_GEMV,
  TRANSPOSED_GEMV,
];

/** A streaming-read kernel: WGSL source and grid for a buffer of `words` 16-byte words. */
export interface RoofKernel {
  name: string;
  description: string;
  source: string;
  grid: [number, number, number];
}

/** Invocations of the roof kernels (each reads words / ROOF_LANES words). */
export const ROOF_LANES = 384;

const ROOF_HEADER = `
struct P { words: u32, p1: u32, p2: u32, p3: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
`;

/** Read-reduce, each invocation its own contiguous run, 4 words per step. */
export const ROOF_RUNS: RoofKernel = {
  name: "read_reduce_runs",
  description: "each of 384 invocations XORs its own contiguous run of 16-byte words, 4 per step",
  source: ROOF_HEADER + `
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let per = p.words / ${ROOF_LANES}u;
  let b = g.x * per;
  var a = vec4<u32>(0u);
  for (var i = 0u; i + 3u < per; i += 4u) { a ^= w[b + i] ^ w[b + i + 1u] ^ w[b + i + 2u] ^ w[b + i + 3u]; }
  out[g.x] = a.x ^ a.y ^ a.z ^ a.w;
}`,
  grid: [ROOF_LANES / 16, 1, 1],
};

/** Read-reduce, adjacent invocations reading adjacent words (the coalesced GPU pattern). */
export const ROOF_ADJACENT: RoofKernel = {
  name: "read_reduce_adjacent",
  description: "invocation i XORs words i, i + 384, ... (adjacent invocations, adjacent words)",
  source: ROOF_HEADER + `
@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = vec4<u32>(0u);
  for (var i = g.x; i < p.words; i += ${ROOF_LANES}u) { a ^= w[i]; }
  out[g.x] = a.x ^ a.y ^ a.z ^ a.w;
}`,
  grid: [ROOF_LANES / 16, 1, 1],
};

/** The roof kernels; the faster is the adapter's streaming-read bandwidth. */
export const ROOF_KERNELS: readonly RoofKernel[] = [ROOF_RUNS, ROOF_ADJACENT];
