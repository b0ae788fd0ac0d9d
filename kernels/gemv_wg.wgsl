// GPU-family GEMV / skinny matmul for decode batches: one workgroup per block of 8 output
// columns and TM rows. K is cut into fixed slices of 32; a slice sum starts from zero and is
// summed in k order with fma, and one invocation per output adds the slice sums, in order, to
// the row's total. gemm_tiled sums the same slices in the same order (a K tile of 32 = one
// slice), so a row gets the same bits from either kernel: the runtime picks by row count and
// stays batch-invariant. (Subgroup reductions would be faster on some GPUs, but their order is
// the hardware's: a row's bits would change with the kernel.)
//
// Dense weights (f16/f32) are in the padded-rows layout (packPaddedRows: HF order, rows padded
// to 8 weights). In each round the workgroup's WG invocations take WG / 8 consecutive slices,
// invocation e owning (column e % 8, slice e / 8); the round's slice sums go to a running
// total in workgroup memory.
//
// QUANT: llama.cpp Q8_0 / Q4_0 blocks (or Q8X / Q4X, K-quants transcoded at load; exact path
// only) in the quantized rows layout (src/model/quant/pack_rows.ts): each column's blocks are
// contiguous runs of quants (Q8_0: 32 bytes, Q4_0: 16 bytes of nibbles per block), the f16
// scales in a region after all quants. The slices are the 32-wide blocks: invocation e takes
// (column e / KB, block e % KB), e += WG, so neighbouring invocations read neighbouring blocks
// of one column (coalesced), each block dequantized in registers; or with XQ a slice is one
// exact integer dot product scaled by d_w * d_x (as in qgemv_c8).
#include common
#include matmul_epilogue
#if GAMMA
#if QUANT
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<vec4<f32>>;
#else
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif
#endif

const TM: u32 = {{TM}}u;
const WG: u32 = {{WG}}u;
#if QUANT
const MAX_SLICES: u32 = {{MAX_SLICES}}u;
#include qmatmul_common
// part[(slice * TM + row) * 9 + col]; col 8 is the row's sum of squares over the slice.
var<workgroup> part: array<f32, MAX_SLICES * TM * 9u>;
#else
const KS: u32 = 32u;
// Slices per round.
const SR: u32 = WG / 8u;
// part[(slice in round * TM + row) * 9 + col]; col 8 is the row's sum of squares.
var<workgroup> part: array<f32, SR * TM * 9u>;
#endif
var<workgroup> fin: array<f32, TM * 9u>;

#if QUANT
// One slice (block s of one column) against one x row starting at vec4 `xb`: (sum, sum of
// squares of x over the slice). Exact: fma in k order from zero; XQ: an exact i32 dot product
// scaled by d * d_x (Q4_0: minus 8 * the sum of the block's x quants).
fn slice_dot(b: QBlock, d: QScale, xb: u32, s: u32) -> vec2<f32> {
#if XQ
  let xa = x[xb + 2u * s];
  let xc = x[xb + 2u * s + 1u];
  var isum = 0;
  for (var j = 0u; j < 4u; j++) {
    isum += dot4(quad_bits(b, j), xa[j]) + dot4(quad_bits(b, j + 4u), xc[j]);
  }
  let kb = p.k / 32u;
  let si = xb * 4u + p.k / 4u + s;
  let dx = bitcast<f32>(x[si / 4u][si % 4u]);
#if Q4
  let sj = si + kb;
  isum -= 8 * bitcast<i32>(x[sj / 4u][sj % 4u]);
#endif
  return vec2<f32>(f32(isum) * (d * dx), 0.0);
#else
  var acc = 0.0;
  var ss = 0.0;
  for (var j = 0u; j < 8u; j++) {
    let wv = quad_weights(b, j, d);
    let xv = x[xb + 8u * s + j];
#if GAMMA
    let xg = xv * gamma[8u * s + j];
#else
    let xg = xv;
#endif
    for (var q = 0u; q < 4u; q++) {
      acc = fma(wv[q], xg[q], acc);
      ss = fma(xv[q], xv[q], ss);
    }
  }
  return vec2<f32>(acc, ss);
#endif
}
#else
// x[row, k0 .. k0+7] as two vec4, zero past K (the padded weights are zero there too, but the
// sum of squares must not see the next row).
fn x8(base: u32, k0: u32) -> array<vec4<f32>, 2> {
  var v = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
#if XVEC
  if (k0 < p.k) { v[0] = x[(base + k0) / 4u]; }
  if (k0 + 4u < p.k) { v[1] = x[(base + k0) / 4u + 1u]; }
#else
  for (var i = 0u; i < 8u; i++) {
    if (k0 + i < p.k) { v[i / 4u][i % 4u] = x[base + k0 + i]; }
  }
#endif
  return v;
}

// The norm weight for k0 .. k0+7 (ones without GAMMA); zero past K.
fn g8(k0: u32) -> array<vec4<f32>, 2> {
  var v = array<vec4<f32>, 2>(vec4<f32>(1.0), vec4<f32>(1.0));
#if GAMMA
  for (var i = 0u; i < 8u; i++) {
    v[i / 4u][i % 4u] = select(0.0, gamma[min(k0 + i, p.k - 1u)], k0 + i < p.k);
  }
#endif
  return v;
}
#endif

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so returning here keeps the barriers below uniform.
  if (m0 >= rows) { return; }
#if QUANT
  let kb = p.k / 32u;
  for (var e = lid; e < 8u * kb; e += WG) {
    let col = e / kb;
    let s = e % kb;
    let n = 8u * c + col;
    let d = block_scale(n, s);
    let blk = load_block(n, s);
    for (var r = 0u; r < TM; r++) {
      let xb = x_row(min(m0 + r, rows - 1u)) * p.ldx / 4u;
      let v = slice_dot(blk, d, xb, s);
      part[(s * TM + r) * 9u + col] = v.x;
      if (col == 0u) { part[(s * TM + r) * 9u + 8u] = v.y; }
    }
  }
  workgroupBarrier();
  for (var e = lid; e < 9u * TM; e += WG) {
    var v = 0.0;
    for (var s = 0u; s < kb; s++) { v += part[s * TM * 9u + e]; }
    fin[e] = v;
  }
  workgroupBarrier();
#else
  let words = p.w_stride / 8u;
  let slices = (p.k + KS - 1u) / KS;
  let i = lid % 8u;
  let sl = lid / 8u;
  for (var e = lid; e < 9u * TM; e += WG) { fin[e] = 0.0; }
  for (var s0 = 0u; s0 < slices; s0 += SR) {
    let s = s0 + sl;
    // Explicit zeros: naga does not re-zero an uninitialised var declared inside a loop.
    var acc = array<f32, TM>();
    var ss = array<f32, TM>();
    if (s < slices) {
      for (var jj = 0u; jj < KS / 8u; jj++) {
        let j = s * (KS / 8u) + jj;
        var wv = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
        if (j < words) {
          let q = w8((8u * c + i) * words + j);
          wv = array<vec4<f32>, 2>(q.l, q.h);
        }
        let gv = g8(8u * j);
        for (var r = 0u; r < TM; r++) {
          let xv = x8(x_row(min(m0 + r, rows - 1u)) * p.ldx, 8u * j);
          for (var h = 0u; h < 8u; h++) {
            let xe = xv[h / 4u][h % 4u];
            acc[r] = fma(wv[h / 4u][h % 4u], xe * gv[h / 4u][h % 4u], acc[r]);
            ss[r] = fma(xe, xe, ss[r]);
          }
        }
      }
    }
    for (var r = 0u; r < TM; r++) {
      part[(sl * TM + r) * 9u + i] = acc[r];
      if (i == 0u) { part[(sl * TM + r) * 9u + 8u] = ss[r]; }
    }
    workgroupBarrier();
    let n = min(SR, slices - s0);
    for (var e = lid; e < 9u * TM; e += WG) {
      var v = fin[e];
      for (var t = 0u; t < n; t++) { v += part[t * TM * 9u + e]; }
      fin[e] = v;
    }
    workgroupBarrier();
  }
#endif
  if (lid < TM) {
    let r = lid;
    let m = m0 + r;
    let b = r * 9u;
    let v0 = vec4<f32>(fin[b], fin[b + 1u], fin[b + 2u], fin[b + 3u]);
    let v1 = vec4<f32>(fin[b + 4u], fin[b + 5u], fin[b + 6u], fin[b + 7u]);
    if (m < rows) {
#if NORM
      let inv = inverseSqrt(fin[b + 8u] / f32(p.k) + p.eps);
      store_block(m, c, v0 * inv, v1 * inv);
#else
      store_block(m, c, v0, v1);
#endif
    }
  }
}
