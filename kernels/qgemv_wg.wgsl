// GPU-family matmul on llama.cpp Q8_0 / Q4_0 weights (or Q8X / Q4X, K-quants transcoded at
// load; exact path only) for decode batches: one workgroup per
// block of 8 output columns and TM rows, weights in the quantized rows layout
// (src/model/quant/pack_rows.ts): each column's blocks are contiguous runs of quants (Q8_0:
// 32 bytes, Q4_0: 16 bytes of nibbles per block), the f16 scales in a region after all quants.
// Invocation e takes (column e / KB, block e % KB), e += WG: neighbouring invocations read
// neighbouring blocks of one column (coalesced), each block dequantized in registers.
//
// K slices are the 32-wide blocks: a slice sum starts from zero and is summed in k order with
// fma (exact path), or is one exact integer dot product scaled by d_w * d_x (XQ, as in
// qgemv_c8), and one invocation per output adds the slice sums in block order. qgemm_tiled
// does exactly the same arithmetic, so a row gets the same bits from either kernel and the
// runtime may pick by row count and stay batch-invariant.
#include common
#include matmul_epilogue
#if XQ
@group(0) @binding(2) var<storage, read> x: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#endif
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<vec4<f32>>;
#endif

const TM: u32 = {{TM}}u;
const WG: u32 = {{WG}}u;
const MAX_SLICES: u32 = {{MAX_SLICES}}u;
#include qmatmul_common
// part[(slice * TM + row) * 9 + col]; col 8 is the row's sum of squares over the slice.
var<workgroup> part: array<f32, MAX_SLICES * TM * 9u>;
var<workgroup> fin: array<f32, TM * 9u>;

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

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so returning here keeps the barriers below uniform.
  if (m0 >= rows) { return; }
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
