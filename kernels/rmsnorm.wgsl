// RMSNorm of one row per workgroup, f32 throughout, added into the output:
// out += x / rms(x) * gamma (gamma holds the norm's offset + weight). Only Gemma-2's
// post-norms run as their own dispatch (they need the whole row of a matmul's output and feed
// the residual directly); every other norm is folded into the matmul that follows it.
// AT_SLOT (MTP speculation): the row is stored, not added, at the token's KV slot (one row of
// `dim` floats per slot): the target's final-normed hidden states the MTP head drafts from,
// and the head's own output rows its next chained step reads. Indexed like the KV cache, so a
// rejected position's row is overwritten when its slot is written again, as its K/V are.
#include common
struct Params { dim: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 128u;
var<workgroup> partial: array<f32, WG>;
#include row_rms

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * 65535u;
  let live = row < num_tokens();
  let base = select(0u, row, live) * p.dim;
  let inv = row_inv_rms(base, lid);
  if (!live) { return; }
#if AT_SLOT
  let slot = token_slot(row);
  if (slot == NO_SLOT) { return; }
  for (var i = lid; i < p.dim; i += WG) {
    out[slot * p.dim + i] = x[base + i] * inv * gamma[i];
  }
#else
  for (var i = lid; i < p.dim; i += WG) {
    out[base + i] += x[base + i] * inv * gamma[i];
  }
#endif
}
