// Expert gate|up with the SwiGLU epilogue over one tile of moe_group, column blocks: block b
// of the expert holds gate 4b..4b+3 then up 4b..4b+3 (gluColumns order), so invocation b
// computes h[a, 4b .. 4b+3] for every row of the tile, summing in k order (a row's bits do
// not depend on which rows share its tile). Rows run one after another over the block (its
// 16 * K bytes stay in cache): no per-row masks, so a one-row tile (decode) does one row's
// work. GPTOSS: biases and the clamped SwiGLU. W_QUANT: Q8_0 / Q4_0 tiles, 32 k at a time.
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> xn: array<f32>;
#include moe_c8_common
@group(0) @binding(6) var<storage, read_write> h: array<f32>;
#if GPTOSS
@group(0) @binding(7) var<storage, read> w_bias: array<f32>;
const LIMIT: f32 = {{LIMIT}};
const ALPHA: f32 = {{ALPHA}};
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let b = wid.x * WG + lid;
  if (b >= p.inter / 4u || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let cb = (t.expert - p.first) * (p.inter / 4u) + b;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let xrow = (a / p.topk) * p.hidden;
    var g = vec4<f32>(0.0);
    var u = vec4<f32>(0.0);
#if W_QUANT
    for (var kb = 0u; kb < p.hidden / 32u; kb++) {
      var xb: array<vec4<f32>, 8>;
      let x0 = xrow + 32u * kb;
      for (var i = 0u; i < 8u; i++) { xb[i] = vec4<f32>(xn[x0 + 4u * i], xn[x0 + 4u * i + 1u], xn[x0 + 4u * i + 2u], xn[x0 + 4u * i + 3u]); }
      let s = qdot8((cb * (p.hidden / 32u) + kb) * TILE, xb);
      g += s[0];
      u += s[1];
    }
#else
    for (var k = 0u; k < p.hidden; k++) {
      let wv = w8(cb * p.hidden + k);
      let xv = vec4<f32>(xn[xrow + k]);
      g = fma(wv[0], xv, g);
      u = fma(wv[1], xv, u);
    }
#endif
    for (var q = 0u; q < 4u; q++) {
      let j = 4u * b + q;
#if GPTOSS
      let gg = min(g[q] + w_bias[t.expert * 2u * p.inter + 2u * j], LIMIT);
      let uu = clamp(u[q] + w_bias[t.expert * 2u * p.inter + 2u * j + 1u], -LIMIT, LIMIT);
      h[a * p.inter + j] = (uu + 1.0) * (gg / (1.0 + exp(-ALPHA * gg)));
#else
      h[a * p.inter + j] = g[q] / (1.0 + exp(-g[q])) * u[q];
#endif
    }
  }
}
