// CPU-family matmul on llama.cpp Q8_0 / Q4_0 weights (lavapipe and other CPU adapters):
// out[m, :] = x[m, :] @ W^T with W in the quantized column-block layout
// (src/model/quant/pack_c8.ts). Invocation c owns output columns 8c..8c+7 and streams its
// own run of 16-byte words front to back: per 32-wide K block one word of eight f16 scales,
// then the quants, each u32 holding 4 consecutive k of one column (Q8_0: 16 words, word
// 2i + h = k-quad i of columns 4h..4h+3; Q4_0: 8 words, word 2i + h = the nibble bytes
// 4i..4i+3 of columns 4h..4h+3, low nibbles k-quad i, high nibbles k-quad i + 4). The
// weights are dequantized in registers, never in memory; sums are f32.
// Q8X (K-quants transcoded at load, src/model/quant/q8x.ts; exact path only): 22 words per
// tile, f32 scales of k 0..15 (words 0-1), of k 16..31 (2-3), mins (4-5), then Q8_0's
// 16 words of int8; each weight is q * scale - min.
// Q4X (Q4_K transcoded at load, src/model/quant/q4x.ts; defined with Q4, exact path only): 12
// words per tile, f32 scales (words 0-1), mins (2-3), then Q4_0's 8 words of nibbles; each
// weight is q * scale - min, dequantized per weight like Q8X's (the same bits as the reference
// dequantization; a per-block sum(q * x) * scale - min * sum(x) would round differently).
//
// Two paths (XQ):
//   exact (XQ off): x rows are f32; each weight becomes f32(q * d) (Q4_0: (q - 8) * d), which
//     is exactly the llama.cpp dequantized value, so the arithmetic is f32 math on the
//     dequantized weights, as the quant goldens assume. NORM / GAMMA as in gemv_c8.
//   fast (XQ on): x rows were quantized to Q8 blocks of 32 (quantize_rows.wgsl: the norm
//     folded in there); a block's dot product is an exact i32 sum of int8 products
//     (dot4I8Packed), scaled once by d_w * d_x in f32, as llama.cpp's CPU kernels do. Q4_0's
//     nibbles enter unsigned and the -8 comes back as -8 * sum(xq) of the block.
// DOT4: the WGSL language feature packed_4x8_integer_dot_product (dot4I8Packed, unpack4xI8,
// unpack4xU8); without it the same integers come from shifts, so both give the same bits.
//
// Rows past the end of the batch recompute the last row instead of branching in the loop; a
// row's arithmetic never depends on TM or on the other rows (batch invariance).
#include common
#include matmul_epilogue
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<vec4<f32>>;
#endif

const TM: u32 = {{TM}}u;
#if Q8X
// Words per 32 x 8 tile: six of f32 scales and mins, sixteen of int8.
const TILE: u32 = 22u;
const QOFF: u32 = 6u;
#else
#if Q4X
// Words per 32 x 8 tile: four of f32 scales and mins, eight of nibbles.
const TILE: u32 = 12u;
const QOFF: u32 = 4u;
#else
#if Q4
// Words per 32 x 8 tile: one of scales, eight of nibbles.
const TILE: u32 = 9u;
const QOFF: u32 = 1u;
#else
// Words per 32 x 8 tile: one of scales, sixteen of int8.
const TILE: u32 = 17u;
const QOFF: u32 = 1u;
#endif
#endif
#endif

#include int8_dot

// Eight f16 scales (columns 0..7) as two vec4.
fn scales_lo(s: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(s.x), unpack2x16float(s.y)); }
fn scales_hi(s: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(s.z), unpack2x16float(s.w)); }

#if XQ
fn dot4x4(q: vec4<u32>, xq: u32) -> vec4<i32> {
  return vec4<i32>(dot4(q.x, xq), dot4(q.y, xq), dot4(q.z, xq), dot4(q.w, xq));
}
#else
// One column's 4 consecutive k as f32, before the scale.
#if Q4
// Four nibbles already masked into the bytes of `u` (Q4_0: minus its offset 8; Q4X's min
// comes with the scale).
#if Q4X
fn w_quad(u: u32) -> vec4<f32> { return vec4<f32>(u8x4(u)); }
#else
fn w_quad(u: u32) -> vec4<f32> { return vec4<f32>(u8x4(u)) - 8.0; }
#endif
#else
fn w_quad(u: u32) -> vec4<f32> { return vec4<f32>(i8x4(u)); }
#endif
// Four columns' dequantized weights at 4 consecutive k (column j from the u32 q[j]): each
// f32(q * d) - min, llama.cpp's value (Q8_0 / Q4_0 have min 0, which the compiler drops).
fn cols4(q: vec4<u32>, d: vec4<f32>, mn: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    w_quad(q.x) * d.x - mn.x,
    w_quad(q.y) * d.y - mn.y,
    w_quad(q.z) * d.z - mn.z,
    w_quad(q.w) * d.w - mn.w,
  );
}
// Those weights times x at the same 4 k: one sum per column.
fn mac4(c: mat4x4<f32>, xv: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(c[0], xv), dot(c[1], xv), dot(c[2], xv), dot(c[3], xv));
}
#endif

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * {{WG}}u + lid;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  if (c >= p.blocks || m0 >= rows) { return; }
  let kb = p.k / 32u;
  // First vec4 of each row of x (exact: f32 rows of ldx floats; XQ: quantized rows of ldx
  // u32 words: K/4 words of int8, then K/32 f32 scales, then K/32 i32 sums).
  var xr: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { xr[r] = x_row(min(m0 + r, rows - 1u)) * p.ldx / 4u; }
  var a0 = array<vec4<f32>, TM>();
  var a1 = array<vec4<f32>, TM>();
  var ss = array<f32, TM>();
  var base = c * kb * TILE;
  for (var b = 0u; b < kb; b++) {
#if Q8X
    let lo0 = bitcast<vec4<f32>>(w[base]);
    let lo1 = bitcast<vec4<f32>>(w[base + 1u]);
    let hi0 = bitcast<vec4<f32>>(w[base + 2u]);
    let hi1 = bitcast<vec4<f32>>(w[base + 3u]);
    let mn0 = bitcast<vec4<f32>>(w[base + 4u]);
    let mn1 = bitcast<vec4<f32>>(w[base + 5u]);
#else
#if Q4X
    let d0 = bitcast<vec4<f32>>(w[base]);
    let d1 = bitcast<vec4<f32>>(w[base + 1u]);
    let mn0 = bitcast<vec4<f32>>(w[base + 2u]);
    let mn1 = bitcast<vec4<f32>>(w[base + 3u]);
#else
    let sw = w[base];
    let d0 = scales_lo(sw);
    let d1 = scales_hi(sw);
    let mn0 = vec4<f32>(0.0);
    let mn1 = vec4<f32>(0.0);
#endif
#endif
#if XQ
    var s0 = array<vec4<i32>, TM>();
    var s1 = array<vec4<i32>, TM>();
#if Q4
    // All 8 words of the tile: nibble bytes 4i..4i+3 hold k-quads i (low) and i + 4 (high).
    var lq: array<vec4<u32>, 8>;
    var hq: array<vec4<u32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      let q = w[base + QOFF + i];
      lq[i] = q & vec4<u32>(0x0f0f0f0fu);
      hq[i] = (q >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    }
    for (var r = 0u; r < TM; r++) {
      let xa = x[xr[r] + 2u * b];
      let xb = x[xr[r] + 2u * b + 1u];
      for (var i = 0u; i < 4u; i++) {
        s0[r] += dot4x4(lq[2u * i], xa[i]) + dot4x4(hq[2u * i], xb[i]);
        s1[r] += dot4x4(lq[2u * i + 1u], xa[i]) + dot4x4(hq[2u * i + 1u], xb[i]);
      }
    }
#else
    for (var j = 0u; j < 2u; j++) {
      // k-quads 4j..4j+3: words (quad, column group) in order.
      var q: array<vec4<u32>, 8>;
      for (var i = 0u; i < 8u; i++) { q[i] = w[base + 1u + 8u * j + i]; }
      for (var r = 0u; r < TM; r++) {
        let xw = x[xr[r] + 2u * b + j];
        for (var e = 0u; e < 4u; e++) {
          s0[r] += dot4x4(q[2u * e], xw[e]);
          s1[r] += dot4x4(q[2u * e + 1u], xw[e]);
        }
      }
    }
#endif
    for (var r = 0u; r < TM; r++) {
      let si = (xr[r] * 4u + p.k / 4u + b);
      let dx = bitcast<f32>(x[si / 4u][si % 4u]);
#if Q4
      let sj = si + kb;
      let corr = vec4<i32>(8 * bitcast<i32>(x[sj / 4u][sj % 4u]));
      a0[r] += vec4<f32>(s0[r] - corr) * (d0 * dx);
      a1[r] += vec4<f32>(s1[r] - corr) * (d1 * dx);
#else
      a0[r] += vec4<f32>(s0[r]) * (d0 * dx);
      a1[r] += vec4<f32>(s1[r]) * (d1 * dx);
#endif
    }
#else
    // Each step: the dequantized weights of 8 columns at k-quad s (c0: columns 0..3, c1:
    // 4..7), then every row's x at those k. Q4: word pair i holds k-quads i (low nibbles) and
    // i + 4 (high), done one after the other so that only 8 columns x 4 k of weights are
    // live at a time. Q4X goes in k order (each word pair read twice) so that its sums are
    // the dequantized f32 matmul's bit for bit, as Q8X's are; Q4_0 keeps its goldens' order.
#if Q4
#if Q4X
    for (var h = 0u; h < 2u; h++) {
      for (var i = 0u; i < 4u; i++) {
#else
    for (var i = 0u; i < 4u; i++) {
      for (var h = 0u; h < 2u; h++) {
#endif
        let p0 = w[base + QOFF + 2u * i];
        let p1 = w[base + QOFF + 1u + 2u * i];
        let s = i + 4u * h;
        let q0 = (p0 >> vec4<u32>(4u * h)) & vec4<u32>(0x0f0f0f0fu);
        let q1 = (p1 >> vec4<u32>(4u * h)) & vec4<u32>(0x0f0f0f0fu);
        let c0 = cols4(q0, d0, mn0);
        let c1 = cols4(q1, d1, mn1);
#else
    {
      for (var s = 0u; s < 8u; s++) {
        let q0 = w[base + QOFF + 2u * s];
        let q1 = w[base + QOFF + 1u + 2u * s];
#if Q8X
        // k-quads 0..3 are k 0..15 (the lo scales), 4..7 are k 16..31.
        let c0 = cols4(q0, select(hi0, lo0, s < 4u), mn0);
        let c1 = cols4(q1, select(hi1, lo1, s < 4u), mn1);
#else
        let c0 = cols4(q0, d0, mn0);
        let c1 = cols4(q1, d1, mn1);
#endif
#endif
#if GAMMA
        let g = gamma[8u * b + s];
#endif
        for (var r = 0u; r < TM; r++) {
          let xraw = x[xr[r] + 8u * b + s];
#if NORM
          ss[r] += dot(xraw, xraw);
#endif
#if GAMMA
          let xv = xraw * g;
#else
          let xv = xraw;
#endif
          a0[r] += mac4(c0, xv);
          a1[r] += mac4(c1, xv);
        }
      }
    }
#endif
    base += TILE;
  }
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
