// Split-K paged attention shaped for CPU adapters: lanes are keys.
//
// Grid (kv head, query tile, split). A query tile is TQ consecutive tokens of one sequence
// (TQ = 1: one decode or prefill token); its G * TQ queries share every K/V row the workgroup
// loads. Split s covers keys [s * split_len, (s + 1) * split_len), so one long sequence still
// spreads over every thread. The boundaries are absolute and the lane of key j is fixed
// ((j - s * split_len) % WG), so a token's result does not depend on the rest of the batch,
// on its query tile or on the split count of the step (empty splits add exact zeros).
//
// Each invocation walks its own keys (lane, lane + WG, ...) with an online softmax kept in
// private memory: q (pre-scaled) and the running max, sum and weighted value sum per query.
// On a CPU driver a workgroup is a SIMD loop over lanes, so private arrays are plain stack
// slots, while a workgroup-memory or storage read that differs per lane costs a loop of
// scalar loads: here the only such reads are the K and V rows themselves, each read once as
// full 16-byte words, and there are no barriers inside the key loop. At the end the lanes'
// partial softmaxes merge through workgroup memory (one barrier); a single split writes the
// normalised output, several write (max, sum, values) partials for attention_combine.
//
// Causal per query, sliding window, soft-capping; K/V read through the block table.
// KV_F16: the cache holds f16 (8 per 16-byte word), half the load instructions per key.
#include common
struct Params {
  nh: u32, nkv: u32, block_size: u32, q_stride: u32, window: u32, scale: f32, softcap: f32,
  max_splits: u32, split_len: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> query: array<vec4<f32>>;
#if KV_F16
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<u32>>;
#else
@group(0) @binding(3) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v_cache: array<vec4<f32>>;
#endif
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> part_acc: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read_write> info: array<u32>;
#if SINKS
// gpt-oss: a learned logit per head joins each softmax (its column is dropped).
@group(0) @binding(9) var<storage, read> sinks: array<f32>;
#endif

const G: u32 = {{GROUP}}u;
const HD: u32 = {{HEAD_DIM}}u;
const D4: u32 = HD / 4u;
const TQ: u32 = {{TQ}}u;
const QN: u32 = TQ * G;
const WG: u32 = {{WG}}u;
const NEG: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;

var<workgroup> sh_acc: array<vec4<f32>, WG * QN * D4>;
var<workgroup> sh_ml: array<vec2<f32>, WG * QN>;

fn window_lo(pos: u32) -> u32 {
  if (p.window > 0u && pos + 1u > p.window) { return pos + 1u - p.window; }
  return 0u;
}

// First 16-byte word of key j's row for kv head kvh (cache [block][kv head][slot][head dim]).
fn key_row(seq: u32, kvh: u32, j: u32) -> u32 {
  let row = (block_of(seq, j / p.block_size) * p.nkv + kvh) * p.block_size + j % p.block_size;
#if KV_F16
  return row * (D4 / 2u);
#else
  return row * D4;
#endif
}

@compute @workgroup_size({{WG}})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let kvh = wid.x;
  let tile = wid.y;
  let split = wid.z;
  let splits = nwg.z;
  // attention_combine reads the split count of this step.
  if (lid == 0u && kvh == 0u && tile == 0u && split == 0u) { info[0] = splits; }

  // The tile's tokens (every early return is uniform over the workgroup).
  var t0 = 0u;
  var nt = 0u;
#if TILED
  var base = 0u;
  for (var s = 0u; s < num_seqs(); s++) {
    let qs = query_start(s);
    let qe = query_start(s + 1u);
    let n = (qe - qs + TQ - 1u) / TQ;
    if (nt == 0u && tile < base + n) {
      t0 = qs + (tile - base) * TQ;
      nt = min(TQ, qe - t0);
    }
    base += n;
  }
  if (nt == 0u) { return; }
#else
  t0 = tile;
  nt = 1u;
  if (t0 >= num_tokens()) { return; }
#endif
  let seq = token_seq(t0);
  let hi = token_pos(t0 + nt - 1u) + 1u;
  let lo = window_lo(token_pos(t0));
  let s_lo = split * p.split_len;
  let s_hi = min(hi, s_lo + p.split_len);
  // Skip whole rounds of lanes before the window start (split_len % WG == 0 keeps key j on
  // lane j % WG); the keys left before it are masked below.
  let first = s_lo + (max(lo, s_lo) - s_lo) / WG * WG;

  var q: array<vec4<f32>, QN * D4>;
  var qpos: array<u32, TQ>;
  var qlo: array<u32, TQ>;
  for (var ti = 0u; ti < TQ; ti++) {
    let t = t0 + min(ti, nt - 1u);
    let pos = token_pos(t);
    qpos[ti] = pos;
    qlo[ti] = select(NONE, window_lo(pos), ti < nt);
    for (var g = 0u; g < G; g++) {
      let qb = (t * p.q_stride + (kvh * G + g) * HD) / 4u;
      for (var i = 0u; i < D4; i++) { q[(ti * G + g) * D4 + i] = query[qb + i] * p.scale; }
    }
  }
  var m: array<f32, QN>;
  var l: array<f32, QN>;
  var acc: array<vec4<f32>, QN * D4>;
  for (var qi = 0u; qi < QN; qi++) { m[qi] = NEG; }

  for (var j = first + lid; j < s_hi; j += WG) {
    let kb = key_row(seq, kvh, j);
    // Explicit zeros: naga does not re-zero an uninitialised var declared inside a loop.
    var s = array<f32, QN>();
#if KV_F16
    for (var i = 0u; i < D4; i += 2u) {
      let kw = k_cache[kb + i / 2u];
      let k0 = vec4<f32>(unpack2x16float(kw.x), unpack2x16float(kw.y));
      let k1 = vec4<f32>(unpack2x16float(kw.z), unpack2x16float(kw.w));
      for (var qi = 0u; qi < QN; qi++) { s[qi] += dot(q[qi * D4 + i], k0) + dot(q[qi * D4 + i + 1u], k1); }
    }
#else
    for (var i = 0u; i < D4; i++) {
      let kv = k_cache[kb + i];
      for (var qi = 0u; qi < QN; qi++) { s[qi] += dot(q[qi * D4 + i], kv); }
    }
#endif
    var corr: array<f32, QN>;
    var pw: array<f32, QN>;
    for (var qi = 0u; qi < QN; qi++) {
      let ti = qi / G;
      var sc = s[qi];
      if (p.softcap > 0.0) { sc = p.softcap * tanh(sc / p.softcap); }
      let ok = j >= qlo[ti] && j <= qpos[ti];
      let sv = select(NEG, sc, ok);
      let mn = max(m[qi], sv);
      corr[qi] = exp(m[qi] - mn);
      pw[qi] = select(0.0, exp(sv - mn), ok);
      l[qi] = l[qi] * corr[qi] + pw[qi];
      m[qi] = mn;
    }
#if KV_F16
    for (var i = 0u; i < D4; i += 2u) {
      let vw = v_cache[kb + i / 2u];
      let v0 = vec4<f32>(unpack2x16float(vw.x), unpack2x16float(vw.y));
      let v1 = vec4<f32>(unpack2x16float(vw.z), unpack2x16float(vw.w));
      for (var qi = 0u; qi < QN; qi++) {
        acc[qi * D4 + i] = acc[qi * D4 + i] * corr[qi] + pw[qi] * v0;
        acc[qi * D4 + i + 1u] = acc[qi * D4 + i + 1u] * corr[qi] + pw[qi] * v1;
      }
    }
#else
    for (var i = 0u; i < D4; i++) {
      let vv = v_cache[kb + i];
      for (var qi = 0u; qi < QN; qi++) {
        acc[qi * D4 + i] = acc[qi * D4 + i] * corr[qi] + pw[qi] * vv;
      }
    }
#endif
  }

  // Merge the lanes' partial softmaxes.
  for (var qi = 0u; qi < QN; qi++) {
    sh_ml[lid * QN + qi] = vec2<f32>(m[qi], l[qi]);
    for (var i = 0u; i < D4; i++) { sh_acc[(lid * QN + qi) * D4 + i] = acc[qi * D4 + i]; }
  }
  workgroupBarrier();
  for (var e = lid; e < QN * D4; e += WG) {
    let qi = e / D4;
    let i = e % D4;
    let ti = qi / G;
    if (ti < nt) {
      var mx = NEG;
      for (var ln = 0u; ln < WG; ln++) { mx = max(mx, sh_ml[ln * QN + qi].x); }
      var sum = 0.0;
      var a = vec4<f32>(0.0);
      for (var ln = 0u; ln < WG; ln++) {
        let ml = sh_ml[ln * QN + qi];
        let f = exp(ml.x - mx);
        sum += ml.y * f;
        a += sh_acc[(ln * QN + qi) * D4 + i] * f;
      }
      let row = (t0 + ti) * p.nh + kvh * G + qi % G;
      if (splits == 1u) {
#if SINKS
        let sink = sinks[kvh * G + qi % G];
        let top = max(mx, sink);
        let scaled = sum * exp(mx - top);
        out[row * D4 + i] = a * exp(mx - top) / (scaled + exp(sink - top));
#else
        out[row * D4 + i] = select(vec4<f32>(0.0), a / sum, sum > 0.0);
#endif
      } else {
        let pi = row * p.max_splits + split;
        part_acc[pi * D4 + i] = a;
        if (i == 0u) { part_ml[pi] = vec2<f32>(mx, sum); }
      }
    }
  }
}
