/**
 * IEEE half-precision scalars as ggml stores block scales: f32 -> f16 rounds to nearest
 * even (GGML_FP32_TO_FP16), f16 -> f32 is exact.
 * @module
 */
const F16 = new Float16Array(1);
const BITS = new Uint16Array(F16.buffer);

/** The f16 bits of `x` (round to nearest even). */
export function f16Bits(x: number): number {
  F16[0] = x;
  return BITS[0];
}

/** The value of f16 bits. */
export function f16Value(bits: number): number {
  BITS[0] = bits;
  return F16[0];
}

/** Reads a little-endian f16 at `at`. */
export function readF16(bytes: Uint8Array, at: number): number {
  return f16Value(bytes[at] | (bytes[at + 1] << 8));
}

/** Writes `x` as a little-endian f16 at `at`. */
export function writeF16(bytes: Uint8Array, at: number, x: number): void {
  const b = f16Bits(x);
  bytes[at] = b & 0xff;
  bytes[at + 1] = b >>> 8;
}
