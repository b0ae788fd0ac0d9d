// The gated delta rule and gated RMSNorm of a Gated DeltaNet layer, as an in-kernel
// sequential scan: one workgroup per (value head, sequence) walks the sequence's tokens of
// the step in order (a decode is one token; a prefill chunk many), invocation j owning
// column j of the head's DK x DV state in registers. Per token, with q, k the key head of
// this value head (GQA: with value heads grouped by key head, as Hugging Face stores them,
// head h reads key head h / (nv / nk); tiled, as llama.cpp's GGUF files store them, h % nk):
//   q = l2norm(q) / sqrt(DK), k = l2norm(k), beta = sigmoid(b),
//   decay = exp(-exp(A_log) * softplus(a + dt_bias)),
//   S *= decay; u = S^T k; S += k ((v - u) * beta)^T; o = S^T q,
//   out = rmsnorm(o) * w * silu(z)   (over the head's DV values, plain w).
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
