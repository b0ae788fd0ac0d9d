// The unfused RoPE path, for what the q|k|v matmul's RoPE epilogue cannot do (Qwen3's q/k
// norm needs the whole head; head_dim % 8 != 0): per (head, token) of the fused qkv rows an
// optional per-head RMSNorm (QK_NORM), RoPE (rotate-half layout, inverse frequencies
// precomputed on the CPU for the rope type), then q is written back in place and k, v go
// straight into their paged-cache slot (f32, or f16 with KV_F16). Heads 0..nh-1 are q,
// nh..nh+nkv-1 are k, the rest v. One invocation per rotation pair. PARTIAL (Qwen3.5's
// partial_rotary_factor): only the first 2 * ROT_HALF dims rotate (rotate-half pairing among
// them), the rest pass through.
#include common
struct Params { nh: u32, nkv: u32, head_dim: u32, block_size: u32, qkv_stride: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;
#if KV_F16
@group(0) @binding(4) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<u32>;
#else
@group(0) @binding(4) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(5) var<storage, read_write> v_cache: array<f32>;
#endif
#if QK_NORM
@group(0) @binding(6) var<storage, read> q_norm: array<f32>;
@group(0) @binding(7) var<storage, read> k_norm: array<f32>;
#endif

const HALF: u32 = {{HALF}}u;
var<workgroup> partial: array<f32, HALF>;
#if PARTIAL
const ROT_HALF: u32 = {{ROT_HALF}}u;
// The normalised head, so each invocation can read its dims' rotation partners.
var<workgroup> rot: array<f32, 2u * HALF>;

fn rotated(d: u32, pos: f32) -> f32 {
  if (d < ROT_HALF) {
    let angle = pos * inv_freq[d];
    return rot[d] * cos(angle) - rot[d + ROT_HALF] * sin(angle);
  }
  if (d < 2u * ROT_HALF) {
    let e = d - ROT_HALF;
    let angle = pos * inv_freq[e];
    return rot[d] * cos(angle) + rot[e] * sin(angle);
  }
  return rot[d];
}
#endif
#if KV_F16
// The head's finished values, so each invocation can pack two adjacent dims into one word.
var<workgroup> head: array<f32, 2u * HALF>;
#endif

fn cache_index(slot: u32, kvh: u32, d: u32) -> u32 {
  let block = slot / p.block_size;
  let off = slot % p.block_size;
  return ((block * p.nkv + kvh) * p.block_size + off) * p.head_dim + d;
}

@compute @workgroup_size({{HALF}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
  let h = wid.x;
  let t = wid.y + wid.z * 65535u;
  let live = t < num_tokens();
  let tt = select(0u, t, live);
  let base = tt * p.qkv_stride + h * p.head_dim;
  var a = qkv[base + i];
  var b = qkv[base + i + HALF];
  let is_v = h >= p.nh + p.nkv;
#if QK_NORM
  partial[i] = a * a + b * b;
  workgroupBarrier();
  var ss = 0.0;
  for (var j = 0u; j < HALF; j++) { ss += partial[j]; }
  let inv = inverseSqrt(ss / f32(p.head_dim) + p.eps);
  if (!is_v) {
    if (h < p.nh) {
      a = a * inv * q_norm[i];
      b = b * inv * q_norm[i + HALF];
    } else {
      a = a * inv * k_norm[i];
      b = b * inv * k_norm[i + HALF];
    }
  }
#endif
#if PARTIAL
  rot[i] = a;
  rot[i + HALF] = b;
  workgroupBarrier();
  if (!is_v) {
    let pos = f32(token_pos(tt));
    a = rotated(i, pos);
    b = rotated(i + HALF, pos);
  }
#else
  if (!is_v) {
    let angle = f32(token_pos(tt)) * inv_freq[i];
    let c = cos(angle);
    let s = sin(angle);
    let ra = a * c - b * s;
    let rb = b * c + a * s;
    a = ra;
    b = rb;
  }
#endif
#if KV_F16
  head[i] = a;
  head[i + HALF] = b;
  workgroupBarrier();
#endif
  if (!live) { return; }
  if (h < p.nh) {
    qkv[base + i] = a;
    qkv[base + i + HALF] = b;
    return;
  }
  let slot = token_slot(t);
  if (slot == NO_SLOT) { return; }
  let kvh = select(h - p.nh, h - p.nh - p.nkv, is_v);
#if KV_F16
  // Invocation i writes dims 2i and 2i + 1.
  let word = cache_index(slot, kvh, 0u) / 2u + i;
  let packed = pack2x16float(vec2<f32>(head[2u * i], head[2u * i + 1u]));
  if (is_v) { v_cache[word] = packed; } else { k_cache[word] = packed; }
#else
  if (is_v) {
    v_cache[cache_index(slot, kvh, i)] = a;
    v_cache[cache_index(slot, kvh, i + HALF)] = b;
  } else {
    k_cache[cache_index(slot, kvh, i)] = a;
    k_cache[cache_index(slot, kvh, i + HALF)] = b;
  }
#endif
}
