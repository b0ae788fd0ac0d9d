// GPU-family tiled matmul for prefill (many rows). A workgroup of 64 computes a 32-row x
// 64-column tile; K advances 32 at a time (one 32-wide slice, or one block of quants) through
// workgroup memory: the x tile, and the weight tile as f32 once for all 32 rows; each
// invocation accumulates 4 rows x one 8-column block in registers, reading 3 vec4 from
// workgroup memory per 32 multiply-adds. Epilogues as in matmul_epilogue.wgsl.
//
// Dense weights (f16/f32) are in the padded-rows layout. QUANT: llama.cpp Q8_0 / Q4_0 blocks
// (or Q8X / Q4X: exact path only) in the quantized rows layout (see qmatmul_common.wgsl);
// each invocation brings one column's block into workgroup memory, dequantized to f32 there
// (never in global memory), or with XQ the raw quants and the scale, summed as an exact
// integer dot product scaled by d * d_x.
// Each 32-wide K slice is summed with fma from zero (or is one integer dot product) and the
// slice sums are added in order: the same arithmetic as gemv_wg, so a row gets the same bits
// from either kernel.
#include common
#include matmul_epilogue
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif
#if QUANT
#include qmatmul_common
#endif

const BM: u32 = 32u;
const BN: u32 = 64u;
const BK: u32 = 32u;
#if XQ
// The block's quants of each row (2 words) and column (2 words; Q4_0 uses one).
var<workgroup> xqs: array<vec4<u32>, BM * 2u>;
var<workgroup> xds: array<f32, BM>;
var<workgroup> xsum: array<i32, BM>;
var<workgroup> wqs: array<vec4<u32>, BN * 2u>;
var<workgroup> wds: array<f32, BN>;
#else
// xs[k][row / 4] holds 4 rows; ws[k][col / 4] holds 4 columns.
var<workgroup> xs: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> ws: array<vec4<f32>, BK * BN / 4u>;
// The norm weight of the K tile (ones without GAMMA).
var<workgroup> gs: array<f32, BK>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let cb0 = wid.x * (BN / 8u);
  let m0 = (wid.y + wid.z * 65535u) * BM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so the barriers below stay uniform.
  if (m0 >= rows) { return; }
  let tc = lid % 8u;
  let tr = lid / 8u;
#if QUANT
  let kb = p.k / 32u;
#else
  let words = p.w_stride / 8u;
#endif
  var acc: array<vec4<f32>, 8>;
  var ss = vec4<f32>(0.0);
#if QUANT
  for (var s = 0u; s < kb; s++) {
    // This invocation's column of the tile.
    let n = cb0 * 8u + lid;
    let live = n < p.blocks * 8u;
#else
  var pt: array<vec4<f32>, 8>;
  for (var k0 = 0u; k0 < p.k; k0 += BK) {
#endif
#if XQ
    if (lid < BM) {
      let xb = x_row(min(m0 + lid, rows - 1u)) * p.ldx / 4u;
      xqs[2u * lid] = x[xb + 2u * s];
      xqs[2u * lid + 1u] = x[xb + 2u * s + 1u];
      let si = xb * 4u + p.k / 4u + s;
      xds[lid] = bitcast<f32>(x[si / 4u][si % 4u]);
      let sj = si + kb;
      xsum[lid] = bitcast<i32>(x[sj / 4u][sj % 4u]);
    }
    var blk = QBlock(vec4<u32>(0u), vec4<u32>(0u));
    var d = 0.0;
    if (live) {
      blk = load_block(n, s);
      d = block_scale(n, s);
    }
    wqs[2u * lid] = blk.q0;
    wqs[2u * lid + 1u] = blk.q1;
    wds[lid] = d;
    workgroupBarrier();
    for (var r = 0u; r < 4u; r++) {
      let row = 4u * tr + r;
      let xa = xqs[2u * row];
      let xc = xqs[2u * row + 1u];
      let dx = xds[row];
      var v: array<f32, 8>;
      for (var q = 0u; q < 8u; q++) {
        let col = 8u * tc + q;
        let b = QBlock(wqs[2u * col], wqs[2u * col + 1u]);
        var isum = 0;
        for (var j = 0u; j < 4u; j++) {
          isum += dot4(quad_bits(b, j), xa[j]) + dot4(quad_bits(b, j + 4u), xc[j]);
        }
#if Q4
        isum -= 8 * xsum[row];
#endif
        v[q] = f32(isum) * (wds[col] * dx);
      }
      acc[2u * r] += vec4<f32>(v[0], v[1], v[2], v[3]);
      acc[2u * r + 1u] += vec4<f32>(v[4], v[5], v[6], v[7]);
    }
#else
    // The x tile (f32) and the norm weight of the K tile.
#if QUANT
    for (var e = lid; e < BM * BK / 4u; e += 64u) {
      let r = e / (BK / 4u);
      let kq = e % (BK / 4u);
      let v = x[x_row(min(m0 + r, rows - 1u)) * p.ldx / 4u + 8u * s + kq];
      for (var i = 0u; i < 4u; i++) { xs[(4u * kq + i) * (BM / 4u) + r / 4u][r % 4u] = v[i]; }
    }
#else
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
#endif
    if (lid < BK) {
#if GAMMA
#if QUANT
      gs[lid] = gamma[32u * s + lid];
#else
      gs[lid] = select(0.0, gamma[min(k0 + lid, p.k - 1u)], k0 + lid < p.k);
#endif
#else
      gs[lid] = 1.0;
#endif
    }
    // The weight tile as f32.
#if QUANT
    var blk = QBlock(vec4<u32>(0u), vec4<u32>(0u));
    var d: QScale;
    if (live) {
      blk = load_block(n, s);
      d = block_scale(n, s);
    }
    for (var j = 0u; j < 8u; j++) {
      let wv = quad_weights(blk, j, d);
      for (var i = 0u; i < 4u; i++) { ws[(4u * j + i) * (BN / 4u) + lid / 4u][lid % 4u] = wv[i]; }
    }
#else
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
#endif
    workgroupBarrier();
#if QUANT
    var pt: array<vec4<f32>, 8>;
#endif
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
#endif
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
