// The reference attention, deliberately plain: materialise every score, softmax each row,
// then weight the values. Three entry points share this file via PHASE. Scores live in a
// scratch buffer of [tokens, heads, max_context]; queries are rows of q_stride floats (heads
// of head_dim); K/V are read through the block table from an f32 or f16 (KV_F16) cache.
#include common
struct Params {
  nh: u32, nkv: u32, head_dim: u32, block_size: u32, q_stride: u32, window: u32,
  scale: f32, softcap: f32, max_context: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> query: array<f32>;
#if KV_F16
@group(0) @binding(3) var<storage, read> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read> v_cache: array<u32>;
fn k_at(i: u32) -> f32 { return unpack2x16float(k_cache[i >> 1u])[i & 1u]; }
fn v_at(i: u32) -> f32 { return unpack2x16float(v_cache[i >> 1u])[i & 1u]; }
#else
@group(0) @binding(3) var<storage, read> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read> v_cache: array<f32>;
fn k_at(i: u32) -> f32 { return k_cache[i]; }
fn v_at(i: u32) -> f32 { return v_cache[i]; }
#endif
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
#if SINKS
// gpt-oss: a learned logit per head joins each softmax (its column is dropped).
@group(0) @binding(7) var<storage, read> sinks: array<f32>;
#endif

fn cache_row(t: u32, j: u32, kvh: u32) -> u32 {
  let block = block_of(token_seq(t), j / p.block_size);
  return ((block * p.nkv + kvh) * p.block_size + j % p.block_size) * p.head_dim;
}

fn first_key(t: u32) -> u32 {
  let ctx = token_pos(t) + 1u;
  if (p.window > 0u && ctx > p.window) { return ctx - p.window; }
  return 0u;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let h = gid.y;
  let t = gid.z;
  if (t >= num_tokens() || h >= p.nh) { return; }
  let kvh = h / (p.nh / p.nkv);
  let ctx = token_pos(t) + 1u;
  let row = (t * p.nh + h) * p.max_context;
#if PHASE_SCORES
  let j = gid.x;
  if (j >= ctx) { return; }
  var s = 0.0;
  let kb = cache_row(t, j, kvh);
  for (var d = 0u; d < p.head_dim; d++) {
    s += query[t * p.q_stride + h * p.head_dim + d] * k_at(kb + d);
  }
  s *= p.scale;
  if (p.softcap > 0.0) { s = p.softcap * tanh(s / p.softcap); }
  if (j < first_key(t)) { s = -3.0e38; }
  scores[row + j] = s;
#endif
#if PHASE_SOFTMAX
  if (gid.x != 0u) { return; }
  var mx = -3.0e38;
  for (var j = 0u; j < ctx; j++) { mx = max(mx, scores[row + j]); }
  var sum = 0.0;
#if SINKS
  mx = max(mx, sinks[h]);
  sum = exp(sinks[h] - mx);
#endif
  for (var j = 0u; j < ctx; j++) {
    let e = exp(scores[row + j] - mx);
    scores[row + j] = e;
    sum += e;
  }
  for (var j = 0u; j < ctx; j++) { scores[row + j] /= sum; }
#endif
#if PHASE_VALUES
  let d = gid.x;
  if (d >= p.head_dim) { return; }
  var a = 0.0;
  for (var j = 0u; j < ctx; j++) { a += scores[row + j] * v_at(cache_row(t, j, kvh) + d); }
  out[t * p.nh * p.head_dim + h * p.head_dim + d] = a;
#endif
}
