// The gated delta rule and gated RMSNorm of a Gated DeltaNet layer. One workgroup per (value
// head, sequence), invocation j owning column j of the head's DK x DV state in registers. Per
// token, with q, k the key head of this value head (GQA: with value heads grouped by key head,
// as Hugging Face stores them, head h reads key head h / (nv / nk); tiled, as llama.cpp's GGUF
// files store them, h % nk):
//   q = l2norm(q) / sqrt(DK), k = l2norm(k), beta = sigmoid(b),
//   decay = exp(-exp(A_log) * softplus(a + dt_bias)),
//   S *= decay; u = S^T k; S += k ((v - u) * beta)^T; o = S^T q,
//   out = rmsnorm(o) * w * silu(z)   (over the head's DV values, plain w).
// The default is an in-kernel sequential scan over the sequence's tokens of the step (a
// decode is one token, a prefill chunk many). CHUNKED adds the chunkwise (WY) form for
// sequences bringing more than one token (see chunked_rule); a one-token sequence takes the
// scan in both variants, so a decode row's bits never depend on what else is in the step.
// The state lives in the sequence's slot (f32 [slot][head][DK][DV]); a sequence whose first
// token is at position 0 starts from zeros.
#include common
struct Params { conv_stride: u32, in_stride: u32, z_off: u32, b_off: u32, a_off: u32, num_k_heads: u32, num_v_heads: u32, tiled: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> proj: array<f32>;
@group(0) @binding(4) var<storage, read> a_log: array<f32>;
@group(0) @binding(5) var<storage, read> dt_bias: array<f32>;
@group(0) @binding(6) var<storage, read> norm_w: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

const DK: u32 = {{DK}}u;
const DV: u32 = {{DV}}u;
var<workgroup> qs: array<f32, DK>;
var<workgroup> ks: array<f32, DK>;
var<workgroup> red: array<f32, DV>;

@compute @workgroup_size({{DV}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) j: u32) {
  let h = wid.x;
  let s = wid.y;
  let first = query_start(s);
  let end = query_start(s + 1u);
#if CHUNKED
  if (end - first > 1u) {
    chunked_rule(h, s, j, first, end);
    return;
  }
#endif
  let kh = select(h / (p.num_v_heads / p.num_k_heads), h % p.num_k_heads, p.tiled == 1u);
  let key_dim = p.num_k_heads * DK;
  let sbase = (state_slot(s) * p.num_v_heads + h) * DK * DV + j;
  let fresh = token_pos(first) == 0u;
  var col: array<f32, DK>;
  for (var i = 0u; i < DK; i++) { col[i] = select(state[sbase + i * DV], 0.0, fresh); }
  let neg_a = -exp(a_log[h]);
  let dtb = dt_bias[h];
  for (var t = first; t < end; t++) {
    let row = t * p.conv_stride;
    for (var i = j; i < DK; i += DV) {
      qs[i] = x[row + kh * DK + i];
      ks[i] = x[row + key_dim + kh * DK + i];
    }
    workgroupBarrier();
    var qq = 0.0;
    var kk = 0.0;
    for (var i = 0u; i < DK; i++) {
      qq += qs[i] * qs[i];
      kk += ks[i] * ks[i];
    }
    let qn = inverseSqrt(qq + 1e-6) * inverseSqrt(f32(DK));
    let kn = inverseSqrt(kk + 1e-6);
    let v = x[row + 2u * key_dim + h * DV + j];
    let pr = t * p.in_stride;
    let beta = 1.0 / (1.0 + exp(-proj[pr + p.b_off + h]));
    let sp_in = proj[pr + p.a_off + h] + dtb;
    // softplus with torch's threshold (x > 20: x).
    let sp = select(log(1.0 + exp(sp_in)), sp_in, sp_in > 20.0);
    let decay = exp(neg_a * sp);
    var u = 0.0;
    for (var i = 0u; i < DK; i++) {
      col[i] *= decay;
      u += col[i] * (ks[i] * kn);
    }
    let delta = (v - u) * beta;
    var o = 0.0;
    for (var i = 0u; i < DK; i++) {
      col[i] += (ks[i] * kn) * delta;
      o += col[i] * (qs[i] * qn);
    }
    red[j] = o * o;
    workgroupBarrier();
    var ss = 0.0;
    for (var i = 0u; i < DV; i++) { ss += red[i]; }
    let z = proj[pr + p.z_off + h * DV + j];
    out[t * p.num_v_heads * DV + h * DV + j] = o * inverseSqrt(ss / f32(DV) + p.eps) * norm_w[j] * (z / (1.0 + exp(-z)));
    // Everyone has read qs, ks and red before the next token overwrites them.
    workgroupBarrier();
  }
  for (var i = 0u; i < DK; i++) { state[sbase + i * DV] = col[i]; }
}

#if CHUNKED
// The chunkwise form. Chunks are aligned to absolute positions (multiples of CHUNK), so a
// prefill split at such multiples gives the same bits as one shot. Within a chunk of n tokens
// from state S0, with G_i the cumulative log-decay to token i (so exp(G_i - G_m) <= 1 for
// m <= i: no overflow), the scan's corrections d_i = (v_i - u_i) * beta_i solve the unit
// lower-triangular system (forward substitution, per state column)
//   d_i + sum_{m<i} beta_i exp(G_i - G_m) (k_i . k_m) d_m = beta_i (v_i - exp(G_i) S0^T k_i),
// i.e. d = (I + strictly_lower(beta K K^T * decay))^-1 beta (V - exp(G) K S0) (the UT/WY
// transform), and then
//   o_i = exp(G_i) S0^T q_i + sum_{m<=i} exp(G_i - G_m) (q_i . k_m) d_m,
//   S   = exp(G_n) S0 + sum_i exp(G_n - G_i) k_i d_i^T.
// Per token and column that is ~3 DK flops against the scan's ~6 DK, and 6 barriers per
// chunk against 3 per token.
const C: u32 = {{CHUNK}}u;
var<workgroup> cq: array<f32, C * DK>;
var<workgroup> ck: array<f32, C * DK>;
var<workgroup> cred: array<f32, C * DV>;
var<workgroup> ckk: array<f32, C * C>;
var<workgroup> cqk: array<f32, C * C>;
var<workgroup> cg: array<f32, C>;
var<workgroup> cb: array<f32, C>;
var<workgroup> cn: array<f32, 2 * C>;

fn chunked_rule(h: u32, s: u32, j: u32, first: u32, end: u32) {
  let kh = select(h / (p.num_v_heads / p.num_k_heads), h % p.num_k_heads, p.tiled == 1u);
  let key_dim = p.num_k_heads * DK;
  let sbase = (state_slot(s) * p.num_v_heads + h) * DK * DV + j;
  let fresh = token_pos(first) == 0u;
  var col: array<f32, DK>;
  for (var i = 0u; i < DK; i++) { col[i] = select(state[sbase + i * DV], 0.0, fresh); }
  let neg_a = -exp(a_log[h]);
  let dtb = dt_bias[h];
  var dl: array<f32, C>;
  var o: array<f32, C>;
  var kc: array<f32, C>;
  var qc: array<f32, C>;
  var t0 = first;
  loop {
    if (t0 >= end) { break; }
    let n = min(end - t0, C - token_pos(t0) % C);
    // Raw q and k rows of the chunk; beta and the log-decay per token.
    for (var e = j; e < C * DK; e += DV) {
      // Rows past the chunk's end are zeros: the loops over all C rows below stay constant
      // (unrolled, their accumulators in registers).
      let row = (t0 + e / DK) * p.conv_stride + kh * DK + e % DK;
      cq[e] = select(0.0, x[min(row, arrayLength(&x) - 1u)], e < n * DK);
      ck[e] = select(0.0, x[min(row + key_dim, arrayLength(&x) - 1u)], e < n * DK);
    }
    for (var i = j; i < n; i += DV) {
      let pr = (t0 + i) * p.in_stride;
      cb[i] = 1.0 / (1.0 + exp(-proj[pr + p.b_off + h]));
      let sp_in = proj[pr + p.a_off + h] + dtb;
      cg[i] = neg_a * select(log(1.0 + exp(sp_in)), sp_in, sp_in > 20.0);
    }
    workgroupBarrier();
    // L2 norms, one invocation per q (e < n) or k row; the cumulative log-decay.
    for (var e = j; e < 2u * n; e += DV) {
      let base = (e % n) * DK;
      var ss = 0.0;
      if (e < n) {
        for (var d = 0u; d < DK; d++) { ss += cq[base + d] * cq[base + d]; }
        cn[e] = inverseSqrt(ss + 1e-6) * inverseSqrt(f32(DK));
      } else {
        for (var d = 0u; d < DK; d++) { ss += ck[base + d] * ck[base + d]; }
        cn[e] = inverseSqrt(ss + 1e-6);
      }
    }
    if (j == 0u) {
      var acc = 0.0;
      for (var i = 0u; i < n; i++) {
        acc += cg[i];
        cg[i] = acc;
      }
    }
    workgroupBarrier();
    for (var e = j; e < n * DK; e += DV) {
      cq[e] *= cn[e / DK];
      ck[e] *= cn[n + e / DK];
    }
    workgroupBarrier();
    // The decayed intra-chunk matrices: beta_i exp(G_i - G_m) k_i.k_m (m < i) and
    // exp(G_i - G_m) q_i.k_m (m <= i).
    for (var e = j; e < n * n; e += DV) {
      let i = e / n;
      let m = e % n;
      if (m <= i) {
        var kk = 0.0;
        var qk = 0.0;
        for (var d = 0u; d < DK; d++) {
          kk += ck[i * DK + d] * ck[m * DK + d];
          qk += cq[i * DK + d] * ck[m * DK + d];
        }
        let dec = exp(cg[i] - cg[m]);
        ckk[i * C + m] = cb[i] * dec * kk;
        cqk[i * C + m] = dec * qk;
      }
    }
    workgroupBarrier();
    // Column j: S0^T k_i and S0^T q_i for the chunk's rows, one pass over the state.
    // Zeroed by hand: a declaration inside a loop is not re-zeroed per iteration by naga.
    for (var i = 0u; i < C; i++) {
      kc[i] = 0.0;
      qc[i] = 0.0;
    }
    for (var d = 0u; d < DK; d++) {
      let c = col[d];
      for (var i = 0u; i < C; i++) {
        kc[i] += ck[i * DK + d] * c;
        qc[i] += cq[i * DK + d] * c;
      }
    }
    // Forward substitution for d, the outputs from S0 and d.
    for (var i = 0u; i < C; i++) { dl[i] = 0.0; }
    for (var i = 0u; i < n; i++) {
      let eg = exp(cg[i]);
      let v = x[(t0 + i) * p.conv_stride + 2u * key_dim + h * DV + j];
      var di = cb[i] * (v - eg * kc[i]);
      for (var m = 0u; m < i; m++) { di -= ckk[i * C + m] * dl[m]; }
      dl[i] = di;
      var oi = eg * qc[i];
      for (var m = 0u; m <= i; m++) { oi += cqk[i * C + m] * dl[m]; }
      o[i] = oi;
      cred[i * DV + j] = oi * oi;
    }
    // The state at the chunk's end.
    let gn = cg[n - 1u];
    for (var i = 0u; i < n; i++) { dl[i] *= exp(gn - cg[i]); }
    let en = exp(gn);
    for (var d = 0u; d < DK; d++) {
      var acc = col[d] * en;
      for (var i = 0u; i < C; i++) { acc += ck[i * DK + d] * dl[i]; }
      col[d] = acc;
    }
    workgroupBarrier();
    // Gated RMSNorm: one invocation per token sums its squares.
    for (var i = j; i < n; i += DV) {
      var ss = 0.0;
      for (var c = 0u; c < DV; c++) { ss += cred[i * DV + c]; }
      cn[i] = inverseSqrt(ss / f32(DV) + p.eps);
    }
    workgroupBarrier();
    for (var i = 0u; i < n; i++) {
      let z = proj[(t0 + i) * p.in_stride + p.z_off + h * DV + j];
      out[(t0 + i) * p.num_v_heads * DV + h * DV + j] = o[i] * cn[i] * norm_w[j] * (z / (1.0 + exp(-z)));
    }
    // Everyone is done with the chunk's workgroup memory before the next one overwrites it.
    workgroupBarrier();
    t0 += n;
  }
  for (var i = 0u; i < DK; i++) { state[sbase + i * DV] = col[i]; }
}
#endif
