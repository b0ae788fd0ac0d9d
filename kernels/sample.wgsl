// Samples one token per logit row on the GPU, one workgroup per row, and writes an output
// record (layout RECORD_*: id, logprob, then (top id, top logprob) x max_top). Only records
// cross back to the CPU.
//
// Per row (parameters from the step metadata, sampling_word(r, ROW_*)):
//   processed logit = penalised(raw) / temperature, where penalties use the sequence's
//   prompt mask and output counts (repetition: HF rule over prompt and output tokens;
//   presence/frequency: OpenAI rule over output tokens only).
//   temperature 0: argmax (lowest index on ties, as torch.argmax).
//   otherwise: keep tokens above the min-p, top-k and top-p thresholds (found by bisection
//   on order-preserving u32 keys, so exact and free of sorting), then Gumbel-max: argmax of
//   logit + Gumbel noise is an exact sample of softmax over the kept set. The noise of token
//   i depends only on (seed, output index, i), so a seeded request samples the same tokens
//   whatever else shares its batch.
// Logprobs are of the raw distribution (log_softmax of the model's logits).
#include common
struct Params { vocab: u32, record_words: u32, mask_words: u32, max_top: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<storage, read> prompt_mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> records: array<u32>;

const WG: u32 = 256u;
const NEG_INF: f32 = -3.4028234e38;
var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;

fn param(r: u32, field: u32) -> u32 { return sampling_word(r, field); }
fn param_f(r: u32, field: u32) -> f32 { return bitcast<f32>(sampling_word(r, field)); }

// Order-preserving map from f32 to u32 (larger float, larger key).
fn key_of(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn mix(x: u32) -> u32 {
  let v = x * 747796405u + 2891336453u;
  let w = ((v >> ((v >> 28u) + 4u)) ^ v) * 277803737u;
  return (w >> 22u) ^ w;
}

fn gumbel(stream: u32, i: u32) -> f32 {
  let h = mix(i ^ stream);
  let u = (f32(h >> 8u) + 0.5) / 16777216.0;
  return -log(-log(u));
}

// Workgroup reductions. Every invocation calls them (uniform control flow) and gets the result.
fn reduce_max(v: f32, lid: u32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_f[lid] = max(red_f[lid], red_f[lid + s]); }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_f[lid] = red_f[lid] + red_f[lid + s]; }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn reduce_count(v: u32, lid: u32) -> u32 {
  red_u[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red_u[lid] = red_u[lid] + red_u[lid + s]; }
    workgroupBarrier();
  }
  let r = red_u[0];
  workgroupBarrier();
  return r;
}

// Largest value, lowest index among equals; returns the index (0xffffffff if none valid).
fn reduce_argmax(v: f32, i: u32, lid: u32) -> u32 {
  red_f[lid] = v;
  red_u[lid] = i;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = red_f[lid + s];
      let oi = red_u[lid + s];
      if (ov > red_f[lid] || (ov == red_f[lid] && oi < red_u[lid])) {
        red_f[lid] = ov;
        red_u[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  let r = red_u[0];
  workgroupBarrier();
  return r;
}

struct Row {
  base: u32,
  slot: u32,
  inv_t: f32,
  rep: f32,
  presence: f32,
  frequency: f32,
  penalise: bool,
}

fn processed(row: Row, i: u32) -> f32 {
  var v = logits[row.base + i];
  if (row.penalise) {
    let c = counts[row.slot * p.vocab + i];
    let in_prompt = ((prompt_mask[row.slot * p.mask_words + i / 32u] >> (i % 32u)) & 1u) != 0u;
    if (row.rep != 1.0 && (c > 0u || in_prompt)) { v = select(v * row.rep, v / row.rep, v > 0.0); }
    v = v - row.frequency * f32(c) - select(0.0, row.presence, c > 0u);
  }
  return v * row.inv_t;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x;
  if (r >= num_logit_rows()) { return; }
  let V = p.vocab;
  let temperature = param_f(r, ROW_TEMPERATURE);
  let top_k = param(r, ROW_TOP_K);
  let top_p = param_f(r, ROW_TOP_P);
  let min_p = param_f(r, ROW_MIN_P);
  let seed = param(r, ROW_SEED);
  let out_index = param(r, ROW_OUTPUT_INDEX);
  let top_n = min(param(r, ROW_TOP_LOGPROBS), p.max_top);
  let want_logprobs = param(r, ROW_LOGPROBS) != 0u;
  var row: Row;
  row.base = r * V;
  row.slot = param(r, ROW_SEQ_SLOT);
  row.rep = param_f(r, ROW_REPETITION_PENALTY);
  row.presence = param_f(r, ROW_PRESENCE_PENALTY);
  row.frequency = param_f(r, ROW_FREQUENCY_PENALTY);
  row.penalise = row.rep != 1.0 || row.presence != 0.0 || row.frequency != 0.0;
  let greedy = temperature <= 0.0;
  row.inv_t = select(1.0 / temperature, 1.0, greedy);

  var id = 0u;
  if (greedy) {
    var bv = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = lid; i < V; i += WG) {
      let v = processed(row, i);
      if (v > bv) { bv = v; bi = i; }
    }
    id = reduce_argmax(bv, bi, lid);
  } else {
    var lm = NEG_INF;
    for (var i = lid; i < V; i += WG) { lm = max(lm, processed(row, i)); }
    let pmax = reduce_max(lm, lid);
    var lo = 0u;
    let hi_key = key_of(pmax);
    if (min_p > 0.0) { lo = key_of(pmax + log(min_p)); }
    if (top_k > 0u && top_k < V) {
      var hi = hi_key;
      for (var it = 0u; it < 32u; it++) {
        let d = hi - min(lo, hi);
        let mid = lo + (d >> 1u) + (d & 1u);
        var c = 0u;
        for (var i = lid; i < V; i += WG) { c += u32(key_of(processed(row, i)) >= mid); }
        let n = reduce_count(c, lid);
        if (n >= top_k) { lo = mid; } else if (mid > 0u) { hi = mid - 1u; }
      }
    }
    if (top_p < 1.0) {
      var z = 0.0;
      for (var i = lid; i < V; i += WG) {
        let v = processed(row, i);
        if (key_of(v) >= lo) { z += exp(v - pmax); }
      }
      let goal = top_p * reduce_sum(z, lid);
      var hi = hi_key;
      for (var it = 0u; it < 32u; it++) {
        let d = hi - min(lo, hi);
        let mid = lo + (d >> 1u) + (d & 1u);
        var m = 0.0;
        for (var i = lid; i < V; i += WG) {
          let v = processed(row, i);
          if (key_of(v) >= mid) { m += exp(v - pmax); }
        }
        let mass = reduce_sum(m, lid);
        if (mass >= goal) { lo = mid; } else if (mid > 0u) { hi = mid - 1u; }
      }
    }
    let stream = mix(seed ^ mix(out_index + 0x9e3779b9u));
    var bv = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = lid; i < V; i += WG) {
      let v = processed(row, i);
      if (key_of(v) >= lo) {
        let s = v + gumbel(stream, i);
        if (s > bv) { bv = s; bi = i; }
      }
    }
    id = reduce_argmax(bv, bi, lid);
  }
  id = min(id, V - 1u);

  // Raw log-softmax statistics, only when logprobs are asked for.
  var lse = 0.0;
  if (want_logprobs) {
    var lm = NEG_INF;
    for (var i = lid; i < V; i += WG) { lm = max(lm, logits[row.base + i]); }
    let raw_max = reduce_max(lm, lid);
    var s = 0.0;
    for (var i = lid; i < V; i += WG) { s += exp(logits[row.base + i] - raw_max); }
    lse = raw_max + log(reduce_sum(s, lid));
  }
  let rec = (output_record_base() + r) * p.record_words;
  if (lid == 0u) {
    records[rec + RECORD_ID] = id;
    records[rec + RECORD_LOGPROB] = bitcast<u32>(select(0.0, logits[row.base + id] - lse, want_logprobs));
    counts[row.slot * V + id] += 1u;
  }
  // Top alternatives: repeatedly the best (value, index) strictly after the previous one.
  var pv = 3.4028234e38;
  var pi = 0u;
  for (var j = 0u; j < top_n; j++) {
    var bv = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = lid; i < V; i += WG) {
      let v = logits[row.base + i];
      let after = j == 0u || v < pv || (v == pv && i > pi);
      if (after && (v > bv || bi == 0xffffffffu)) { bv = v; bi = i; }
    }
    let best = reduce_argmax(bv, bi, lid);
    pi = min(best, V - 1u);
    pv = logits[row.base + pi];
    if (lid == 0u) {
      records[rec + RECORD_TOP + 2u * j] = pi;
      records[rec + RECORD_TOP + 2u * j + 1u] = bitcast<u32>(pv - lse);
    }
  }
}
