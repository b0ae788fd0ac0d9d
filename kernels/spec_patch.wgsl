// Speculative decoding inside the pipelined decode: completes the metadata of verification
// rows whose sequence's length is known only on the GPU (its earlier verification steps'
// accepted counts are not read back yet). The CPU scheduled `rows` rows (the newest token,
// then rows - 1 drafts) at upper-bound positions with blocks for them; here, before the
// forward pass, each row gets its real position (the slot's history length from
// ngram_draft.wgsl, minus one, plus the row), KV slot, input token (the newest token, then
// the slot's draft, padded with the newest token where the draft is shorter: a padded row's
// sample is compared with no draft, so it is never accepted), the sampler's output index,
// and the sequence's context length.
#include layout
struct Params { block_size: u32, stride: u32, k_max: u32 }
@group(0) @binding(0) var<uniform> p: Params;
// The step's metadata slot (bound at its offset; the forward pass reads it afterwards).
@group(0) @binding(1) var<storage, read_write> step_meta: array<u32>;
@group(0) @binding(2) var<storage, read> lengths: array<u32>;
@group(0) @binding(3) var<storage, read> history: array<u32>;
@group(0) @binding(4) var<storage, read> drafts: array<u32>;
// Per request, PATCH_WORDS words: sequence index in the step, slot, first token index, first
// logit row, rows, prompt length.
@group(0) @binding(5) var<storage, read> requests: array<u32>;

const PATCH_WORDS: u32 = 6u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let q = gid.y * PATCH_WORDS;
  let s = requests[q];
  let slot = requests[q + 1u];
  let t = requests[q + 2u] + i;
  let r = requests[q + 3u] + i;
  let rows = requests[q + 4u];
  let prompt_len = requests[q + 5u];
  if (i >= rows) { return; }
  let len = lengths[slot];
  let pos = len - 1u + i;
  let d = slot * (1u + p.k_max);
  var token = history[slot * p.stride + len - 1u];
  if (i > 0u && i <= min(drafts[d], p.k_max)) { token = drafts[d + i]; }
  step_meta[step_meta[STEP_TOKEN_IDS] + t] = token;
  step_meta[step_meta[STEP_POSITIONS] + t] = pos;
  let block = step_meta[step_meta[STEP_BLOCK_TABLES] + s * step_meta[STEP_BLOCK_TABLE_LEN] + pos / p.block_size];
  step_meta[step_meta[STEP_SLOTS] + t] = block * p.block_size + pos % p.block_size;
  // Row i samples the token at position len + i.
  step_meta[step_meta[STEP_SAMPLING_PARAMS] + r * ROW_WORDS + ROW_OUTPUT_INDEX] = len + i - prompt_len;
  if (i == 0u) { step_meta[step_meta[STEP_CONTEXT_LENS] + s] = len + rows - 1u; }
}
