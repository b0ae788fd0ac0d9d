// Shared by the packed-weight matmuls (gemv_c8, gemv_wg, gemm_tiled): their parameters, the
// output bindings, and what happens to one finished block of 8 output columns of one row.
// The weight layouts (src/model/weight_layout.ts) order columns so that one block is enough
// for every epilogue:
//   plain  8 columns 8c..8c+7 stored (ACCUM adds them: a residual add as the epilogue);
//   GLU    4 gate + 4 up columns -> act(gate) * up, 4 outputs (act_mul folded in);
//   ROPE   q/k dims 4i..4i+3 with their rotation partners half+4i..: rotate, then q goes to
//          `out` and k/v straight into their paged-cache slot (rope_kv folded in).
// NORM (in the kernels): the kernel scales the row by 1/rms(x), computed from the x it streams
// anyway (the norm dispatch folded in); the norm weight is either folded into the matrix at
// load time or, with GAMMA, multiplied into x as it is loaded (exact, one more load per step).
// Bindings after `out` are numbered by the descriptor: GAMMA, BIAS, then ROPE's three.
struct Params {
  k: u32, blocks: u32, ldx: u32, ldo: u32, n_off: u32, n_out: u32, rows_kind: u32, eps: f32,
  nh: u32, nkv: u32, head_dim: u32, block_size: u32, w_stride: u32,
}
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#if BIAS
@group(0) @binding({{B_BIAS}}) var<storage, read> bias: array<vec4<f32>>;
#endif
#if ROPE
@group(0) @binding({{B_ROPE}}) var<storage, read> inv_freq: array<f32>;
#if KV_F16
// An f16 cache: every invocation writes whole u32 words (two adjacent dims it owns).
@group(0) @binding({{B_ROPE1}}) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding({{B_ROPE2}}) var<storage, read_write> v_cache: array<u32>;
#else
@group(0) @binding({{B_ROPE1}}) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding({{B_ROPE2}}) var<storage, read_write> v_cache: array<f32>;
#endif
#endif

// The x row a matmul row reads: logit rows gather their token's row (final norm + LM head
// only where logits are needed).
fn x_row(m: u32) -> u32 {
#if GATHER
  return logit_row_token(m);
#else
  return m;
#endif
}

fn put(i: u32, v: f32) {
#if ACCUM
  out[i] += v;
#else
  out[i] = v;
#endif
}

#if GLU
fn act(g: vec4<f32>) -> vec4<f32> {
#if GELU
  let inner = clamp(0.7978845608028654 * (g + 0.044715 * g * g * g), vec4<f32>(-15.0), vec4<f32>(15.0));
  return 0.5 * g * (1.0 + tanh(inner));
#else
  return g / (1.0 + exp(-g));
#endif
}
#endif

#if ROPE
fn cache_index(slot: u32, kvh: u32, d: u32) -> u32 {
  return ((slot / p.block_size * p.nkv + kvh) * p.block_size + slot % p.block_size) * p.head_dim + d;
}

fn rope_store(t: u32, c: u32, v0: vec4<f32>, v1: vec4<f32>) {
  let per_head = p.head_dim / 8u;
  let h = c / per_head;
  let i = c % per_head;
  let half = p.head_dim / 2u;
  let slot = token_slot(t);
  if (h < p.nh + p.nkv) {
    let d = 4u * i;
    let f = vec4<f32>(inv_freq[d], inv_freq[d + 1u], inv_freq[d + 2u], inv_freq[d + 3u]);
    let angle = f32(token_pos(t)) * f;
    let cs = cos(angle);
    let sn = sin(angle);
    let r0 = v0 * cs - v1 * sn;
    let r1 = v1 * cs + v0 * sn;
    if (h < p.nh) {
      let base = t * p.ldo + h * p.head_dim + d;
      for (var q = 0u; q < 4u; q++) {
        out[base + q] = r0[q];
        out[base + half + q] = r1[q];
      }
    } else if (slot != NO_SLOT) {
      let kvh = h - p.nh;
#if KV_F16
      let a = cache_index(slot, kvh, d) / 2u;
      let b = cache_index(slot, kvh, half + d) / 2u;
      k_cache[a] = pack2x16float(r0.xy);
      k_cache[a + 1u] = pack2x16float(r0.zw);
      k_cache[b] = pack2x16float(r1.xy);
      k_cache[b + 1u] = pack2x16float(r1.zw);
#else
      for (var q = 0u; q < 4u; q++) {
        k_cache[cache_index(slot, kvh, d + q)] = r0[q];
        k_cache[cache_index(slot, kvh, half + d + q)] = r1[q];
      }
#endif
    }
  } else if (slot != NO_SLOT) {
    let kvh = h - p.nh - p.nkv;
#if KV_F16
    let a = cache_index(slot, kvh, 8u * i) / 2u;
    v_cache[a] = pack2x16float(v0.xy);
    v_cache[a + 1u] = pack2x16float(v0.zw);
    v_cache[a + 2u] = pack2x16float(v1.xy);
    v_cache[a + 3u] = pack2x16float(v1.zw);
#else
    for (var q = 0u; q < 4u; q++) {
      v_cache[cache_index(slot, kvh, 8u * i + q)] = v0[q];
      v_cache[cache_index(slot, kvh, 8u * i + 4u + q)] = v1[q];
    }
#endif
  }
}
#endif

// Row m, column block c: the 8 raw dot products (already scaled by 1/rms when NORM).
fn store_block(m: u32, c: u32, a0: vec4<f32>, a1: vec4<f32>) {
  var v0 = a0;
  var v1 = a1;
#if BIAS
  v0 += bias[2u * c];
  v1 += bias[2u * c + 1u];
#endif
#if GLU
  let y = act(v0) * v1;
  let base = m * p.ldo + p.n_off + 4u * c;
  for (var q = 0u; q < 4u; q++) {
    if (4u * c + q < p.n_out) { put(base + q, y[q]); }
  }
#else
#if ROPE
  rope_store(m, c, v0, v1);
#else
  let base = m * p.ldo + p.n_off + 8u * c;
  for (var q = 0u; q < 4u; q++) {
    if (8u * c + q < p.n_out) { put(base + q, v0[q]); }
    if (8u * c + 4u + q < p.n_out) { put(base + 4u + q, v1[q]); }
  }
#endif
#endif
}
