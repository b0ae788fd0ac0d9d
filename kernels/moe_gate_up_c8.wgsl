// Expert gate|up with the SwiGLU epilogue (moe_act) over one tile of moe_group, column blocks:
// block b of the expert holds gate 4b..4b+3 then up 4b..4b+3 (gluColumns order) and yields
// h[a, 4b .. 4b+3] for every row of the tile, rows one after another over the block (its
// 16 * K bytes stay in cache), so a row's bits do not depend on which rows share its tile.
//   cpu family: invocation b owns block b and sums in k order (no per-row masks: a one-row
//     tile, decode, does one row's work);
//   LANES (gpu family, moe_gate_up_wg): a workgroup owns block b; lane l sums k = l, l + 64,
//     ... (consecutive lanes read consecutive 16-byte groups), then a fixed tree adds the 64
//     lane sums.
// W_QUANT: Q8_0 / Q4_0 / Q8X / Q4X tiles (moe_c8_common's qdot_row), 32 k at a time; with LANES, lane l takes
//   the 32-wide K blocks l, l + 64, ...
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> xn: array<f32>;
// The activations the quantized K loop (moe_c8_common's qdot_row) reads.
fn act(i: u32) -> f32 { return xn[i]; }
#include moe_c8_common
@group(0) @binding(6) var<storage, read_write> h: array<f32>;
#include moe_act
#if LANES
var<workgroup> tile_sh: vec3<u32>;
var<workgroup> part: array<vec4<f32>, 128>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#if LANES
  if (lid == 0u) { let t = tile_of(wid.y); tile_sh = vec3<u32>(t.expert, t.start, t.count); }
  let tv = workgroupUniformLoad(&tile_sh);
  let t = Tile(tv.x, tv.y, tv.z);
  let b = wid.x;
#else
  let t = tile_of(wid.y);
  let b = wid.x * WG + lid;
#endif
  if (b >= p.inter / 4u || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let cb = (t.expert - p.first) * (p.inter / 4u) + b;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let xrow = (a / p.topk) * p.hidden;
    var g = vec4<f32>(0.0);
    var u = vec4<f32>(0.0);
#if W_QUANT
    let qs = qdot_row(cb, xrow, p.hidden, lid);
    g = qs[0];
    u = qs[1];
#else
#if LANES
    for (var k = lid; k < p.hidden; k += WG) {
#else
    for (var k = 0u; k < p.hidden; k++) {
#endif
      let wv = w8(cb * p.hidden + k);
      let xv = vec4<f32>(xn[xrow + k]);
      g = fma(wv[0], xv, g);
      u = fma(wv[1], xv, u);
    }
#endif
#if LANES
    part[lid] = g;
    part[64u + lid] = u;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
      if (lid < s) {
        part[lid] += part[lid + s];
        part[64u + lid] += part[64u + lid + s];
      }
      workgroupBarrier();
    }
    if (lid < 4u) {
      let j = 4u * b + lid;
      h[a * p.inter + j] = expert_act(part[0][lid], part[64][lid], t.expert, j);
    }
    workgroupBarrier();
#else
    for (var q = 0u; q < 4u; q++) {
      let j = 4u * b + q;
      h[a * p.inter + j] = expert_act(g[q], u[q], t.expert, j);
    }
#endif
  }
}
