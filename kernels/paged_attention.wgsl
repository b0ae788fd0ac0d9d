// Paged attention over a ragged batch, prefill and decode alike: one workgroup per
// (kv head, query token) serves the GROUP query heads sharing that kv head, so each K/V row
// is read once per group. Keys run from the window start to the token's own position
// (causal), read through the sequence's block table; online softmax in f32.
#include common
struct Params {
  nh: u32, nkv: u32, block_size: u32, qkv_stride: u32, window: u32, scale: f32, softcap: f32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const G: u32 = {{GROUP}}u;
const HD: u32 = {{HEAD_DIM}}u;
const TILE: u32 = 64u;
const NEG: f32 = -3.0e38;

var<workgroup> q: array<f32, G * HD>;
var<workgroup> acc: array<f32, G * HD>;
var<workgroup> probs: array<f32, G * TILE>;
var<workgroup> kv_base: array<u32, TILE>;
var<workgroup> run_max: array<f32, G>;
var<workgroup> run_sum: array<f32, G>;
var<workgroup> rescale: array<f32, G>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvh = wid.x;
  let t = wid.y + wid.z * 65535u;
  if (t >= num_tokens()) { return; }
  let seq = token_seq(t);
  let hi = token_pos(t) + 1u;
  var lo = 0u;
  if (p.window > 0u && hi > p.window) { lo = hi - p.window; }

  for (var idx = lid; idx < G * HD; idx += 64u) {
    let head = kvh * G + idx / HD;
    q[idx] = qkv[t * p.qkv_stride + head * HD + idx % HD] * p.scale;
    acc[idx] = 0.0;
  }
  if (lid < G) {
    run_max[lid] = NEG;
    run_sum[lid] = 0.0;
  }
  workgroupBarrier();

  for (var start = lo; start < hi; start += TILE) {
    let n = min(TILE, hi - start);
    if (lid < n) {
      let j = start + lid;
      let block = block_of(seq, j / p.block_size);
      let kb = ((block * p.nkv + kvh) * p.block_size + j % p.block_size) * HD;
      kv_base[lid] = kb;
      for (var g = 0u; g < G; g++) {
        var s = 0.0;
        for (var d = 0u; d < HD; d++) { s += q[g * HD + d] * k_cache[kb + d]; }
        if (p.softcap > 0.0) { s = p.softcap * tanh(s / p.softcap); }
        probs[g * TILE + lid] = s;
      }
    }
    workgroupBarrier();
    if (lid < G) {
      var tile_max = NEG;
      for (var jj = 0u; jj < n; jj++) { tile_max = max(tile_max, probs[lid * TILE + jj]); }
      let new_max = max(run_max[lid], tile_max);
      let alpha = exp(run_max[lid] - new_max);
      var sum = 0.0;
      for (var jj = 0u; jj < n; jj++) {
        let e = exp(probs[lid * TILE + jj] - new_max);
        probs[lid * TILE + jj] = e;
        sum += e;
      }
      run_sum[lid] = run_sum[lid] * alpha + sum;
      run_max[lid] = new_max;
      rescale[lid] = alpha;
    }
    workgroupBarrier();
    for (var idx = lid; idx < G * HD; idx += 64u) {
      let g = idx / HD;
      let d = idx % HD;
      var a = acc[idx] * rescale[g];
      for (var jj = 0u; jj < n; jj++) { a += probs[g * TILE + jj] * v_cache[kv_base[jj] + d]; }
      acc[idx] = a;
    }
    workgroupBarrier();
  }

  for (var idx = lid; idx < G * HD; idx += 64u) {
    let g = idx / HD;
    out[t * p.nh * HD + (kvh * G + g) * HD + idx % HD] = acc[idx] / run_sum[g];
  }
}
