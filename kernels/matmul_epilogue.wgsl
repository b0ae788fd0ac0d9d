// Shared by the matmuls (gemv_c8, gemv_wg, gemm_tiled; with QUANT qgemv_c8 and the quantized
// gemv_wg, gemm_tiled): their parameters, the weight reader, the input and output bindings,
// and what happens to one finished block of 8 output
// columns of one row. The weight layouts (src/model/weight_layout.ts) order columns so that
// one block is enough for every epilogue:
//   plain  8 columns stored (ACCUM adds them: a residual add as the epilogue);
//   GLU    4 gate + 4 up columns -> act(gate) * up, 4 outputs (the activation folded in);
//   ROPE   q/k dims 4i..4i+3 with their rotation partners half+4i..: rotate, then q goes to
//          `out` and k/v straight into their paged-cache slot (RoPE and the KV write folded in);
//   SOFTCAP cap * tanh(v / cap) (Gemma-2's final logits).
// NORM (in the kernels): the row is scaled by 1/rms(x), computed from the x the kernel streams
// anyway (the norm dispatch folded in), and GAMMA multiplies x by the norm weight as it is
// loaded (exact: the weight is not folded into the rounded matrix).
// A matrix larger than one binding is split into parts of whole column blocks; `block_off`
// is the part's first block, so every column index below is global.
// Bindings after `out` are numbered by the descriptor: gamma, bias, then inv_freq, k_cache,
// v_cache.
struct Params {
  k: u32, blocks: u32, block_off: u32, ldx: u32, ldo: u32, n_out: u32, rows_kind: u32,
  eps: f32, nh: u32, nkv: u32, head_dim: u32, block_size: u32, w_stride: u32, cap: f32,
}
@group(0) @binding(1) var<uniform> p: Params;
#if W_F32
@group(0) @binding(3) var<storage, read> w: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
#endif
// x rows: f32, read as vec4 with XVEC (K % 4 == 0); the quantized matmuls (QUANT) read vec4,
// or with XQ the Q8 blocks of quantize_rows.
#if QUANT
#if XQ
@group(0) @binding(2) var<storage, read> x: array<vec4<u32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#endif
#else
#if XVEC
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;
#endif
#endif
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#if BIAS
@group(0) @binding({{B_BIAS}}) var<storage, read> bias: array<vec4<f32>>;
#endif
#if ROPE
@group(0) @binding({{B_INV_FREQ}}) var<storage, read> inv_freq: array<f32>;
#if KV_F16
// An f16 cache: every invocation writes whole u32 words (two adjacent dims it owns).
@group(0) @binding({{B_K_CACHE}}) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding({{B_V_CACHE}}) var<storage, read_write> v_cache: array<u32>;
#else
@group(0) @binding({{B_K_CACHE}}) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding({{B_V_CACHE}}) var<storage, read_write> v_cache: array<f32>;
#endif
#endif

// Eight weights (one 8-column block at one k, or 8 consecutive k of one padded row): one
// 16-byte word of f16, or two of f32.
struct W8 { l: vec4<f32>, h: vec4<f32> }
fn w8(i: u32) -> W8 {
#if W_F32
  return W8(w[2u * i], w[2u * i + 1u]);
#else
  let q = w[i];
  return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
#endif
}

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
  // 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))), tanh clamped against overflow.
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

// Row m, column block c of this part: the 8 raw dot products (already scaled by 1/rms when
// NORM).
fn store_block(m: u32, c: u32, a0: vec4<f32>, a1: vec4<f32>) {
  let gc = p.block_off + c;
  var v0 = a0;
  var v1 = a1;
#if BIAS
  v0 += bias[2u * gc];
  v1 += bias[2u * gc + 1u];
#endif
#if SOFTCAP
  v0 = p.cap * tanh(v0 / p.cap);
  v1 = p.cap * tanh(v1 / p.cap);
#endif
#if GLU
  let y = act(v0) * v1;
  let base = m * p.ldo + 4u * gc;
  for (var q = 0u; q < 4u; q++) {
    if (4u * gc + q < p.n_out) { put(base + q, y[q]); }
  }
#else
#if ROPE
  rope_store(m, gc, v0, v1);
#else
  let base = m * p.ldo + 8u * gc;
  for (var q = 0u; q < 4u; q++) {
    if (8u * gc + q < p.n_out) { put(base + q, v0[q]); }
    if (8u * gc + 4u + q < p.n_out) { put(base + 4u + q, v1[q]); }
  }
#endif
#endif
}
