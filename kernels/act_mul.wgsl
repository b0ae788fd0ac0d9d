// Gated MLP activation: out[t, i] = act(gate[t, i]) * up[t, i], gate and up side by side in
// one row of 2 * inter (gate_proj and up_proj are fused into one matmul at load).
#include common
struct Params { inter: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> gu: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn act(g: f32) -> f32 {
#if GELU_TANH
  // 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), tanh clamped against overflow.
  let inner = clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), -15.0, 15.0);
  return 0.5 * g * (1.0 + tanh(inner));
#else
  return g / (1.0 + exp(-g));
#endif
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let t = gid.y + gid.z * 65535u;
  if (i >= p.inter || t >= num_tokens()) { return; }
  let g = gu[t * 2u * p.inter + i];
  let u = gu[t * 2u * p.inter + p.inter + i];
  out[t * p.inter + i] = act(g) * u;
}
