// Shared by the column-block expert matmuls (moe_gate_up_c8, moe_down_c8): each expert's
// matrix packed as blocks of 8 output columns, block c holding K groups of 8 weights (the
// column-blocks layout of gemv_c8, per expert), so an invocation owns one block and reads 8
// weights per 16-byte load (f16; two loads for f32). Tiles come from moe_group.
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
// The 8 weights of group g.
fn w8(g: u32) -> array<vec4<f32>, 2> { return array<vec4<f32>, 2>(w[2u * g], w[2u * g + 1u]); }
#else
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
fn w8(g: u32) -> array<vec4<f32>, 2> {
  let q = w[g];
  return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}
#endif
@group(0) @binding(4) var<storage, read> sorted: array<u32>;
@group(0) @binding(5) var<storage, read> tiles: array<u32>;

const WG: u32 = 64u;

struct Tile { expert: u32, start: u32, count: u32 }
fn tile_of(n: u32) -> Tile { return Tile(tiles[n * 3u], tiles[n * 3u + 1u], tiles[n * 3u + 2u]); }
