/**
 * Simple GEMV/matmul kernels written for the benchmark, the yardstick for the project's
 * `kernels/matmul.wgsl` on the same adapter: the textbook one-output-row-per-thread kernel,
 * and one workgroup per output row with coalesced vector loads and a shared-memory
 * reduction. Both read HF-layout f16 weights packed two to a u32, like the project's.
 * Bindings: 0 uniform {k, n, m}, 1 x [m, k] f32, 2 w [n, k] f16, 3 out [m, n] f32.
 * @module
 */

/** A reference kernel: WGSL source for `m` rows and how to dispatch it. */
export interface ReferenceKernel {
  name: string;
  description: string;
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

/** The reference kernels the benchmark runs. */
export const REFERENCE_GEMVS: readonly ReferenceKernel[] = [NAIVE_GEMV, WORKGROUP_ROW_GEMV];
