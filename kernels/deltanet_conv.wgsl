// Gated DeltaNet's causal depthwise conv1d (kernel CONV_K, no bias) and SiLU over the q|k|v
// channels of the in-projection rows. One invocation per (channel, sequence) walks that
// sequence's tokens in order, so a chunk of any length runs in one dispatch and the state
// needs no second pass: the last CONV_K - 1 inputs of each channel carry over in the
// sequence's state slot (zeros when its first token is at position 0: a fresh or recomputed
// sequence). out[t] = silu(sum_j w[c][j] * in[t - (CONV_K - 1) + j]).
#include common
struct Params { channels: u32, in_stride: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read_write> conv_state: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const K: u32 = {{CONV_K}}u;
const KEEP: u32 = {{CONV_K}}u - 1u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let s = gid.y;
  if (c >= p.channels || s >= num_seqs()) { return; }
  let first = query_start(s);
  let end = query_start(s + 1u);
  let base = (state_slot(s) * p.channels + c) * KEEP;
  let fresh = token_pos(first) == 0u;
  var win: array<f32, KEEP>;
  for (var j = 0u; j < KEEP; j++) { win[j] = select(conv_state[base + j], 0.0, fresh); }
  for (var t = first; t < end; t++) {
    let v = x[t * p.in_stride + c];
    var acc = 0.0;
    for (var j = 0u; j < KEEP; j++) { acc += w[c * K + j] * win[j]; }
    acc += w[c * K + KEEP] * v;
    out[t * p.channels + c] = acc / (1.0 + exp(-acc));
    for (var j = 0u; j + 1u < KEEP; j++) { win[j] = win[j + 1u]; }
    win[KEEP - 1u] = v;
  }
  for (var j = 0u; j < KEEP; j++) { conv_state[base + j] = win[j]; }
}
