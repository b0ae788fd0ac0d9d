// Shared by the column-block expert matmuls (moe_gate_up_c8, moe_down_c8): each expert's
// matrix packed as blocks of 8 output columns, block c holding K groups of 8 weights (the
// column-blocks layout of gemv_c8, per expert), so an invocation owns one block and reads 8
// weights per 16-byte load (f16; two loads for f32; Q8_0 / Q4_0 / K-quant / MXFP4 tiles below). Tiles
// come from moe_group.
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
// The 8 weights of group g.
fn w8(g: u32) -> array<vec4<f32>, 2> { return array<vec4<f32>, 2>(w[2u * g], w[2u * g + 1u]); }
#else
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#if W_QUANT
#if W_MXFP4
// MXFP4 experts (gpt-oss): the hub's E2M1 codes and E8M0 scales repacked per column block
// (src/model/quant/mxfp4_c8.ts) as a tile of PAIR words per two 32-wide K blocks: word 0
// the 16 scale bytes (x: columns 0..3 of the even block, y: columns 4..7; z, w: the odd
// block's), then 8 words per block, word 2i + h = the hub's u32 i of columns 4h..4h+3 (codes
// of k 8i .. 8i+7, nibble n = k 8i + n, sign bit 3). Each weight is the Linear path's value,
// e2m1 * 2^(scale - 127), exact in f32, and is summed k by k with fma as that path did.
const PAIR: u32 = 17u;
// Twice the E2M1 magnitudes (0, 0.5, 1, 1.5, 2, 3, 4, 6), one nibble per code.
const E2M1_X2: u32 = 0xc8643210u;
// Twice the E2M1 values of codes c & 15 (the sign bit set on the float).
fn e2m1x4(c: vec4<u32>) -> vec4<f32> {
  let v = vec4<f32>((vec4<u32>(E2M1_X2) >> ((c & vec4<u32>(7u)) * 4u)) & vec4<u32>(15u));
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) | ((c & vec4<u32>(8u)) << vec4<u32>(28u)));
}
// 2^(e - 128) for the four E8M0 bytes e of s: half the scale, the codes being doubled (built
// as float bits, exact; bytes 0 and 1, scales under 2^-126, read as 0).
fn half_scale(s: u32) -> vec4<f32> {
  let e = (vec4<u32>(s) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
  return bitcast<vec4<f32>>((max(e, vec4<u32>(1u)) - 1u) << vec4<u32>(23u));
}
// Columns 0..3 (acc[0]) and 4..7 (acc[1]) plus K block kb of column block cb times x at its
// 32 k (xb: k-quads), in k order.
fn qdot8(cb: u32, kb: u32, nkb: u32, xb: array<vec4<f32>, 8>, acc: array<vec4<f32>, 2>) -> array<vec4<f32>, 2> {
  let t = (cb * ((nkb + 1u) / 2u) + kb / 2u) * PAIR;
  let odd = (kb & 1u) == 1u;
  let sw = w[t];
  let s0 = half_scale(select(sw.x, sw.z, odd));
  let s1 = half_scale(select(sw.y, sw.w, odd));
  let c = t + select(1u, 9u, odd);
  var lo = acc[0];
  var hi = acc[1];
  // k-quad s: nibbles 4(s % 2) .. 4(s % 2) + 3 of the hub's u32 s / 2.
  for (var s = 0u; s < 8u; s++) {
    let q0 = w[c + 2u * (s / 2u)] >> vec4<u32>(16u * (s % 2u));
    let q1 = w[c + 2u * (s / 2u) + 1u] >> vec4<u32>(16u * (s % 2u));
    let xv = xb[s];
    lo = fma(e2m1x4(q0) * s0, vec4<f32>(xv.x), lo);
    hi = fma(e2m1x4(q1) * s1, vec4<f32>(xv.x), hi);
    lo = fma(e2m1x4(q0 >> vec4<u32>(4u)) * s0, vec4<f32>(xv.y), lo);
    hi = fma(e2m1x4(q1 >> vec4<u32>(4u)) * s1, vec4<f32>(xv.y), hi);
    lo = fma(e2m1x4(q0 >> vec4<u32>(8u)) * s0, vec4<f32>(xv.z), lo);
    hi = fma(e2m1x4(q1 >> vec4<u32>(8u)) * s1, vec4<f32>(xv.z), hi);
    lo = fma(e2m1x4(q0 >> vec4<u32>(12u)) * s0, vec4<f32>(xv.w), lo);
    hi = fma(e2m1x4(q1 >> vec4<u32>(12u)) * s1, vec4<f32>(xv.w), hi);
  }
  return array<vec4<f32>, 2>(lo, hi);
}
#else
// Q8_0 / Q4_0 experts (W_Q4_0): each expert packed as qgemv_c8's quantized column blocks
// (src/model/quant/pack_c8.ts), so block c holds one tile of TILE words per 32-wide K block:
// the eight f16 scales, then word 1 + 2i + h = k-quad i of columns 4h..4h+3 (Q4_0: nibble
// bytes 4i..4i+3, low nibbles k-quad i, high nibbles k-quad i + 4). Dequantized in registers
// to llama.cpp's values, f32(q * d) (Q4_0: (q - 8) * d), and summed as qgemv_c8's exact path.
// K-quant experts of a GGUF file, transcoded at load as the dense matrices are (exactly
// ggml's values): W_Q8X (Q6_K, or gate/up of mixed types; q8x.ts) tiles of 22 words, the
// f32 scales of k 0..15 (words 0-1, columns 0..3 then 4..7), of k 16..31 (2-3), the mins
// (4-5), then Q8_0's int8 words; W_Q4X (Q4_K; q4x.ts) tiles of 12 words, f32 scales (0-1),
// mins (2-3), then Q4_0's nibble words. Each weight is f32(q * scale) - min, qgemv_c8's.
#include int8_dot
#if W_Q8X
const TILE: u32 = 22u;
#else
#if W_Q4X
const TILE: u32 = 12u;
#else
#if W_Q4_0
const TILE: u32 = 9u;
#else
const TILE: u32 = 17u;
#endif
#endif
#endif
// Columns 0..3 (acc[0]) and 4..7 (acc[1]) plus K block kb of column block cb times x at its
// 32 k (xb: k-quads), the block summed apart first.
fn qdot8(cb: u32, kb: u32, nkb: u32, xb: array<vec4<f32>, 8>, acc: array<vec4<f32>, 2>) -> array<vec4<f32>, 2> {
  let t = (cb * nkb + kb) * TILE;
  var lo = vec4<f32>(0.0);
  var hi = vec4<f32>(0.0);
#if W_Q4X
  let d0 = bitcast<vec4<f32>>(w[t]);
  let d1 = bitcast<vec4<f32>>(w[t + 1u]);
  let m0 = bitcast<vec4<f32>>(w[t + 2u]);
  let m1 = bitcast<vec4<f32>>(w[t + 3u]);
  // k order (low nibbles: k-quads 0..3, then high: 4..7), as qgemv_c8's Q4X.
  for (var hf = 0u; hf < 2u; hf++) {
    for (var i = 0u; i < 4u; i++) {
      let s = i + 4u * hf;
      let q0 = (w[t + 4u + 2u * i] >> vec4<u32>(4u * hf)) & vec4<u32>(0x0f0f0f0fu);
      let q1 = (w[t + 5u + 2u * i] >> vec4<u32>(4u * hf)) & vec4<u32>(0x0f0f0f0fu);
      let a = mat4x4<f32>(vec4<f32>(u8x4(q0.x)) * d0.x - m0.x, vec4<f32>(u8x4(q0.y)) * d0.y - m0.y,
        vec4<f32>(u8x4(q0.z)) * d0.z - m0.z, vec4<f32>(u8x4(q0.w)) * d0.w - m0.w);
      let b = mat4x4<f32>(vec4<f32>(u8x4(q1.x)) * d1.x - m1.x, vec4<f32>(u8x4(q1.y)) * d1.y - m1.y,
        vec4<f32>(u8x4(q1.z)) * d1.z - m1.z, vec4<f32>(u8x4(q1.w)) * d1.w - m1.w);
#else
#if W_Q8X
  let m0 = bitcast<vec4<f32>>(w[t + 4u]);
  let m1 = bitcast<vec4<f32>>(w[t + 5u]);
  {
    for (var s = 0u; s < 8u; s++) {
      // k-quads 0..3 are k 0..15 (the lo scales, words 0-1), 4..7 are k 16..31 (words 2-3).
      let d0 = bitcast<vec4<f32>>(w[t + select(2u, 0u, s < 4u)]);
      let d1 = bitcast<vec4<f32>>(w[t + select(3u, 1u, s < 4u)]);
      let q0 = w[t + 6u + 2u * s];
      let q1 = w[t + 7u + 2u * s];
      let a = mat4x4<f32>(vec4<f32>(i8x4(q0.x)) * d0.x - m0.x, vec4<f32>(i8x4(q0.y)) * d0.y - m0.y,
        vec4<f32>(i8x4(q0.z)) * d0.z - m0.z, vec4<f32>(i8x4(q0.w)) * d0.w - m0.w);
      let b = mat4x4<f32>(vec4<f32>(i8x4(q1.x)) * d1.x - m1.x, vec4<f32>(i8x4(q1.y)) * d1.y - m1.y,
        vec4<f32>(i8x4(q1.z)) * d1.z - m1.z, vec4<f32>(i8x4(q1.w)) * d1.w - m1.w);
#else
  let sw = w[t];
  let d0 = vec4<f32>(unpack2x16float(sw.x), unpack2x16float(sw.y));
  let d1 = vec4<f32>(unpack2x16float(sw.z), unpack2x16float(sw.w));
#if W_Q4_0
  // Word pair i once per nibble half: k-quads i, then i + 4.
  for (var i = 0u; i < 4u; i++) {
    for (var hf = 0u; hf < 2u; hf++) {
      let s = i + 4u * hf;
      let q0 = (w[t + 1u + 2u * i] >> vec4<u32>(4u * hf)) & vec4<u32>(0x0f0f0f0fu);
      let q1 = (w[t + 2u + 2u * i] >> vec4<u32>(4u * hf)) & vec4<u32>(0x0f0f0f0fu);
      let a = mat4x4<f32>((vec4<f32>(u8x4(q0.x)) - 8.0) * d0.x, (vec4<f32>(u8x4(q0.y)) - 8.0) * d0.y,
        (vec4<f32>(u8x4(q0.z)) - 8.0) * d0.z, (vec4<f32>(u8x4(q0.w)) - 8.0) * d0.w);
      let b = mat4x4<f32>((vec4<f32>(u8x4(q1.x)) - 8.0) * d1.x, (vec4<f32>(u8x4(q1.y)) - 8.0) * d1.y,
        (vec4<f32>(u8x4(q1.z)) - 8.0) * d1.z, (vec4<f32>(u8x4(q1.w)) - 8.0) * d1.w);
#else
  {
    for (var s = 0u; s < 8u; s++) {
      let q0 = w[t + 1u + 2u * s];
      let q1 = w[t + 2u + 2u * s];
      let a = mat4x4<f32>(vec4<f32>(i8x4(q0.x)) * d0.x, vec4<f32>(i8x4(q0.y)) * d0.y,
        vec4<f32>(i8x4(q0.z)) * d0.z, vec4<f32>(i8x4(q0.w)) * d0.w);
      let b = mat4x4<f32>(vec4<f32>(i8x4(q1.x)) * d1.x, vec4<f32>(i8x4(q1.y)) * d1.y,
        vec4<f32>(i8x4(q1.z)) * d1.z, vec4<f32>(i8x4(q1.w)) * d1.w);
#endif
#endif
#endif
      let xv = xb[s];
      lo += vec4<f32>(dot(a[0], xv), dot(a[1], xv), dot(a[2], xv), dot(a[3], xv));
      hi += vec4<f32>(dot(b[0], xv), dot(b[1], xv), dot(b[2], xv), dot(b[3], xv));
    }
  }
  return array<vec4<f32>, 2>(acc[0] + lo, acc[1] + hi);
}
#endif

// Column block `cb` (columns 0..3, 4..7) times the activation row at `row0` over K, 32 k at a
// time: all of K, or with LANES the 32-wide blocks lid, lid + WG, ... The includer defines
// `act(i)`, its activations' element i.
fn qdot_row(cb: u32, row0: u32, K: u32, lid: u32) -> array<vec4<f32>, 2> {
  var lo = vec4<f32>(0.0);
  var hi = vec4<f32>(0.0);
#if LANES
  for (var kb = lid; kb < K / 32u; kb += WG) {
#else
  for (var kb = 0u; kb < K / 32u; kb++) {
#endif
    var xb: array<vec4<f32>, 8>;
    let x0 = row0 + 32u * kb;
    for (var i = 0u; i < 8u; i++) { xb[i] = vec4<f32>(act(x0 + 4u * i), act(x0 + 4u * i + 1u), act(x0 + 4u * i + 2u), act(x0 + 4u * i + 3u)); }
    let s = qdot8(cb, kb, K / 32u, xb, array<vec4<f32>, 2>(lo, hi));
    lo = s[0];
    hi = s[1];
  }
  return array<vec4<f32>, 2>(lo, hi);
}
#else
fn w8(g: u32) -> array<vec4<f32>, 2> {
  let q = w[g];
  return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
#endif
#endif
@group(0) @binding(4) var<storage, read> sorted: array<u32>;
@group(0) @binding(5) var<storage, read> tiles: array<u32>;

const WG: u32 = 64u;

struct Tile { expert: u32, start: u32, count: u32 }
fn tile_of(n: u32) -> Tile { return Tile(tiles[n * 3u], tiles[n * 3u + 1u], tiles[n * 3u + 2u]); }
