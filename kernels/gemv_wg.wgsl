// GPU-family GEMV / skinny matmul: one workgroup per block of 8 output columns and TM rows,
// weights in the padded-rows layout (packPaddedRows: HF order, rows padded to 8 halves).
// Two ways to split K over the WG invocations:
//
// SLICED (pairs with gemm_tiled): K is cut into fixed slices of 32; invocation e owns
//   (column e % 8, slice e / 8) and sums its slice sequentially with fma, then one invocation
//   per output adds the slices in order. gemm_tiled sums the same slices in the same order, so
//   a row gets the same bits from either kernel: the runtime may pick by row count and stay
//   batch-invariant.
// otherwise: invocation i reads words i, i + WG, ... of the 8 rows (a warp reads consecutive
//   words: coalesced), and the partial sums meet through subgroupAdd (SUBGROUPS) plus a short
//   pass over workgroup memory, or a tree in workgroup memory. Faster on a GPU; its bits
//   differ from gemm_tiled's, so use it for every row count (or decode-only steps).
#if SUBGROUPS
enable subgroups;
#endif
#include common
#include matmul_epilogue
#if XVEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#if GAMMA
@group(0) @binding({{B_GAMMA}}) var<storage, read> gamma: array<f32>;
#endif

const TM: u32 = {{TM}}u;
const WG: u32 = {{WG}}u;

fn lo(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)); }
fn hi(q: vec4<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)); }

// x[row, k0 .. k0+7] as two vec4, zero past K (the padded weights are zero there too, but the
// sum of squares must not see the next row).
fn x8(base: u32, k0: u32) -> array<vec4<f32>, 2> {
  var v: array<vec4<f32>, 2>;
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

#if SLICED
const KS: u32 = 32u;
const MAX_SLICES: u32 = {{MAX_SLICES}}u;
// part[(slice * TM + row) * 9 + col]; col 8 is the row's sum of squares over the slice.
var<workgroup> part: array<f32, MAX_SLICES * TM * 9u>;
var<workgroup> fin: array<f32, TM * 9u>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so returning here keeps the barriers below uniform.
  if (m0 >= rows) { return; }
  let words = p.w_stride / 8u;
  let slices = (p.k + KS - 1u) / KS;
  for (var e = lid; e < 8u * slices; e += WG) {
    let i = e % 8u;
    let s = e / 8u;
    // Explicit zeros: naga does not re-zero an uninitialised var declared inside a loop.
    var acc = array<f32, TM>();
    var ss = array<f32, TM>();
    for (var jj = 0u; jj < KS / 8u; jj++) {
      let j = s * (KS / 8u) + jj;
      var wv = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
      if (j < words) {
        let q = w[(8u * c + i) * words + j];
        wv = array<vec4<f32>, 2>(lo(q), hi(q));
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
    for (var r = 0u; r < TM; r++) {
      part[(s * TM + r) * 9u + i] = acc[r];
      if (i == 0u) { part[(s * TM + r) * 9u + 8u] = ss[r]; }
    }
  }
  workgroupBarrier();
  for (var e = lid; e < 9u * TM; e += WG) {
    var v = 0.0;
    for (var s = 0u; s < slices; s++) { v += part[s * TM * 9u + e]; }
    fin[e] = v;
  }
  workgroupBarrier();
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
#else
// Per row: 8 column sums (two vec4) and the row's sum of squares (NORM).
const SLOTS: u32 = 3u * TM;
#if SUBGROUPS
var<workgroup> red: array<vec4<f32>, SLOTS * WG / 4u>;
#else
var<workgroup> red: array<vec4<f32>, SLOTS * WG>;
#endif

@compute @workgroup_size({{WG}})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
#if SUBGROUPS
  @builtin(subgroup_invocation_id) sid: u32,
  @builtin(subgroup_size) ssize: u32,
#endif
) {
  let c = wid.x;
  let m0 = (wid.y + wid.z * 65535u) * TM;
  let rows = rows_of(p.rows_kind);
  // Uniform per workgroup, so returning here keeps the barriers below uniform.
  if (m0 >= rows) { return; }
  let words = p.w_stride / 8u;
  var part: array<vec4<f32>, SLOTS>;
  for (var j = lid; j < words; j += WG) {
    var wl: array<vec4<f32>, 8>;
    var wh: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      let q = w[(8u * c + i) * words + j];
      wl[i] = lo(q);
      wh[i] = hi(q);
    }
    let gv = g8(8u * j);
    for (var r = 0u; r < TM; r++) {
      let xr = x8(x_row(min(m0 + r, rows - 1u)) * p.ldx, 8u * j);
      let xv = array<vec4<f32>, 2>(xr[0] * gv[0], xr[1] * gv[1]);
      var s0 = vec4<f32>(0.0);
      var s1 = vec4<f32>(0.0);
      for (var i = 0u; i < 4u; i++) {
        s0[i] = dot(wl[i], xv[0]) + dot(wh[i], xv[1]);
        s1[i] = dot(wl[4u + i], xv[0]) + dot(wh[4u + i], xv[1]);
      }
      part[3u * r] += s0;
      part[3u * r + 1u] += s1;
      part[3u * r + 2u].x += dot(xr[0], xr[0]) + dot(xr[1], xr[1]);
    }
  }
#if SUBGROUPS
  for (var s = 0u; s < SLOTS; s++) { part[s] = subgroupAdd(part[s]); }
  let groups = (WG + ssize - 1u) / ssize;
  if (sid == 0u) {
    for (var s = 0u; s < SLOTS; s++) { red[s * (WG / 4u) + lid / ssize] = part[s]; }
  }
  workgroupBarrier();
  if (lid < TM) {
    let r = lid;
    var t: array<vec4<f32>, 3>;
    for (var g = 0u; g < groups; g++) {
      for (var e = 0u; e < 3u; e++) { t[e] += red[(3u * r + e) * (WG / 4u) + g]; }
    }
#else
  for (var s = 0u; s < SLOTS; s++) { red[s * WG + lid] = part[s]; }
  workgroupBarrier();
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half) {
      for (var s = 0u; s < SLOTS; s++) { red[s * WG + lid] += red[s * WG + lid + half]; }
    }
    workgroupBarrier();
  }
  if (lid < TM) {
    let r = lid;
    var t: array<vec4<f32>, 3>;
    for (var e = 0u; e < 3u; e++) { t[e] = red[(3u * r + e) * WG]; }
#endif
    let m = m0 + r;
    if (m < rows) {
#if NORM
      let inv = inverseSqrt(t[2].x / f32(p.k) + p.eps);
      store_block(m, c, t[0] * inv, t[1] * inv);
#else
      store_block(m, c, t[0], t[1]);
#endif
    }
  }
}
#endif
