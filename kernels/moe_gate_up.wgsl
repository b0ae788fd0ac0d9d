// Expert gate|up with the SwiGLU epilogue over one tile of moe_group (up to MOE_TILE_ROWS assignments
// of one expert): invocation j computes output j of the expert for every row of the tile,
// one row after another over the expert's gate row j and up row j (weights [E][2I][H],
// Linear layout), summing in k order, so a row's bits do not depend
// on which rows share its tile.
//   h[a, j] = act(xn[tok] . gate_j, xn[tok] . up_j), tok = a / topk (moe_act: SwiGLU, or
// GPTOSS's biased, clamped one; there gate_j and up_j are rows 2j and 2j+1).
#include common
// Runs once per part of the weights: experts first .. first + count - 1 (others' tiles exit).
struct Params { hidden: u32, inter: u32, topk: u32, first: u32, count: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> xn: array<f32>;
#include moe_expert_common
@group(0) @binding(6) var<storage, read_write> h: array<f32>;
#include moe_act

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = tile_of(wid.y);
  let j = wid.x * WG + lid;
  if (j >= p.inter || t.expert < p.first || t.expert >= p.first + p.count) { return; }
  let pe = t.expert - p.first;
#if GPTOSS
  let gbase = (pe * 2u * p.inter + 2u * j) * p.hidden;
  let ubase = gbase + p.hidden;
#else
  let gbase = (pe * 2u * p.inter + j) * p.hidden;
  let ubase = gbase + p.inter * p.hidden;
#endif
  for (var r = 0u; r < t.count; r++) {
    let a = sorted[t.start + r];
    let xrow = (a / p.topk) * p.hidden;
    var g = 0.0;
    var u = 0.0;
    for (var k = 0u; k < p.hidden; k += 2u) {
      let wg = w2(gbase + k);
      let wu = w2(ubase + k);
      let x0 = xn[xrow + k];
      let x1 = xn[xrow + k + 1u];
      g = fma(wg.y, x1, fma(wg.x, x0, g));
      u = fma(wu.y, x1, fma(wu.x, x0, u));
    }
    h[a * p.inter + j] = expert_act(g, u, t.expert, j);
  }
}
