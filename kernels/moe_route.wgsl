// Mixture-of-experts router, one workgroup per token: the post-attention RMSNorm of the
// residual row (written to `xn` for the experts), every expert's logit (f32, the router
// weights [E, dim] f32), then on one invocation the top-k choice and its weights:
//   default: softmax over all E logits, the k largest, renormalized to sum 1 with NORM_TOPK
//            (Qwen3-MoE);
//   TOPK_SOFTMAX: logits + bias, the k largest, softmax over those k only (gpt-oss).
// Ties go to the lower expert index. Writes ids[t * K + s] and wts[t * K + s], s in 0..K.
// SHARED (Qwen3.5-MoE): the router's row E is the shared expert's gate; its logit stays out
// of the top-k and sgate[t] = sigmoid(logit) scales the shared expert in moe_combine.
#include common
struct Params { dim: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> router: array<f32>;
@group(0) @binding(5) var<storage, read_write> xn: array<f32>;
@group(0) @binding(6) var<storage, read_write> ids: array<u32>;
@group(0) @binding(7) var<storage, read_write> wts: array<f32>;
#if TOPK_SOFTMAX
@group(0) @binding(8) var<storage, read> router_bias: array<f32>;
#endif
#if SHARED
// Qwen routing only (never with TOPK_SOFTMAX, whose bias takes binding 8).
@group(0) @binding(8) var<storage, read_write> sgate: array<f32>;
const ROWS: u32 = {{E}}u + 1u;
#else
const ROWS: u32 = {{E}}u;
#endif

const WG: u32 = 64u;
const E: u32 = {{E}}u;
const K: u32 = {{TOPK}}u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> logits: array<f32, ROWS>;
#include row_rms

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * 65535u;
  let live = t < num_tokens();
  let base = select(0u, t, live) * p.dim;
  let inv = row_inv_rms(base, lid);
  if (live) {
    for (var i = lid; i < p.dim; i += WG) { xn[base + i] = x[base + i] * inv * gamma[i]; }
  }
  for (var e = lid; e < ROWS; e += WG) {
    var acc = 0.0;
    for (var i = 0u; i < p.dim; i++) { acc = fma(router[e * p.dim + i], x[base + i] * inv * gamma[i], acc); }
#if TOPK_SOFTMAX
    acc += router_bias[e];
#endif
    logits[e] = acc;
  }
  workgroupBarrier();
  if (lid != 0u || !live) { return; }
#if SHARED
  sgate[t] = 1.0 / (1.0 + exp(-logits[E]));
#endif
  var m = logits[0];
  for (var e = 1u; e < E; e++) { m = max(m, logits[e]); }
  var chosen: array<bool, E>;
  var top: array<u32, K>;
  for (var s = 0u; s < K; s++) {
    var best = E;
    for (var e = 0u; e < E; e++) {
      if (!chosen[e] && (best == E || logits[e] > logits[best])) { best = e; }
    }
    chosen[best] = true;
    top[s] = best;
  }
#if TOPK_SOFTMAX
  // softmax over the k chosen logits; top[0] holds their max.
  var sum = 0.0;
  for (var s = 0u; s < K; s++) { sum += exp(logits[top[s]] - logits[top[0]]); }
  for (var s = 0u; s < K; s++) {
    ids[t * K + s] = top[s];
    wts[t * K + s] = exp(logits[top[s]] - logits[top[0]]) / sum;
  }
#else
  var total = 0.0;
  for (var e = 0u; e < E; e++) { total += exp(logits[e] - m); }
  var picked = 0.0;
  for (var s = 0u; s < K; s++) { picked += exp(logits[top[s]] - m) / total; }
  for (var s = 0u; s < K; s++) {
    let w = exp(logits[top[s]] - m) / total;
    ids[t * K + s] = top[s];
#if NORM_TOPK
    wts[t * K + s] = w / picked;
#else
    wts[t * K + s] = w;
#endif
  }
#endif
}
