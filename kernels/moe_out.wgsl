// The down kernels' epilogue (moe_down, moe_down_c8): output column `col` of expert `expert`
// from its sum, plus the expert's bias for GPTOSS, times the routing weight `wt`.
#if GPTOSS
@group(0) @binding(8) var<storage, read> w_bias: array<f32>;
#endif
fn expert_out(acc: f32, expert: u32, col: u32, wt: f32) -> f32 {
#if GPTOSS
  return (acc + w_bias[expert * p.hidden + col]) * wt;
#else
  return acc * wt;
#endif
}
