// n-gram (prompt lookup) drafting on the GPU: per sequence (one workgroup each), append its
// newest token to its token history (prompt + output, one row of `stride` ids per sequence
// slot), then find the latest earlier occurrence of its last n tokens, n from max_n down to
// min_n, and propose up to k tokens that followed it. Same answer as `ngramDraft` in
// src/scheduler/speculation.ts.
//
// The newest token may be a reference to a sampler output record of a step still on the GPU
// (RECORD_REF, as in embed.wgsl): the history stays current without a GPU->CPU wait.
// Candidates are scanned latest first, WG at a time, so a recent match ends the scan early.
#include layout
struct Params { max_n: u32, min_n: u32, k_max: u32, stride: u32, record_words: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> history: array<u32>;
// Per sequence, SEQ_WORDS words: slot, length (with the newest token), newest id or record
// reference, tokens wanted (<= k_max).
@group(0) @binding(2) var<storage, read> seqs: array<u32>;
@group(0) @binding(3) var<storage, read> records: array<u32>;
// Per sequence, 1 + k_max words: the draft's length, then its tokens.
@group(0) @binding(4) var<storage, read_write> drafts: array<u32>;

const SEQ_WORDS: u32 = 4u;

var<workgroup> best: atomic<u32>;
var<workgroup> best_u: u32;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x;
  let slot = seqs[s * SEQ_WORDS];
  let len = seqs[s * SEQ_WORDS + 1u];
  let k = min(seqs[s * SEQ_WORDS + 3u], p.k_max);
  let h = slot * p.stride;
  if (lid == 0u) {
    let raw = seqs[s * SEQ_WORDS + 2u];
    var id = raw;
    if ((raw & RECORD_REF) != 0u) { id = records[(raw & ~RECORD_REF) * p.record_words + RECORD_ID]; }
    history[h + len - 1u] = id;
    atomicStore(&best, 0u);
  }
  storageBarrier();
  workgroupBarrier();
  var count = 0u;
  var first = 0u;
  var n = min(p.max_n, len - 1u);
  loop {
    if (k == 0u || n < max(p.min_n, 1u)) { break; }
    // Candidate starts i with i + n < len, latest first.
    let last = len - n - 1u;
    var c = 0u;
    loop {
      if (c > last) { break; }
      if (c + lid <= last) {
        let i = last - c - lid;
        var j = 0u;
        while (j < n && history[h + i + j] == history[h + len - n + j]) { j++; }
        if (j == n) { atomicMax(&best, i + 1u); }
      }
      workgroupBarrier();
      if (lid == 0u) { best_u = atomicLoad(&best); }
      let b = workgroupUniformLoad(&best_u);
      if (b > 0u) {
        first = b - 1u + n;
        count = min(k, len - first);
        break;
      }
      c += {{WG}}u;
    }
    if (count > 0u) { break; }
    n--;
  }
  let out = s * (1u + p.k_max);
  if (lid == 0u) { drafts[out] = count; }
  for (var t = lid; t < count; t += {{WG}}u) { drafts[out + 1u + t] = history[h + first + t]; }
}
