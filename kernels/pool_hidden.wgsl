// Pooled final hidden states for embedding requests, one workgroup per pooled row r: the sum
// over the row's tokens [pool_first(r), + pool_count(r)) of the final RMSNorm of the residual
// stream, x / rms(x) * gamma (the hidden state a model returns before its LM head), f32
// throughout. A last-token row has one token; a mean-pooled chunk sums all of its tokens (the
// CPU adds the chunks of a long input and divides by its length).
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
  let r = wid.x;
  let first = pool_first(r);
  let count = pool_count(r);
  let row = r * p.dim;
  // Each invocation owns the same columns of `out` throughout: no two write one word.
  for (var i = lid; i < p.dim; i += WG) { out[row + i] = 0.0; }
  for (var k = 0u; k < count; k++) {
    let base = (first + k) * p.dim;
    let inv = row_inv_rms(base, lid);
    for (var i = lid; i < p.dim; i += WG) {
      out[row + i] += x[base + i] * inv * gamma[i];
    }
    // Everyone has read partial[0] before the next token overwrites it.
    workgroupBarrier();
  }
}
