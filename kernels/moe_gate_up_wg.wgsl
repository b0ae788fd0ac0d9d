// GPU-family expert gate|up over column blocks (moe_weights' "column_blocks"): one workgroup
// per (block of 8 columns = gate 4b..4b+3 and up 4b..4b+3, tile of moe_group). For each row of
// the tile in turn, lane l sums k = l, l + 64, ... (consecutive lanes read consecutive 16-byte
// groups), then a fixed tree adds the 64 lane sums: a row's bits do not depend on its tile.
// GPTOSS: biases and the clamped SwiGLU. W_QUANT: Q8_0 / Q4_0 tiles, lane l taking 32-wide K
// blocks l, l + 64, ...
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

var<workgroup> tile_sh: vec3<u32>;
var<workgroup> part: array<vec4<f32>, 128>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) { let t = tile_of(wid.y); tile_sh = vec3<u32>(t.expert, t.start, t.count); }
  let tv = workgroupUniformLoad(&tile_sh);
  let b = wid.x;
  if (b >= p.inter / 4u || tv.x < p.first || tv.x >= p.first + p.count) { return; }
  let cb = (tv.x - p.first) * (p.inter / 4u) + b;
  for (var r = 0u; r < tv.z; r++) {
    let a = sorted[tv.y + r];
    let xrow = (a / p.topk) * p.hidden;
    var g = vec4<f32>(0.0);
    var u = vec4<f32>(0.0);
#if W_QUANT
    for (var kb = lid; kb < p.hidden / 32u; kb += WG) {
      var xb: array<vec4<f32>, 8>;
      let x0 = xrow + 32u * kb;
      for (var i = 0u; i < 8u; i++) { xb[i] = vec4<f32>(xn[x0 + 4u * i], xn[x0 + 4u * i + 1u], xn[x0 + 4u * i + 2u], xn[x0 + 4u * i + 3u]); }
      let s = qdot8((cb * (p.hidden / 32u) + kb) * TILE, xb);
      g += s[0];
      u += s[1];
    }
#else
    for (var k = lid; k < p.hidden; k += WG) {
      let wv = w8(cb * p.hidden + k);
      let xv = vec4<f32>(xn[xrow + k]);
      g = fma(wv[0], xv, g);
      u = fma(wv[1], xv, u);
    }
#endif
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
      let gs = part[0][lid];
      let us = part[64][lid];
#if GPTOSS
      let gg = min(gs + w_bias[tv.x * 2u * p.inter + 2u * j], LIMIT);
      let uu = clamp(us + w_bias[tv.x * 2u * p.inter + 2u * j + 1u], -LIMIT, LIMIT);
      h[a * p.inter + j] = (uu + 1.0) * (gg / (1.0 + exp(-ALPHA * gg)));
#else
      h[a * p.inter + j] = gs / (1.0 + exp(-gs)) * us;
#endif
    }
    workgroupBarrier();
  }
}
