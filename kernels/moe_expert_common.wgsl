// Shared by the expert matmuls: weights two at a time (f32; f16 bits in u32 words; or MXFP4:
// a byte holds elements 2i (low nibble) and 2i+1 (high) as E2M1 codes, times 2^(scale - 127)
// with one E8M0 scale byte per 32 elements), the step's tile table from moe_group, and the
// rows of a tile. Element i is row-major over [E][rows][K] (Linear layout).
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<f32>;
// Weights i, i+1 (i even).
fn w2(i: u32) -> vec2<f32> { return vec2<f32>(w[i], w[i + 1u]); }
#else
@group(0) @binding(3) var<storage, read> w: array<u32>;
#if W_MXFP4
fn e2m1(c: u32) -> f32 {
  let mags = array<f32, 8>(0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0);
  let v = mags[c & 7u];
  return select(v, -v, (c & 8u) != 0u);
}
fn w2(i: u32) -> vec2<f32> {
  let byte = (w[i / 8u] >> (((i / 2u) % 4u) * 8u)) & 0xffu;
  let blk = i / 32u;
  let e = (w_scales[blk / 4u] >> ((blk % 4u) * 8u)) & 0xffu;
  return vec2<f32>(e2m1(byte & 15u), e2m1(byte >> 4u)) * exp2(f32(i32(e) - 127));
}
#else
fn w2(i: u32) -> vec2<f32> { return unpack2x16float(w[i / 2u]); }
#endif
#endif
@group(0) @binding(4) var<storage, read> sorted: array<u32>;
@group(0) @binding(5) var<storage, read> tiles: array<u32>;

const WG: u32 = 64u;

struct Tile { expert: u32, start: u32, count: u32 }
fn tile_of(n: u32) -> Tile { return Tile(tiles[n * 3u], tiles[n * 3u + 1u], tiles[n * 3u + 2u]); }
