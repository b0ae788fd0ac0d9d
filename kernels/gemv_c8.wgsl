// CPU-family matmul (lavapipe and other CPU adapters): out[m, :] = x[m, :] @ W^T with W in the
// column-block layout (packColumnBlocks): invocation c owns output columns 8c..8c+7 and
// streams its own K words (8 f16 = those columns at one k) front to back, TM rows at once.
//
// Why this shape on a CPU driver: lavapipe runs 8 invocations as one SIMD row and turns every
// storage load that differs per invocation into a per-lane loop of bounds-checked scalar
// loads, so the cost is per load instruction, not per byte: full 16-byte words, each weight
// word unpacked once and used for all TM rows, x loaded 4 floats at a time (the same address
// in every lane). A lane reading its own contiguous run is friendlier to the CPU's caches and
// prefetchers than lanes interleaved word by word. Small workgroups (16) spread the few
// hundred lanes of a matrix evenly over the driver's threads.
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

fn lo(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)); }
fn hi(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)); }

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let m0 = (gid.y + gid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  if (c >= p.blocks || m0 >= rows) { return; }
  var xr: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { xr[r] = x_row(min(m0 + r, rows - 1u)) * p.ldx; }
  var a0: array<vec4<f32>, TM>;
  var a1: array<vec4<f32>, TM>;
  var ss: array<f32, TM>;
  let wb = c * p.k;
#if XVEC
  for (var j = 0u; j < p.k / 4u; j++) {
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
  for (var k = 0u; k < p.k; k++) {
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
