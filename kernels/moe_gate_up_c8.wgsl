// Expert gate|up with the SwiGLU epilogue over one tile of moe_group, column blocks: block b
// of the expert holds gate 4b..4b+3 then up 4b..4b+3 (gluColumns order), so invocation b
// computes h[a, 4b .. 4b+3] for every row of the tile, summing in k order (a row's bits do
// not depend on which rows share its tile). Rows run one after another over the block (its
// 16 * K bytes stay in cache): no per-row masks, so a one-row tile (decode) does one row's
// work. GPTOSS: biases and the clamped SwiGLU.
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
  let g0 = ((t.expert - p.first) * (p.inter / 4u) + b) * p.hidden;
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let xrow = (a / p.topk) * p.hidden;
    var g = vec4<f32>(0.0);
    var u = vec4<f32>(0.0);
    for (var k = 0u; k < p.hidden; k++) {
      let wv = w8(g0 + k);
      let xv = vec4<f32>(xn[xrow + k]);
      g = fma(wv[0], xv, g);
      u = fma(wv[1], xv, u);
    }
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
