// Expert down projection over one tile of moe_group, column blocks: block c yields output
// columns 8c .. 8c+7 for every row of the tile (one row after another), then (moe_out)
//   y[a, col] = wts[a] * (h[a] . down_col (+ bias for GPTOSS)).
//   cpu family: invocation c owns block c and sums in k order (no per-row masks);
//   LANES (gpu family, moe_down_wg): a workgroup owns block c; lane l sums k = l, l + 64, ...,
//     then a fixed tree adds the lane sums (a row's bits do not depend on its tile).
// W_QUANT: Q8_0 / Q4_0 / Q8X / Q4X tiles (moe_c8_common's qdot_row), 32 k at a time; with LANES, lane l takes
//   the 32-wide K blocks l, l + 64, ...
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> h: array<f32>;
// The activations the quantized K loop (moe_c8_common's qdot_row) reads.
fn act(i: u32) -> f32 { return h[i]; }
#include moe_c8_common
@group(0) @binding(6) var<storage, read> wts: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
#include moe_out
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
  let c = wid.x;
#else
  let t = tile_of(wid.y);
  let c = wid.x * WG + lid;
#endif
  if (c >= p.hidden / 8u || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let cb = (t.expert - p.first) * (p.hidden / 8u) + c;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let hrow = a * p.inter;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
#if W_QUANT
    let qs = qdot_row(cb, hrow, p.inter, lid);
    lo = qs[0];
    hi = qs[1];
#else
#if LANES
    for (var k = lid; k < p.inter; k += WG) {
#else
    for (var k = 0u; k < p.inter; k++) {
#endif
      let wv = w8(cb * p.inter + k);
      let hv = vec4<f32>(h[hrow + k]);
      lo = fma(wv[0], hv, lo);
      hi = fma(wv[1], hv, hi);
    }
#endif
#if LANES
    part[lid] = lo;
    part[64u + lid] = hi;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
      if (lid < s) {
        part[lid] += part[lid + s];
        part[64u + lid] += part[64u + lid + s];
      }
      workgroupBarrier();
    }
    if (lid < 8u) {
      let col = 8u * c + lid;
      let v = select(part[64][lid % 4u], part[0][lid % 4u], lid < 4u);
      y[a * p.hidden + col] = expert_out(v, t.expert, col, wts[a]);
    }
    workgroupBarrier();
#else
    let o = a * p.hidden + 8u * c;
    for (var q = 0u; q < 4u; q++) {
      y[o + q] = expert_out(lo[q], t.expert, 8u * c + q, wts[a]);
      y[o + 4u + q] = expert_out(hi[q], t.expert, 8u * c + 4u + q, wts[a]);
    }
#endif
  }
}
