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
//
// Speculative decoding with a draft model, sampled rows with ROW_Q_ROW != NO_Q (the processed
// distribution is softmax over the kept set):
//   draft runner (ROW_DRAFT_TOKEN == NO_Q): the row also writes its processed distribution q
//   into `probs` row ROW_Q_ROW; its token is the Gumbel-max sample, so the draft d ~ q.
//   target's verification row (ROW_DRAFT_TOKEN = d, q in `probs` row ROW_Q_ROW): accepts d
//   when u * q(d) < p(d) (probability min(1, p(d)/q(d))), else samples from max(p - q, 0)
//   (Gumbel-max over its log), which never yields d after a rejection. u and that noise come
//   from (seed, output index) like the plain draw, on streams of their own.
#include common
struct Params { vocab: u32, record_words: u32, mask_words: u32, max_top: u32, probs_stride: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<storage, read> prompt_mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> records: array<u32>;
// Draft distributions: rows of probs_stride floats (the draft model's vocabulary).
@group(0) @binding(6) var<storage, read_write> probs: array<f32>;

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

fn uniform01(stream: u32, i: u32) -> f32 {
  let h = mix(i ^ stream);
  return (f32(h >> 8u) + 0.5) / 16777216.0;
}

fn gumbel(stream: u32, i: u32) -> f32 {
  return -log(-log(uniform01(stream, i)));
}

// Salts of the verification row's own streams (acceptance draw, residual noise).
const ACCEPT_SALT: u32 = 0x27d4eb2fu;
const RESIDUAL_SALT: u32 = 0x85ebca6bu;

// q(i) of the draft distribution row starting at `base` (0 past the draft's vocabulary).
fn q_at(base: u32, i: u32) -> f32 {
  if (i >= p.probs_stride) { return 0.0; }
  return probs[base + i];
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
    let q_row = param(r, ROW_Q_ROW);
    let draft = param(r, ROW_DRAFT_TOKEN);
    let with_q = q_row != NO_Q;
    let qb = select(0u, q_row * p.probs_stride, with_q);
    // Normaliser of the processed distribution (only the rows that use q need it).
    var z = 1.0;
    if (with_q) {
      var zs = 0.0;
      for (var i = lid; i < V; i += WG) {
        let v = processed(row, i);
        if (key_of(v) >= lo) { zs += exp(v - pmax); }
      }
      z = reduce_sum(zs, lid);
    }
    if (with_q && draft == NO_Q) {
      for (var i = lid; i < min(V, p.probs_stride); i += WG) {
        let v = processed(row, i);
        probs[qb + i] = select(0.0, exp(v - pmax) / z, key_of(v) >= lo);
      }
    }
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
    if (with_q && draft < V) {
      // The residual max(p - q, 0), sampled by Gumbel-max over its log.
      let rstream = mix(stream ^ RESIDUAL_SALT);
      var rv = NEG_INF;
      var ri = 0xffffffffu;
      for (var i = lid; i < V; i += WG) {
        let v = processed(row, i);
        let pi = select(0.0, exp(v - pmax) / z, key_of(v) >= lo);
        let res = pi - q_at(qb, i);
        if (res > 0.0) {
          let s = log(res) + gumbel(rstream, i);
          if (s > rv) { rv = s; ri = i; }
        }
      }
      let residual = reduce_argmax(rv, ri, lid);
      let vd = processed(row, draft);
      let pd = select(0.0, exp(vd - pmax) / z, key_of(vd) >= lo);
      let u = uniform01(mix(stream ^ ACCEPT_SALT), 0u);
      if (u * q_at(qb, draft) < pd) {
        id = draft;
      } else if (residual != 0xffffffffu) {
        id = residual;
      }
      // (No residual mass: p = q up to rounding, where a rejection has probability ~0; the
      // plain sample stands.)
    }
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
