// The reciprocal RMS of one row, shared by the kernels that normalize a row per workgroup
// (rmsnorm, pool_hidden, moe_route): the includer declares `p` (with `dim` and `eps`), the
// row source `x`, `const WG` (its workgroup size) and `var<workgroup> partial: array<f32, WG>`.
// Each invocation sums squares at i = lid, lid + WG, ..., then a fixed tree adds the WG lane
// sums, so every caller gets the same bits for the same row. Call from uniform control flow.
fn row_inv_rms(base: u32, lid: u32) -> f32 {
  var ss = 0.0;
  for (var i = lid; i < p.dim; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  return inverseSqrt(partial[0] / f32(p.dim) + p.eps);
}
