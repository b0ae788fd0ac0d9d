// The gate|up kernels' epilogue (moe_gate_up, moe_gate_up_c8): output j of expert `expert`
// from its gate and up sums, SwiGLU silu(g) * u, or GPTOSS's biases and clamped SwiGLU
//   (clamp(up, -LIMIT, LIMIT) + 1) * g * sigmoid(ALPHA * g), g = min(gate, LIMIT).
#if GPTOSS
@group(0) @binding(7) var<storage, read> w_bias: array<f32>;
const LIMIT: f32 = {{LIMIT}};
const ALPHA: f32 = {{ALPHA}};
#endif
fn expert_act(g: f32, u: f32, expert: u32, j: u32) -> f32 {
#if GPTOSS
  let gg = min(g + w_bias[expert * 2u * p.inter + 2u * j], LIMIT);
  let uu = clamp(u + w_bias[expert * 2u * p.inter + 2u * j + 1u], -LIMIT, LIMIT);
  return (uu + 1.0) * (gg / (1.0 + exp(-ALPHA * gg)));
#else
  return g / (1.0 + exp(-g)) * u;
#endif
}
