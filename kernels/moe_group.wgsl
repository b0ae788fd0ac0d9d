// Groups a step's (token, slot) assignments by expert on the GPU, one workgroup: counts per
// expert, an exclusive scan, and a scatter of assignment indices (a = token * K + slot) into
// `sorted`, expert by expert. Each expert's run is cut into tiles of at most p.tm (MOE_TILE_ROWS) assignments,
// `tiles[3 n ..]` = (expert, first index in sorted, count); experts with no tokens get none.
// The indirect grids of the expert matmuls are written to `args`: (gx_gate_up, tiles, 1) and
// (gx_down, tiles, 1), so a step dispatches exactly one workgroup row per tile and a decode
// step of one sequence reads the weights of its K experts only. The order inside an expert's
// run depends on atomics, but every assignment's arithmetic is its own, so results do not.
#include common
struct Params { topk: u32, tm: u32, gx_gate_up: u32, gx_down: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> sorted: array<u32>;
@group(0) @binding(4) var<storage, read_write> tiles: array<u32>;
@group(0) @binding(5) var<storage, read_write> args: array<u32>;

const WG: u32 = 256u;
const E: u32 = {{E}}u;
var<workgroup> counts: array<atomic<u32>, E>;
var<workgroup> cursor: array<atomic<u32>, E>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var e = lid; e < E; e += WG) { atomicStore(&counts[e], 0u); }
  workgroupBarrier();
  let n = num_tokens() * p.topk;
  for (var a = lid; a < n; a += WG) { atomicAdd(&counts[min(ids[a], E - 1u)], 1u); }
  workgroupBarrier();
  if (lid == 0u) {
    var off = 0u;
    var nt = 0u;
    for (var e = 0u; e < E; e++) {
      let c = atomicLoad(&counts[e]);
      atomicStore(&cursor[e], off);
      for (var s = 0u; s < c; s += p.tm) {
        tiles[nt * 3u] = e;
        tiles[nt * 3u + 1u] = off + s;
        tiles[nt * 3u + 2u] = min(p.tm, c - s);
        nt++;
      }
      off += c;
    }
    args[0] = p.gx_gate_up;
    args[1] = nt;
    args[2] = 1u;
    args[3] = p.gx_down;
    args[4] = nt;
    args[5] = 1u;
  }
  workgroupBarrier();
  for (var a = lid; a < n; a += WG) {
    let pos = atomicAdd(&cursor[min(ids[a], E - 1u)], 1u);
    sorted[pos] = a;
  }
}
