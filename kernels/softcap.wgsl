// In-place soft-capping of logits: x = cap * tanh(x / cap) (Gemma-2's final logits).
#include common
struct Params { cols: u32, cap: f32, rows_kind: u32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let r = gid.y + gid.z * 65535u;
  if (i >= p.cols || r >= rows_of(p.rows_kind)) { return; }
  let o = r * p.cols + i;
  x[o] = p.cap * tanh(x[o] / p.cap);
}
