// GPU-family GEMV / skinny matmul: one workgroup per block of 8 output columns and TM rows,
// weights in the padded-rows layout (packPaddedRows: HF order, rows padded to 8 weights).
//
// K is cut into fixed slices of 32. In each round the workgroup's WG invocations take WG / 8
// consecutive slices, invocation e owning (column e % 8, slice e / 8) and summing its slice
// in k order with fma; then one invocation per output adds the round's slice sums, in order,
// to a running total in workgroup memory. gemm_tiled sums the same slices in the same order
// (a K tile of 32 = one slice), so a row gets the same bits from either kernel: the runtime
// picks by row count and stays batch-invariant. (Subgroup reductions would be faster on some
// GPUs, but their order is the hardware's: a row's bits would change with the kernel.)
#include common
#include matmul_epilogue
#if XVEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif

const TM: u32 = {{TM}}u;
const WG: u32 = {{WG}}u;
const KS: u32 = 32u;
// Slices per round.
const SR: u32 = WG / 8u;
// part[(slice in round * TM + row) * 9 + col]; col 8 is the row's sum of squares.
var<workgroup> part: array<f32, SR * TM * 9u>;
var<workgroup> fin: array<f32, TM * 9u>;

// x[row, k0 .. k0+7] as two vec4, zero past K (the padded weights are zero there too, but the
// sum of squares must not see the next row).
fn x8(base: u32, k0: u32) -> array<vec4<f32>, 2> {
  var v = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
#if XVEC
  if (k0 < p.k) { v[0] = x[(base + k0) / 4u]; }
  if (k0 + 4u < p.k) { v[1] = x[(base + k0) / 4u + 1u]; }
#else
  for (var i = 0u; i < 8u; i++) {
    if (k0 + i < p.k) { v[i / 4u][i % 4u] = x[base + k0 + i]; }
  }
#endif
  return v;
}

// The norm weight for k0 .. k0+7 (ones without GAMMA); zero past K.
fn g8(k0: u32) -> array<vec4<f32>, 2> {
  var v = array<vec4<f32>, 2>(vec4<f32>(1.0), vec4<f32>(1.0));
#if GAMMA
  for (var i = 0u; i < 8u; i++) {
    v[i / 4u][i % 4u] = select(0.0, gamma[min(k0 + i, p.k - 1u)], k0 + i < p.k);
  }
#endif
  return v;
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so returning here keeps the barriers below uniform.
  if (m0 >= rows) { return; }
  let words = p.w_stride / 8u;
  let slices = (p.k + KS - 1u) / KS;
  let i = lid % 8u;
  let sl = lid / 8u;
  for (var e = lid; e < 9u * TM; e += WG) { fin[e] = 0.0; }
  for (var s0 = 0u; s0 < slices; s0 += SR) {
    let s = s0 + sl;
    // Explicit zeros: naga does not re-zero an uninitialised var declared inside a loop.
    var acc = array<f32, TM>();
    var ss = array<f32, TM>();
    if (s < slices) {
      for (var jj = 0u; jj < KS / 8u; jj++) {
        let j = s * (KS / 8u) + jj;
        var wv = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
        if (j < words) {
          let q = w8((8u * c + i) * words + j);
          wv = array<vec4<f32>, 2>(q.l, q.h);
        }
        let gv = g8(8u * j);
        for (var r = 0u; r < TM; r++) {
          let xv = x8(x_row(min(m0 + r, rows - 1u)) * p.ldx, 8u * j);
          for (var h = 0u; h < 8u; h++) {
            let xe = xv[h / 4u][h % 4u];
            acc[r] = fma(wv[h / 4u][h % 4u], xe * gv[h / 4u][h % 4u], acc[r]);
            ss[r] = fma(xe, xe, ss[r]);
          }
        }
      }
    }
    for (var r = 0u; r < TM; r++) {
      part[(sl * TM + r) * 9u + i] = acc[r];
      if (i == 0u) { part[(sl * TM + r) * 9u + 8u] = ss[r]; }
    }
    workgroupBarrier();
    let n = min(SR, slices - s0);
    for (var e = lid; e < 9u * TM; e += WG) {
      var v = fin[e];
      for (var t = 0u; t < n; t++) { v += part[t * TM * 9u + e]; }
      fin[e] = v;
    }
    workgroupBarrier();
  }
  if (lid < TM) {
    let r = lid;
    let m = m0 + r;
    let b = r * 9u;
    let v0 = vec4<f32>(fin[b], fin[b + 1u], fin[b + 2u], fin[b + 3u]);
    let v1 = vec4<f32>(fin[b + 4u], fin[b + 5u], fin[b + 6u], fin[b + 7u]);
    if (m < rows) {
#if NORM
      let inv = inverseSqrt(fin[b + 8u] / f32(p.k) + p.eps);
      store_block(m, c, v0 * inv, v1 * inv);
#else
      store_block(m, c, v0, v1);
#endif
    }
  }
}
