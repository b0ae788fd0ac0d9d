/**
 * llama.cpp's Q8_0: blocks of 32 values along a row, each an f16 scale `d` then 32 int8
 * quants; value = q * d. Quantized with llama.cpp's reference formula (quantize_row_q8_0_ref)
 * carried out in double precision, which is how quant-goldens.json was made: d = max|x| / 127,
 * q = round(x * (1 / d)) with halves away from zero, the stored scale f16(d). On 16-bit
 * checkpoints x = ±max/2 is an exact tie (63.5) on about 0.4% of weights; f32 arithmetic or a
 * plain x / d resolves some of them the other way, which moves logits by ~2e-3 of their range.
 * @module
 */
import { readF16, writeF16 } from "./f16.ts";

/** Values per block. */
export const Q8_0_BLOCK = 32;
/** Bytes per block. */
export const Q8_0_BYTES = 34;

const f32 = Math.fround;

/** Quantizes `x` (length a multiple of 32) into `out` at `outOffset` (x.length / 32 blocks). */
export function quantizeQ8_0(x: Float32Array, out: Uint8Array = new Uint8Array((x.length / Q8_0_BLOCK) * Q8_0_BYTES), outOffset = 0): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0) throw new RangeError(`Q8_0 needs a multiple of 32 values, got ${x.length}`);
  const qs = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b * Q8_0_BLOCK < x.length; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[base + j]));
    const d = amax / 127;
    const id = d === 0 ? 0 : 1 / d;
    const at = outOffset + b * Q8_0_BYTES;
    writeF16(out, at, d);
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = x[base + j] * id;
      // Halves away from zero (C's roundf), not Math.round's halves up.
      qs[at + 2 + j] = Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
    }
  }
  return out;
}

/** Dequantizes `blocks` Q8_0 blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ8_0(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  const qs = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q8_0_BYTES;
    const d = readF16(src, at);
    const o = outOffset + b * Q8_0_BLOCK;
    for (let j = 0; j < Q8_0_BLOCK; j++) out[o + j] = f32(qs[at + 2 + j] * d);
  }
}
