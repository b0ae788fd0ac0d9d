// Constrained decoding: sets the logits of the tokens a row's grammar forbids to the lowest
// f32, in place, before sample.wgsl sees the row (penalties, temperature, top-k/top-p/min-p),
// so no filter or noise can bring them back. A row's mask is one bit per token (bit id % 32 of
// word id / 32; set = allowed) at row ROW_MASK_ROW of `masks`; rows with NO_MASK (every
// unconstrained row) return at once. One invocation per mask word; all-allowed words are
// skipped. The lowest f32 rather than -inf keeps reported logprobs finite (JSON has no -inf).
#include common
struct Params { vocab: u32, mask_words: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read> masks: array<u32>;

const MASKED: f32 = -3.4028234e38;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let w = gid.x;
  let r = gid.y;
  if (w >= p.mask_words || r >= num_logit_rows()) { return; }
  let m = sampling_word(r, ROW_MASK_ROW);
  if (m == NO_MASK) { return; }
  let bits = masks[m * p.mask_words + w];
  if (bits == 0xffffffffu) { return; }
  let base = r * p.vocab;
  let end = min(w * 32u + 32u, p.vocab);
  for (var i = w * 32u; i < end; i++) {
    if (((bits >> (i & 31u)) & 1u) == 0u) { logits[base + i] = MASKED; }
  }
}
