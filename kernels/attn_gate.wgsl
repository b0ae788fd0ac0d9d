// Qwen3.5's gated attention: the attention output times sigmoid(gate), elementwise, where the
// gate is the second half of each head's q_proj output (stored after q|k|v in the qkv rows,
// see gatedQkvColumns). One invocation per value.
#include common
struct Params { dim: u32, gate_stride: u32, gate_off: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> gate: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x * 64u + lid;
  let t = wid.y + wid.z * 65535u;
  if (i >= p.dim || t >= num_tokens()) { return; }
  let g = gate[t * p.gate_stride + p.gate_off + i];
  out[t * p.dim + i] *= 1.0 / (1.0 + exp(-g));
}
