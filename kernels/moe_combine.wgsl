// Adds each token's K weighted expert outputs into the residual stream, in slot order (so a
// token's sum does not depend on the batch): out[t, c] += sum_s y[t * K + s, c].
// SHARED (Qwen3.5-MoE): plus the shared expert's row scaled by its gate, after the k experts,
// as transformers adds routed + sigmoid(gate) * shared before the residual.
#include common
struct Params { hidden: u32, topk: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#if SHARED
@group(0) @binding(4) var<storage, read> shared_y: array<f32>;
@group(0) @binding(5) var<storage, read> sgate: array<f32>;
#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.y + wid.z * 65535u;
  let c = wid.x * 64u + lid;
  if (t >= num_tokens() || c >= p.hidden) { return; }
  var sum = 0.0;
  for (var s = 0u; s < p.topk; s++) { sum += y[(t * p.topk + s) * p.hidden + c]; }
#if SHARED
  sum += sgate[t] * shared_y[t * p.hidden + c];
#endif
  out[t * p.hidden + c] += sum;
}
