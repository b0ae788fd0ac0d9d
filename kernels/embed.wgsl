// Embedding gather for the token ids of this step, times a scale (Gemma: sqrt(hidden)). The
// table is stored in the matmul layout of its kernel family (so a tied LM head and the
// embedding share one copy): column blocks (COLUMN_BLOCKS: 8 tokens interleaved per k) or
// padded rows (`stride` weights per token). A table larger than one binding is split into
// parts of whole blocks; each part gathers only its ids.
// An id with the top bit set refers to a sampler output record of an earlier step still on
// the GPU (its first word is the sampled id): decoding never waits for the CPU.
#include common
struct Params { dim: u32, row_start: u32, row_end: u32, stride: u32, scale: f32, record_words: u32 }
@group(0) @binding(1) var<uniform> p: Params;
#if F16
@group(0) @binding(2) var<storage, read> table: array<u32>;
#else
@group(0) @binding(2) var<storage, read> table: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> records: array<u32>;

fn weight(i: u32) -> f32 {
#if F16
  return unpack2x16float(table[i >> 1u])[i & 1u];
#else
  return table[i];
#endif
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d = gid.x;
  let t = gid.y + gid.z * 65535u;
  if (d >= p.dim || t >= num_tokens()) { return; }
  let raw = token_id(t);
  var id = raw;
  if ((raw & RECORD_REF) != 0u) { id = records[(raw & ~RECORD_REF) * p.record_words + RECORD_ID]; }
  if (id < p.row_start || id >= p.row_end) { return; }
  let r = id - p.row_start;
#if COLUMN_BLOCKS
  let i = ((r / 8u) * p.dim + d) * 8u + r % 8u;
#else
  let i = r * p.stride + d;
#endif
  out[t * p.dim + d] = weight(i) * p.scale;
}
