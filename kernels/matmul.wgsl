// out[m, n_off + n] (+)= sum_k x[m, k] * w[n, k] (+ bias[n]) for a weight in HF Linear layout.
// One invocation computes TM rows of one output column, so each weight element is loaded
// once per TM rows: with TM >= batch size this is the decode GEMV, larger M tiles prefill.
// VEC: K % 8 == 0, weights and activations read eight at a time (vec4 loads).
// F16: weights stored as packed f16 pairs in u32 words; math stays f32.
#include common
struct Params { k: u32, n: u32, n_off: u32, ldo: u32, rows_kind: u32 }
@group(0) @binding(1) var<uniform> p: Params;
#if VEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#if F16
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#else
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
#endif
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#if F16
@group(0) @binding(3) var<storage, read> w: array<u32>;
#else
@group(0) @binding(3) var<storage, read> w: array<f32>;
#endif
#endif
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#if BIAS
@group(0) @binding(5) var<storage, read> bias: array<f32>;
#endif

const TM: u32 = {{TM}}u;

#ifnot VEC
fn w_at(i: u32) -> f32 {
#if F16
  return unpack2x16float(w[i >> 1u])[i & 1u];
#else
  return w[i];
#endif
}
#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  let m0 = (gid.y + gid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  if (n >= p.n || m0 >= rows) { return; }
  // Rows past the end recompute the last row instead of branching in the inner loop.
  var xrow: array<u32, TM>;
  for (var r = 0u; r < TM; r++) { xrow[r] = min(m0 + r, rows - 1u); }
  var acc: array<f32, TM>;
#if VEC
  let k8 = p.k / 8u;
  let wrow = n * k8;
  for (var j = 0u; j < k8; j++) {
#if F16
    let packed = w[wrow + j];
    let w0 = vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y));
    let w1 = vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w));
#else
    let w0 = w[2u * (wrow + j)];
    let w1 = w[2u * (wrow + j) + 1u];
#endif
    for (var r = 0u; r < TM; r++) {
      let xi = 2u * (xrow[r] * k8 + j);
      acc[r] += dot(w0, x[xi]) + dot(w1, x[xi + 1u]);
    }
  }
#else
  let wrow = n * p.k;
  for (var j = 0u; j < p.k; j++) {
    let wv = w_at(wrow + j);
    for (var r = 0u; r < TM; r++) { acc[r] += wv * x[xrow[r] * p.k + j]; }
  }
#endif
#if BIAS
  let b = bias[n];
#else
  let b = 0.0;
#endif
  for (var r = 0u; r < TM; r++) {
    let m = m0 + r;
    if (m < rows) {
      let o = m * p.ldo + p.n_off + n;
#if ACCUM
      out[o] += acc[r] + b;
#else
      out[o] = acc[r] + b;
#endif
    }
  }
}
