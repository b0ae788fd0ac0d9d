// int8 helpers of the quantized matmuls (qgemv_c8, qmatmul_common). DOT4: WGSL's
// packed_4x8_integer_dot_product builtins; without it the same integers come from shifts, so
// both give the same bits.
#if DOT4
fn i8x4(u: u32) -> vec4<i32> { return unpack4xI8(u); }
fn u8x4(u: u32) -> vec4<u32> { return unpack4xU8(u); }
fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }
#else
fn i8x4(u: u32) -> vec4<i32> {
  return bitcast<vec4<i32>>(vec4<u32>(u) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
}
fn u8x4(u: u32) -> vec4<u32> { return (vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u); }
fn dot4(a: u32, b: u32) -> i32 { return dot(i8x4(a), i8x4(b)); }
#endif
