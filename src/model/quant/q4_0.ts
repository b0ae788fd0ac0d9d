/**
 * llama.cpp's Q4_0: blocks of 32 values along a row, each an f16 scale `d` then 16 bytes
 * whose low nibbles are values 0..15 and high nibbles values 16..31; value = (q - 8) * d.
 * Quantized with llama.cpp's reference formula (quantize_row_q4_0_ref) in double precision, as
 * quant-goldens.json was made: m = the block's first value of largest magnitude (with its
 * sign), d = m / -8, q = min(15, trunc(x * (1 / d) + 8.5)), the stored scale f16(d).
 * @module
 */
import { readF16, writeF16 } from "./f16.ts";

/** Values per block. */
export const Q4_0_BLOCK = 32;
/** Bytes per block. */
export const Q4_0_BYTES = 18;

const f32 = Math.fround;

/** Quantizes `x` (length a multiple of 32) into `out` at `outOffset` (x.length / 32 blocks). */
export function quantizeQ4_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / Q4_0_BLOCK) * Q4_0_BYTES), outOffset = 0): Uint8Array {
  if (x.length % Q4_0_BLOCK !== 0) throw new RangeError(`Q4_0 needs a multiple of 32 values, got ${x.length}`);
  const q = new Uint8Array(Q4_0_BLOCK);
  for (let b = 0; b * Q4_0_BLOCK < x.length; b++) {
    const base = b * Q4_0_BLOCK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < Q4_0_BLOCK; j++) {
      const v = x[base + j];
      // Strictly greater: the first of equal magnitudes wins, as in llama.cpp.
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d === 0 ? 0 : 1 / d;
    for (let j = 0; j < Q4_0_BLOCK; j++) q[j] = Math.min(15, Math.trunc(x[base + j] * id + 8.5));
    const at = outOffset + b * Q4_0_BYTES;
    writeF16(out, at, d);
    for (let j = 0; j < 16; j++) out[at + 2 + j] = q[j] | (q[j + 16] << 4);
  }
  return out;
}

/** Dequantizes `blocks` Q4_0 blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ4_0(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q4_0_BYTES;
    const d = readF16(src, at);
    const o = outOffset + b * Q4_0_BLOCK;
    for (let j = 0; j < 16; j++) {
      const byte = src[at + 2 + j];
      out[o + j] = f32(((byte & 0xf) - 8) * d);
      out[o + j + 16] = f32(((byte >> 4) - 8) * d);
    }
  }
}
