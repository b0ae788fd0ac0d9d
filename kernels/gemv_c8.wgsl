// CPU-family matmul (lavapipe and other CPU adapters): out[m, :] = x[m, :] @ W^T with W in the
// column-block layout (packColumnBlocks): invocation c owns output columns 8c..8c+7 and
// streams its own K words (8 f16 = those columns at one k) front to back, TM rows at once.
//
// Why this shape on a CPU driver: lavapipe runs 8 invocations as one SIMD row and turns every
// storage load that differs per invocation into a per-lane loop of bounds-checked scalar
// loads, so the cost is per load instruction, not per byte: full 16-byte words, each weight
// word unpacked once and used for all TM rows, x loaded 4 floats at a time (the same address
// in every lane). A lane reading its own contiguous run is friendlier to the CPU's caches and
// prefetchers than lanes interleaved word by word. Small workgroups spread the few hundred
// lanes of a matrix evenly over the driver's threads.
//
// KS > 1 (narrow matrices: o, down, qkv have 72..120 column blocks, too few lanes for the
// threads): KS invocations share a column block, each streaming one contiguous K slice; the
// slice sums meet in workgroup memory (one barrier) and are added in slice order, so a row's
// bits depend on KS but never on the batch.
//
// XVEC: K % 4 == 0 (x rows read as vec4); otherwise one k per step. Rows past the end of the
// batch recompute the last row instead of branching inside the loop.
#include common
#include matmul_epilogue
#if XVEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#if GAMMA
#if XVEC
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<vec4<f32>>;
#else
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif
#endif

const TM: u32 = {{TM}}u;
const WG: u32 = {{WG}}u;
const KS: u32 = {{KS}}u;
// Column blocks per workgroup.
const CB: u32 = WG / KS;
#if KSPLIT
var<workgroup> part: array<vec4<f32>, WG * TM * 2u>;
var<workgroup> part_ss: array<f32, WG * TM>;
#endif

fn lo(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)); }
fn hi(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)); }

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let cl = lid % CB;
  let s = lid / CB;
  let c = wid.x * CB + cl;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
#if KSPLIT
  // Uniform per workgroup (keeps the barrier below uniform); idle lanes read a valid block.
  if (m0 >= rows) { return; }
  let cc = min(c, p.blocks - 1u);
#else
  if (c >= p.blocks || m0 >= rows) { return; }
  let cc = c;
#endif
  var xr: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { xr[r] = x_row(min(m0 + r, rows - 1u)) * p.ldx; }
  var a0: array<vec4<f32>, TM>;
  var a1: array<vec4<f32>, TM>;
  var ss: array<f32, TM>;
  let wb = cc * p.k;
#if XVEC
  let per = (p.k / 4u + KS - 1u) / KS;
  let j0 = s * per;
  let j1 = min(p.k / 4u, j0 + per);
  for (var j = j0; j < j1; j++) {
    let b = wb + 4u * j;
    let q0 = w[b];
    let q1 = w[b + 1u];
    let q2 = w[b + 2u];
    let q3 = w[b + 3u];
    let l0 = lo(q0);
    let l1 = lo(q1);
    let l2 = lo(q2);
    let l3 = lo(q3);
    let h0 = hi(q0);
    let h1 = hi(q1);
    let h2 = hi(q2);
    let h3 = hi(q3);
#if GAMMA
    let g = gamma[j];
#endif
    for (var r = 0u; r < TM; r++) {
      let xraw = x[xr[r] / 4u + j];
#if NORM
      ss[r] += dot(xraw, xraw);
#endif
#if GAMMA
      let xv = xraw * g;
#else
      let xv = xraw;
#endif
      a0[r] += l0 * xv.x + l1 * xv.y + l2 * xv.z + l3 * xv.w;
      a1[r] += h0 * xv.x + h1 * xv.y + h2 * xv.z + h3 * xv.w;
    }
  }
#else
  let per = (p.k + KS - 1u) / KS;
  let k0 = s * per;
  let k1 = min(p.k, k0 + per);
  for (var k = k0; k < k1; k++) {
    let q = w[wb + k];
    let l = lo(q);
    let h = hi(q);
#if GAMMA
    let g = gamma[k];
#endif
    for (var r = 0u; r < TM; r++) {
      let xraw = x[xr[r] + k];
#if NORM
      ss[r] += xraw * xraw;
#endif
#if GAMMA
      let xv = xraw * g;
#else
      let xv = xraw;
#endif
      a0[r] += l * xv;
      a1[r] += h * xv;
    }
  }
#endif
#if KSPLIT
  for (var r = 0u; r < TM; r++) {
    part[(lid * TM + r) * 2u] = a0[r];
    part[(lid * TM + r) * 2u + 1u] = a1[r];
    part_ss[lid * TM + r] = ss[r];
  }
  workgroupBarrier();
  if (s != 0u || c >= p.blocks) { return; }
  for (var r = 0u; r < TM; r++) {
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    var q = 0.0;
    for (var t = 0u; t < KS; t++) {
      let e = (t * CB + cl) * TM + r;
      v0 += part[2u * e];
      v1 += part[2u * e + 1u];
      q += part_ss[e];
    }
    a0[r] = v0;
    a1[r] = v1;
    ss[r] = q;
  }
#endif
  for (var r = 0u; r < TM; r++) {
    let m = m0 + r;
    if (m < rows) {
#if NORM
      let inv = inverseSqrt(ss[r] / f32(p.k) + p.eps);
      store_block(m, c, a0[r] * inv, a1[r] * inv);
#else
      store_block(m, c, a0[r], a1[r]);
#endif
    }
  }
}
