// Expert down projection over one tile of moe_group, column blocks: invocation c computes
// output columns 8c .. 8c+7 for every row of the tile (one row after another, no per-row
// masks), summing in k order, then
//   y[a, col] = wts[a] * (h[a] . down_col (+ bias for GPTOSS)).
// W_QUANT: Q8_0 / Q4_0 tiles, 32 k at a time.
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> h: array<f32>;
#include moe_c8_common
@group(0) @binding(6) var<storage, read> wts: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
#if GPTOSS
@group(0) @binding(8) var<storage, read> w_bias: array<f32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let c = wid.x * WG + lid;
  if (c >= p.hidden / 8u || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let cb = (t.expert - p.first) * (p.hidden / 8u) + c;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let hrow = a * p.inter;
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
#if W_QUANT
    for (var kb = 0u; kb < p.inter / 32u; kb++) {
      var xb: array<vec4<f32>, 8>;
      let x0 = hrow + 32u * kb;
      for (var i = 0u; i < 8u; i++) { xb[i] = vec4<f32>(h[x0 + 4u * i], h[x0 + 4u * i + 1u], h[x0 + 4u * i + 2u], h[x0 + 4u * i + 3u]); }
      let s = qdot8((cb * (p.inter / 32u) + kb) * TILE, xb);
      lo += s[0];
      hi += s[1];
    }
#else
    for (var k = 0u; k < p.inter; k++) {
      let wv = w8(cb * p.inter + k);
      let hv = vec4<f32>(h[hrow + k]);
      lo = fma(wv[0], hv, lo);
      hi = fma(wv[1], hv, hi);
    }
#endif
    let o = a * p.hidden + 8u * c;
    for (var q = 0u; q < 4u; q++) {
#if GPTOSS
      y[o + q] = (lo[q] + w_bias[t.expert * p.hidden + 8u * c + q]) * wts[a];
      y[o + 4u + q] = (hi[q] + w_bias[t.expert * p.hidden + 8u * c + 4u + q]) * wts[a];
#else
      y[o + q] = lo[q] * wts[a];
      y[o + 4u + q] = hi[q] * wts[a];
#endif
    }
  }
}
