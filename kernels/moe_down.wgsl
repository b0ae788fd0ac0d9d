// Expert down projection over one tile of moe_group, scaled by the routing weight:
//   y[a, c] = wts[a] * (h[a] . down_c), weights [E][H][I] (Linear layout);
// invocation c computes output c for every row of the tile (one row after another), summing
// in k order. GPTOSS adds the expert's bias before the routing weight (moe_out).
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> h: array<f32>;
#include moe_expert_common
@group(0) @binding(6) var<storage, read> wts: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
#include moe_out

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let c = wid.x * WG + lid;
  if (c >= p.hidden || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let base = ((t.expert - p.first) * p.hidden + c) * p.inter;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let hrow = a * p.inter;
    var acc = 0.0;
    for (var k = 0u; k < p.inter; k += 2u) {
      let wd = w2(base + k);
      acc = fma(wd.y, h[hrow + k + 1u], fma(wd.x, h[hrow + k], acc));
    }
    y[a * p.hidden + c] = expert_out(acc, t.expert, c, wts[a]);
  }
}
