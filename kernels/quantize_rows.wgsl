// Quantizes activation rows to Q8 blocks of 32 for the fast path of the quantized matmuls
// (qgemv_c8 / qgemv_wg with XQ), as llama.cpp quantizes activations before its Q8_0 / Q4_0
// dot products: d = max|u| / 127 (kept in f32), q = round(u / d). With NORM the row is
// RMS-normalized first (u = x * gamma / rms(x), GAMMA the norm weight), so the norm dispatch
// is folded into this one. One workgroup per row: a row's bits never depend on the batch.
// Output row (ldq u32 words): K/4 words of int8 (4 consecutive k each), K/32 f32 scales,
// K/32 i32 sums of the block's quants (Q4_0 weights subtract 8 * sum).
#include common
struct Params { k: u32, ldx: u32, ldq: u32, rows_kind: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> xq: array<u32>;
#if GAMMA
@group(0) @binding(4) var<storage, read> gamma: array<vec4<f32>>;
#endif

const WG: u32 = {{WG}}u;

#if DOT4
fn pack_q(q: vec4<i32>) -> u32 { return pack4xI8(q); }
#else
fn pack_q(q: vec4<i32>) -> u32 {
  let b = bitcast<vec4<u32>>(q) & vec4<u32>(255u);
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}
#endif
var<workgroup> part: array<f32, WG>;

fn x_row(m: u32) -> u32 {
#if GATHER
  return logit_row_token(m);
#else
  return m;
#endif
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let m = wid.y + wid.z * 65535u;
  // Uniform per workgroup: the barrier below stays uniform.
  if (m >= rows_of(p.rows_kind)) { return; }
  let xb = x_row(m) * p.ldx / 4u;
  let kb = p.k / 32u;
  var inv = 1.0;
#if NORM
  var s = 0.0;
  for (var j = lid; j < p.k / 4u; j += WG) {
    let v = x[xb + j];
    s += dot(v, v);
  }
  part[lid] = s;
  workgroupBarrier();
  // Every lane adds the partials in the same order (no second barrier needed).
  var total = 0.0;
  for (var l = 0u; l < WG; l++) { total += part[l]; }
  inv = inverseSqrt(total / f32(p.k) + p.eps);
#endif
  let ob = m * p.ldq;
  for (var b = lid; b < kb; b += WG) {
    var u: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
#if GAMMA
      u[i] = x[xb + 8u * b + i] * gamma[8u * b + i] * inv;
#else
      u[i] = x[xb + 8u * b + i] * inv;
#endif
      amax = max(amax, abs(u[i]));
    }
    let d = max(max(amax.x, amax.y), max(amax.z, amax.w)) / 127.0;
    let id = select(0.0, 1.0 / d, d > 0.0);
    var sum = vec4<i32>(0);
    for (var i = 0u; i < 8u; i++) {
      let q = vec4<i32>(round(u[i] * id));
      sum += q;
      xq[ob + 8u * b + i] = pack_q(q);
    }
    xq[ob + p.k / 4u + b] = bitcast<u32>(d);
    xq[ob + p.k / 4u + kb + b] = bitcast<u32>(sum.x + sum.y + sum.z + sum.w);
  }
}
