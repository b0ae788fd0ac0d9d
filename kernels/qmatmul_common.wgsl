// Shared by the GPU-family quantized matmuls (qgemv_wg, qgemm_tiled): int8 helpers and the
// quantized rows layout (src/model/quant/pack_rows.ts). `w` is array<vec4<u32>>: column n's
// block s is word n * KB + s (Q4_0: 16 bytes of nibbles) or words 2(n * KB + s), +1 (Q8_0:
// 32 int8); the f16 scale of (n, s) is half n * KB + s of the region after all quants.
// Q8X (K-quants transcoded at load, src/model/quant/q8x.ts): quants as Q8_0's, then three
// regions of one f32 per (n, s): the scale of k 0..15, the scale of k 16..31, the min.
// Q4X (Q4_K transcoded at load, src/model/quant/q4x.ts; defined with Q4): nibbles as Q4_0's,
// then two such regions: the scale, the min.
#include int8_dot

#if Q8X
// (scale of k 0..15, scale of k 16..31, min); the exact path only (no XQ).
alias QScale = vec3<f32>;
#else
#if Q4X
// (scale, min); the exact path only (no XQ).
alias QScale = vec2<f32>;
#else
alias QScale = f32;
#endif
#endif

// One block's quants (Q4_0 uses q0 only).
struct QBlock { q0: vec4<u32>, q1: vec4<u32> }

fn load_block(n: u32, s: u32) -> QBlock {
  let i = n * (p.k / 32u) + s;
#if Q4
  return QBlock(w[i], vec4<u32>(0u));
#else
  return QBlock(w[2u * i], w[2u * i + 1u]);
#endif
}

fn block_scale(n: u32, s: u32) -> QScale {
#if Q8X
  let region = p.blocks * 16u * (p.k / 32u);
  // Words per f32 region (blocks * 8 * KB floats, a multiple of 4).
  let rw = p.blocks * 2u * (p.k / 32u);
  let h = n * (p.k / 32u) + s;
  let at = region + h / 4u;
  return QScale(bitcast<f32>(w[at][h % 4u]), bitcast<f32>(w[at + rw][h % 4u]),
    bitcast<f32>(w[at + 2u * rw][h % 4u]));
#else
#if Q4X
  let region = p.blocks * 8u * (p.k / 32u);
  // Words per f32 region, as Q8X's.
  let rw = p.blocks * 2u * (p.k / 32u);
  let h = n * (p.k / 32u) + s;
  let at = region + h / 4u;
  return QScale(bitcast<f32>(w[at][h % 4u]), bitcast<f32>(w[at + rw][h % 4u]));
#else
#if Q4
  let region = p.blocks * 8u * (p.k / 32u);
#else
  let region = p.blocks * 16u * (p.k / 32u);
#endif
  let h = n * (p.k / 32u) + s;
  let word = w[region + h / 8u][(h / 2u) % 4u];
  return unpack2x16float(word)[h % 2u];
#endif
#endif
}

// The block's k-quad j (k 4j..4j+3) as 4 int8 in a u32 (Q4_0: the nibbles, unsigned).
fn quad_bits(b: QBlock, j: u32) -> u32 {
#if Q4
  return (b.q0[j % 4u] >> (4u * (j / 4u))) & 0x0f0f0f0fu;
#else
  if (j < 4u) { return b.q0[j]; }
  return b.q1[j - 4u];
#endif
}

// The block's k-quad j dequantized: f32(q * d) (Q4_0: (q - 8) * d; Q8X, Q4X: q * scale - min),
// llama.cpp's values.
fn quad_weights(b: QBlock, j: u32, d: QScale) -> vec4<f32> {
#if Q4
#if Q4X
  return vec4<f32>(u8x4(quad_bits(b, j))) * d.x - d.y;
#else
  return (vec4<f32>(u8x4(quad_bits(b, j))) - 8.0) * d;
#endif
#else
#if Q8X
  return vec4<f32>(i8x4(quad_bits(b, j))) * select(d.y, d.x, j < 4u) - d.z;
#else
  return vec4<f32>(i8x4(quad_bits(b, j))) * d;
#endif
#endif
}
