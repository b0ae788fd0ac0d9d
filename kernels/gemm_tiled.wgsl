// GPU-family tiled matmul for prefill (many rows), weights in the padded-rows layout. A
// workgroup of 64 computes a 32-row x 64-column tile: K advances 32 at a time through
// workgroup memory (the x tile, and the weight tile unpacked to f32 once for all 32 rows);
// each invocation accumulates 4 rows x one 8-column block in registers, reading 3 vec4 from
// workgroup memory per 32 multiply-adds. Epilogues as in matmul_epilogue.wgsl.
// Each 32-wide K slice is summed with fma from zero and the slice sums are added in order:
// the same arithmetic as gemv_wg SLICED, so a row gets the same bits from either kernel.
#include common
#include matmul_epilogue
#if XVEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif

const BM: u32 = 32u;
const BN: u32 = 64u;
const BK: u32 = 32u;
// xs[k][row / 4] holds 4 rows; ws[k][col / 4] holds 4 columns.
var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>;
// The norm weight of the K tile (ones without GAMMA).
var<workgroup> gs: array<f32, BK>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let cb0 = wid.x * (BN / 8u);
  let m0 = (wid.y + wid.z * 65535u) * BM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so the barriers below stay uniform.
  if (m0 >= rows) { return; }
  let tc = lid % 8u;
  let tr = lid / 8u;
  let words = p.w_stride / 8u;
  var acc: array<vec4<f32>, 8>;
  var ss = vec4<f32>(0.0);
  var pt: array<vec4<f32>, 8>;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
#if XVEC
    for (var e = lid; e < BM * BK / 4u; e += 64u) {
      let r = e / (BK / 4u);
      let kq = e % (BK / 4u);
      let k = k0 + 4u * kq;
      var v = vec4<f32>(0.0);
      if (k < p.k) { v = x[(x_row(min(m0 + r, rows - 1u)) * p.ldx + k) / 4u]; }
      for (var i = 0u; i < 4u; i++) { xs[(4u * kq + i) * (BM / 4u) + r / 4u][r % 4u] = v[i]; }
    }
#else
    for (var e = lid; e < BM * BK; e += 64u) {
      let r = e / BK;
      let kk = e % BK;
      var v = 0.0;
      if (k0 + kk < p.k) { v = x[x_row(min(m0 + r, rows - 1u)) * p.ldx + k0 + kk]; }
      xs[kk * (BM / 4u) + r / 4u][r % 4u] = v;
    }
#endif
    if (lid < BK) {
#if GAMMA
      gs[lid] = select(0.0, gamma[min(k0 + lid, p.k - 1u)], k0 + lid < p.k);
#else
      gs[lid] = 1.0;
#endif
    }
    for (var e = lid; e < BN * BK / 8u; e += 64u) {
      let col = e / (BK / 8u);
      let kw = e % (BK / 8u);
      let j = k0 / 8u + kw;
      var q = W8(vec4<f32>(0.0), vec4<f32>(0.0));
      if (j < words && cb0 * 8u + col < p.blocks * 8u) { q = w8((cb0 * 8u + col) * words + j); }
      for (var i = 0u; i < 4u; i++) {
        ws[(8u * kw + i) * (BN / 4u) + col / 4u][col % 4u] = q.l[i];
        ws[(8u * kw + 4u + i) * (BN / 4u) + col / 4u][col % 4u] = q.h[i];
      }
    }
    workgroupBarrier();
    for (var e = 0u; e < 8u; e++) { pt[e] = vec4<f32>(0.0); }
    var sst = vec4<f32>(0.0);
    for (var kk = 0u; kk < BK; kk++) {
      let xr = xs[kk * (BM / 4u) + tr];
      let xv = xr * gs[kk];
      let w0 = ws[kk * (BN / 4u) + 2u * tc];
      let w1 = ws[kk * (BN / 4u) + 2u * tc + 1u];
      for (var r = 0u; r < 4u; r++) {
        pt[2u * r] = fma(w0, vec4<f32>(xv[r]), pt[2u * r]);
        pt[2u * r + 1u] = fma(w1, vec4<f32>(xv[r]), pt[2u * r + 1u]);
      }
      sst = fma(xr, xr, sst);
    }
    for (var e = 0u; e < 8u; e++) { acc[e] += pt[e]; }
    ss += sst;
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let m = m0 + 4u * tr + r;
    if (m < rows && cb0 + tc < p.blocks) {
#if NORM
      let inv = inverseSqrt(ss[r] / f32(p.k) + p.eps);
      store_block(m, cb0 + tc, acc[2u * r] * inv, acc[2u * r + 1u] * inv);
#else
      store_block(m, cb0 + tc, acc[2u * r], acc[2u * r + 1u]);
#endif
    }
  }
}
