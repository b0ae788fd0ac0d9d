// RMSNorm of one row per workgroup, f32 throughout: y = x / rms(x) * (offset + w).
// ADD accumulates into the output (Gemma-2's post-norms feed the residual directly);
// GATHER reads the token row of each logit row (final norm only where logits are needed).
#include common
struct Params { dim: u32, eps: f32, offset: f32, rows_kind: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * 65535u;
  let rows = rows_of(p.rows_kind);
#if GATHER
  let in_row = select(0u, logit_row_token(row), row < rows);
#else
  let in_row = row;
#endif
  let base = in_row * p.dim;
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (row >= rows) { return; }
  let inv = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
  let obase = row * p.dim;
  for (var i = lid; i < p.dim; i += WG) {
    let y = x[base + i] * inv * (p.offset + w[i]);
#if ADD
    out[obase + i] += y;
#else
    out[obase + i] = y;
#endif
  }
}
