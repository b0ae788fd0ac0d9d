// Shared by the column-block expert matmuls (moe_gate_up_c8, moe_down_c8): each expert's
// matrix packed as blocks of 8 output columns, block c holding K groups of 8 weights (the
// column-blocks layout of gemv_c8, per expert), so an invocation owns one block and reads 8
// weights per 16-byte load (f16; two loads for f32; Q8_0 / Q4_0 tiles below). Tiles come from
// moe_group.
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
// The 8 weights of group g.
fn w8(g: u32) -> array<vec4<f32>, 2> { return array<vec4<f32>, 2>(w[2u * g], w[2u * g + 1u]); }
#else
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#if W_QUANT
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
// Columns 0..3 (lo) and 4..7 (hi) of the tile at word t times x at its 32 k (xb: k-quads).
fn qdot8(t: u32, xb: array<vec4<f32>, 8>) -> array<vec4<f32>, 2> {
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
  return array<vec4<f32>, 2>(lo, hi);
}

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
    let s = qdot8((cb * (K / 32u) + kb) * TILE, xb);
    lo += s[0];
    hi += s[1];
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
