/**
 * Dequantizers for llama.cpp's Q4_K and Q6_K super-blocks of 256 values (the two types of a
 * Q4_K_M file), following ggml-quants.c's dequantize_row_q4_K / _q6_K with f32 rounding at
 * each step as C does. (`convert --quantization q4_k_m` writes them: k_quantize.ts.)
 *
 * Q4_K (144 bytes): f16 d, f16 dmin, 12 bytes packing eight 6-bit scales and eight 6-bit
 * mins, 128 bytes of nibbles; each 64 values use two (scale, min) pairs, value =
 * d*sc * q - dmin*m. Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of 2-bit high
 * parts, 16 int8 scales (one per 16 values), f16 d; value = d * sc * (q - 32).
 * @module
 */
import { readF16 } from "./f16.ts";

/** Values per super-block. */
export const QK_K = 256;
/** Bytes per Q4_K block. */
export const Q4_K_BYTES = 144;
/** Bytes per Q6_K block. */
export const Q6_K_BYTES = 210;

const f32 = Math.fround;

/** The j-th 6-bit (scale, min) pair of a Q4_K block's 12 scale bytes at `s`. */
function scaleMin(bytes: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [bytes[s + j] & 63, bytes[s + j + 4] & 63];
  return [
    (bytes[s + j + 4] & 0xf) | ((bytes[s + j - 4] >> 6) << 4),
    (bytes[s + j + 4] >> 4) | ((bytes[s + j] >> 6) << 4),
  ];
}

/** Dequantizes `blocks` Q4_K blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ4_K(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q4_K_BYTES;
    const d = readF16(src, at);
    const dmin = readF16(src, at + 2);
    let q = at + 16;
    let y = outOffset + b * QK_K;
    for (let j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      const [sc1, m1q] = scaleMin(src, at + 4, is);
      const [sc2, m2q] = scaleMin(src, at + 4, is + 1);
      const d1 = f32(d * sc1);
      const m1 = f32(dmin * m1q);
      const d2 = f32(d * sc2);
      const m2 = f32(dmin * m2q);
      for (let l = 0; l < 32; l++) out[y++] = f32(f32(d1 * (src[q + l] & 0xf)) - m1);
      for (let l = 0; l < 32; l++) out[y++] = f32(f32(d2 * (src[q + l] >> 4)) - m2);
    }
  }
}

/** Dequantizes `blocks` Q6_K blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ6_K(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  const signed = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q6_K_BYTES;
    const d = readF16(src, at + 208);
    let ql = at;
    let qh = at + 128;
    let sc = at + 192;
    let y = outOffset + b * QK_K;
    for (let n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l];
        const q1 = ((src[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        out[y + l] = f32(f32(d * signed[sc + is]) * q1);
        out[y + l + 32] = f32(f32(d * signed[sc + is + 2]) * q2);
        out[y + l + 64] = f32(f32(d * signed[sc + is + 4]) * q3);
        out[y + l + 96] = f32(f32(d * signed[sc + is + 6]) * q4);
      }
    }
  }
}
