// n-gram (prompt lookup) speculation's GPU step, per sequence (one workgroup each): bring its
// token history (prompt + output, one row of `stride` ids per sequence slot, its length in
// `lengths`) up to date, then find the latest earlier occurrence of its last n tokens, n from
// max_n down to min_n, and propose up to k tokens that followed it (same answer as
// `ngramDraft` in src/scheduler/speculation.ts). Drafts are kept per slot.
//
// Bringing the history up to date, by the request's mode:
// - APPEND: the CPU gives the length counting the newest token, and the newest token: an id,
//   or a reference to a sampler output record of a step still on the GPU (RECORD_REF, as in
//   embed.wgsl), so a plain decode step needs no GPU->CPU wait to keep the history.
// - ACCEPT: the slot's rows of a verification step, which fed its last draft: the records
//   from `first` on hold each row's sampled token. Accepted = the longest prefix of rows whose
//   sample equals the draft token (greedy and sampling alike: with a deterministic draft,
//   drawing x ~ p and keeping it when it equals the draft is the rejection rule); those
//   drafts and the next row's sample are appended on the GPU. The count and the drafts fed
//   (at most `fed`, the rows the CPU scheduled minus one) go to `accepted`, one record-sized
//   entry per request, so a step copies them into the readback with its sampled records.
// Candidates are scanned latest first, WG at a time, so a recent match ends the scan early.
#include layout
struct Params { max_n: u32, min_n: u32, k_max: u32, stride: u32, record_words: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> history: array<u32>;
@group(0) @binding(2) var<storage, read_write> lengths: array<u32>;
// Per request, REQ_WORDS words: slot, mode, APPEND: length / ACCEPT: drafts fed, APPEND: newest
// id or record reference / ACCEPT: first record of the verification rows, tokens wanted.
@group(0) @binding(3) var<storage, read> requests: array<u32>;
@group(0) @binding(4) var<storage, read> records: array<u32>;
// Per slot, 1 + k_max words: the draft's length, then its tokens.
@group(0) @binding(5) var<storage, read_write> drafts: array<u32>;
// Per request, record_words apart: drafts accepted, drafts fed (ACCEPT; 0, 0 for APPEND).
@group(0) @binding(6) var<storage, read_write> accepted: array<u32>;

const REQ_WORDS: u32 = 5u;
const MODE_ACCEPT: u32 = 1u;

var<workgroup> best: atomic<u32>;
var<workgroup> best_u: u32;
var<workgroup> len_w: u32;

fn sampled(record: u32) -> u32 { return records[record * p.record_words + RECORD_ID]; }

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x;
  let slot = requests[s * REQ_WORDS];
  let mode = requests[s * REQ_WORDS + 1u];
  let arg = requests[s * REQ_WORDS + 3u];
  let k = min(requests[s * REQ_WORDS + 4u], p.k_max);
  let h = slot * p.stride;
  let d = slot * (1u + p.k_max);
  if (lid == 0u) {
    var len = requests[s * REQ_WORDS + 2u];
    var a = 0u;
    var drafted = 0u;
    if (mode == MODE_ACCEPT) {
      drafted = min(min(drafts[d], p.k_max), requests[s * REQ_WORDS + 2u]);
      len = lengths[slot];
      while (a < drafted && sampled(arg + a) == drafts[d + 1u + a]) { a++; }
      for (var i = 0u; i < a; i++) { history[h + len + i] = drafts[d + 1u + i]; }
      history[h + len + a] = sampled(arg + a);
      len = len + a + 1u;
    } else {
      var id = arg;
      if ((arg & RECORD_REF) != 0u) { id = sampled(arg & ~RECORD_REF); }
      history[h + len - 1u] = id;
    }
    lengths[slot] = len;
    accepted[s * p.record_words] = a;
    accepted[s * p.record_words + 1u] = drafted;
    len_w = len;
    atomicStore(&best, 0u);
  }
  let len = workgroupUniformLoad(&len_w);
  storageBarrier();
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
  if (lid == 0u) { drafts[d] = count; }
  for (var t = lid; t < count; t += {{WG}}u) { drafts[d + 1u + t] = history[h + first + t]; }
}
