// Greedy sampling on the GPU: the index of the largest logit of each row (lowest index on
// ties, as torch.argmax), so only ids cross back to the CPU.
#include common
struct Params { cols: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

const WG: u32 = 256u;
var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x;
  let base = r * p.cols;
  var bv = -3.4e38;
  var bi = 0xffffffffu;
  if (r < num_logit_rows()) {
    for (var i = lid; i < p.cols; i += WG) {
      let v = logits[base + i];
      if (v > bv) { bv = v; bi = i; }
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = best_v[lid + s];
      let oi = best_i[lid + s];
      if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u && r < num_logit_rows()) { ids[r] = best_i[0]; }
}
