// CPU-family matmul (lavapipe and other CPU adapters): out[m, :] = x[m, :] @ W^T with W in the
// column-block layout (packColumnBlocks): invocation c owns output columns 8c..8c+7 and
// streams its own K words (8 weights = those columns at one k) front to back, TM rows at once.
//
// Why this shape on a CPU driver: lavapipe runs 8 invocations as one SIMD row and turns every
// storage load that differs per invocation into a per-lane loop of bounds-checked scalar
// loads, so the cost is per load instruction, not per byte: full 16-byte words, each weight
// word unpacked once and used for all TM rows, x loaded 4 floats at a time (the same address
// in every lane). A lane reading its own contiguous run is friendlier to the CPU's caches and
// prefetchers than lanes interleaved word by word. Small workgroups (8) spread the few hundred
// lanes of a matrix evenly over the driver's threads.
//
// A row's sum runs over k in order whatever TM is, so a row gets the same bits in any batch.
// XVEC: K % 4 == 0 (x rows read as vec4); otherwise one k per step. Rows past the end of the
// batch recompute the last row instead of branching inside the loop.
#include common
#include matmul_epilogue
#if GAMMA
#if XVEC
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<vec4<f32>>;
#else
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif
#endif

const TM: u32 = {{TM}}u;

@compute @workgroup_size({{WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let c = gid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
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
    let q0 = w8(b);
    let q1 = w8(b + 1u);
    let q2 = w8(b + 2u);
    let q3 = w8(b + 3u);
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
      a0[r] += q0.l * xv.x + q1.l * xv.y + q2.l * xv.z + q3.l * xv.w;
      a1[r] += q0.h * xv.x + q1.h * xv.y + q2.h * xv.z + q3.h * xv.w;
    }
  }
#else
  for (var k = 0u; k < p.k; k++) {
    let q = w8(wb + k);
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
      a0[r] += q.l * xv;
      a1[r] += q.h * xv;
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
