// Expert gate|up with the SwiGLU epilogue over one tile of moe_group (up to TM assignments
// of one expert): invocation j computes output j of the expert for every row of the tile,
// reading the expert's gate row j and up row j once (weights [E][2I][H], Linear layout) and
// summing in k order, so a row's bits do not depend on which rows share its tile.
//   h[a, j] = silu(xn[tok] . gate_j) * (xn[tok] . up_j), tok = a / topk.
#include common
struct Params { hidden: u32, inter: u32, topk: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> xn: array<f32>;
#include moe_expert_common
@group(0) @binding(6) var<storage, read_write> h: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let j = wid.x * WG + lid;
  if (j >= p.inter) { return; }
  var xrow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { xrow[r] = (sorted[t.start + min(r, t.count - 1u)] / p.topk) * p.hidden; }
  let gbase = (t.expert * 2u * p.inter + j) * p.hidden;
  let ubase = gbase + p.inter * p.hidden;
  var g: array<f32, TM>;
  var u: array<f32, TM>;
  for (var k = 0u; k < p.hidden; k += 2u) {
    let wg = w2(gbase + k);
    let wu = w2(ubase + k);
    for (var r = 0u; r < TM; r++) {
      if (r < t.count) {
        let x0 = xn[xrow[r] + k];
        let x1 = xn[xrow[r] + k + 1u];
        g[r] = fma(wg.y, x1, fma(wg.x, x0, g[r]));
        u[r] = fma(wu.y, x1, fma(wu.x, x0, u[r]));
      }
    }
  }
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    h[a * p.inter + j] = g[r] / (1.0 + exp(-g[r])) * u[r];
  }
}
