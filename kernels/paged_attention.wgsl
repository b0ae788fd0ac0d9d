// Paged attention over a ragged batch, prefill and decode alike: one workgroup per
// (kv head, query token) serves the GROUP query heads sharing that kv head, so each K/V row
// is read once per group. Keys run from the window start to the token's own position
// (causal), read through the sequence's block table; softmax in f32.
//
// Two passes over the keys, both parallel over keys: the first finds each head's maximum
// score, the second turns scores into exp(score - max) and accumulates values. Every
// invocation works on its own keys until a tile's probabilities are shared for the value
// sum, so there is no serial softmax step and only two barriers per tile of 64 keys (barriers
// are what a CPU driver such as lavapipe pays most for). Scores are recomputed in the second
// pass: HEAD_DIM multiply-adds per key and head, cheaper than keeping them.
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
// Per-invocation partial maxima and sums, then each head's total.
var<workgroup> part: array<f32, G * TILE>;
var<workgroup> head_max: array<f32, G>;
var<workgroup> head_sum: array<f32, G>;

fn key_base(seq: u32, kvh: u32, j: u32) -> u32 {
  let block = block_of(seq, j / p.block_size);
  return ((block * p.nkv + kvh) * p.block_size + j % p.block_size) * HD;
}

fn score(g: u32, kb: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < HD; d++) { s += q[g * HD + d] * k_cache[kb + d]; }
  if (p.softcap > 0.0) { s = p.softcap * tanh(s / p.softcap); }
  return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvh = wid.x;
  let t = wid.y + wid.z * 65535u;
  if (t >= num_tokens()) { return; }
  let seq = token_seq(t);
  let hi = token_pos(t) + 1u;
  var lo = 0u;
  if (p.window > 0u && hi > p.window) { lo = hi - p.window; }

  for (var idx = lid; idx < G * HD; idx += TILE) {
    let head = kvh * G + idx / HD;
    q[idx] = qkv[t * p.qkv_stride + head * HD + idx % HD] * p.scale;
    acc[idx] = 0.0;
  }
  workgroupBarrier();

  // Pass 1: each head's maximum score.
  var local_max: array<f32, G>;
  for (var g = 0u; g < G; g++) { local_max[g] = NEG; }
  for (var j = lo + lid; j < hi; j += TILE) {
    let kb = key_base(seq, kvh, j);
    for (var g = 0u; g < G; g++) { local_max[g] = max(local_max[g], score(g, kb)); }
  }
  for (var g = 0u; g < G; g++) { part[g * TILE + lid] = local_max[g]; }
  workgroupBarrier();
  if (lid < G) {
    var m = NEG;
    for (var i = 0u; i < TILE; i++) { m = max(m, part[lid * TILE + i]); }
    head_max[lid] = m;
  }
  workgroupBarrier();

  // Pass 2: probabilities of a tile of keys, then its share of the value sum.
  var local_sum: array<f32, G>;
  for (var g = 0u; g < G; g++) { local_sum[g] = 0.0; }
  for (var start = lo; start < hi; start += TILE) {
    let n = min(TILE, hi - start);
    if (lid < n) {
      let kb = key_base(seq, kvh, start + lid);
      kv_base[lid] = kb;
      for (var g = 0u; g < G; g++) {
        let e = exp(score(g, kb) - head_max[g]);
        probs[g * TILE + lid] = e;
        local_sum[g] += e;
      }
    }
    workgroupBarrier();
    for (var idx = lid; idx < G * HD; idx += TILE) {
      let g = idx / HD;
      let d = idx % HD;
      var a = acc[idx];
      for (var jj = 0u; jj < n; jj++) { a += probs[g * TILE + jj] * v_cache[kv_base[jj] + d]; }
      acc[idx] = a;
    }
    workgroupBarrier();
  }

  for (var g = 0u; g < G; g++) { part[g * TILE + lid] = local_sum[g]; }
  workgroupBarrier();
  if (lid < G) {
    var s = 0.0;
    for (var i = 0u; i < TILE; i++) { s += part[lid * TILE + i]; }
    head_sum[lid] = s;
  }
  workgroupBarrier();
  for (var idx = lid; idx < G * HD; idx += TILE) {
    let g = idx / HD;
    out[t * p.nh * HD + (kvh * G + g) * HD + idx % HD] = acc[idx] / head_sum[g];
  }
}
