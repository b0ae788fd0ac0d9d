// The MTP head's input row (Qwen3.5 / Qwen3-Next, as vLLM's Qwen3_5MultiTokenPredictor):
// cat(norm_e(embed(token)), norm_h(hidden)), each half its own RMSNorm (gamma holds 1 + w),
// written as a 2 * dim row for the fc matmul. `x` holds the rows' embeddings (the embedding
// gather ran first); the hidden row is the target's stored row at slot hidden_src(t), or,
// with OWN_HIDDEN set, the MTP layer's own output row (a chained draft step).
#include common
struct Params { dim: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma_e: array<f32>;
@group(0) @binding(4) var<storage, read> gamma_h: array<f32>;
@group(0) @binding(5) var<storage, read> target_hidden: array<f32>;
@group(0) @binding(6) var<storage, read> own_hidden: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

const WG: u32 = 128u;
const OWN_HIDDEN: u32 = 0x80000000u;
var<workgroup> partial: array<f32, WG>;
#include row_rms

fn hidden_at(own: bool, i: u32) -> f32 {
  if (own) { return own_hidden[i]; }
  return target_hidden[i];
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * 65535u;
  let live = row < num_tokens();
  let t = select(0u, row, live);
  let base = t * p.dim;
  let inv_e = row_inv_rms(base, lid);
  let src = hidden_src(t);
  let own = (src & OWN_HIDDEN) != 0u;
  let hbase = (src & ~OWN_HIDDEN) * p.dim;
  // The hidden half's RMS, summed in row_inv_rms's order.
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let v = hidden_at(own, hbase + i);
    ss += v * v;
  }
  workgroupBarrier();
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  let inv_h = inverseSqrt(partial[0] / f32(p.dim) + p.eps);
  if (!live) { return; }
  let o = t * 2u * p.dim;
  for (var i = lid; i < p.dim; i += WG) {
    out[o + i] = x[base + i] * inv_e * gamma_e[i];
    out[o + p.dim + i] = hidden_at(own, hbase + i) * inv_h * gamma_h[i];
  }
}
