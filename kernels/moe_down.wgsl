// Expert down projection over one tile of moe_group, scaled by the routing weight:
//   y[a, c] = wts[a] * (h[a] . down_c), weights [E][H][I] (Linear layout);
// invocation c computes output c for every row of the tile, summing in k order. GPTOSS adds
// the expert's bias before the routing weight.
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> h: array<f32>;
#include moe_expert_common
@group(0) @binding(6) var<storage, read> wts: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
#if GPTOSS
@group(0) @binding(8) var<storage, read> w_bias: array<f32>;
#endif
#if W_MXFP4
@group(0) @binding(9) var<storage, read> w_scales: array<u32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let c = wid.x * WG + lid;
  if (c >= p.hidden || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  var hrow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { hrow[r] = sorted[t.start + min(r, t.count - 1u)] * p.inter; }
  let base = ((t.expert - p.first) * p.hidden + c) * p.inter;
  var acc: array<f32, TM>;
  for (var k = 0u; k < p.inter; k += 2u) {
    let wd = w2(base + k);
    for (var r = 0u; r < TM; r++) {
      if (r < t.count) { acc[r] = fma(wd.y, h[hrow[r] + k + 1u], fma(wd.x, h[hrow[r] + k], acc[r])); }
    }
  }
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
#if GPTOSS
    y[a * p.hidden + c] = (acc[r] + w_bias[t.expert * p.hidden + c]) * wts[a];
#else
    y[a * p.hidden + c] = acc[r] * wts[a];
#endif
  }
}
