// Shared by the Linear-layout expert matmuls (moe_gate_up, moe_down: f16/f32 experts whose
// shapes do not fit column blocks): weights two at a time (f32; f16 bits in u32 words), the
// step's tile table from moe_group, and the rows of a tile. Element i is row-major over
// [E][rows][K].
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<f32>;
// Weights i, i+1 (i even).
fn w2(i: u32) -> vec2<f32> { return vec2<f32>(w[i], w[i + 1u]); }
#else
@group(0) @binding(3) var<storage, read> w: array<u32>;
fn w2(i: u32) -> vec2<f32> { return unpack2x16float(w[i / 2u]); }
#endif
@group(0) @binding(4) var<storage, read> sorted: array<u32>;
@group(0) @binding(5) var<storage, read> tiles: array<u32>;

const WG: u32 = 64u;

struct Tile { expert: u32, start: u32, count: u32 }
fn tile_of(n: u32) -> Tile { return Tile(tiles[n * 3u], tiles[n * 3u + 1u], tiles[n * 3u + 2u]); }
