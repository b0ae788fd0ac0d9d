// Merges the per-split partial softmaxes of attention_lanes (flash-decoding's second pass):
// out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s with M the largest split maximum.
// One workgroup per token; the split count is what the attention dispatch wrote to info[0].
#include common
struct Params {
  nh: u32, nkv: u32, block_size: u32, q_stride: u32, window: u32, scale: f32, softcap: f32,
  max_splits: u32, split_len: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> part_acc: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> part_ml: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
#if SINKS
// gpt-oss: a learned logit per head joins the softmax (its column is dropped).
@group(0) @binding(6) var<storage, read> sinks: array<f32>;
#endif

const D4: u32 = {{HEAD_DIM}}u / 4u;
const NEG: f32 = -3.0e38;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * 65535u;
  if (t >= num_tokens()) { return; }
  let splits = min(info[0], p.max_splits);
  for (var e = lid; e < p.nh * D4; e += 64u) {
    let h = e / D4;
    let i = e % D4;
    let base = (t * p.nh + h) * p.max_splits;
    var mx = NEG;
    for (var s = 0u; s < splits; s++) { mx = max(mx, part_ml[base + s].x); }
    var sum = 0.0;
    var a = vec4<f32>(0.0);
    for (var s = 0u; s < splits; s++) {
      let ml = part_ml[base + s];
      let f = exp(ml.x - mx);
      sum += ml.y * f;
      a += part_acc[(base + s) * D4 + i] * f;
    }
#if SINKS
    let top = max(mx, sinks[h]);
    out[(t * p.nh + h) * D4 + i] = a * exp(mx - top) / (sum * exp(mx - top) + exp(sinks[h] - top));
#else
    out[(t * p.nh + h) * D4 + i] = select(vec4<f32>(0.0), a / sum, sum > 0.0);
#endif
  }
}
