/**
 * Q4X: the internal 32-value block the quantized matmuls compute on for matrices whose tensors
 * are all Q4_K (most of a Q4_K_M file). Never written to files; transcoded at load time.
 *
 * A block (24 bytes, 6 bits a weight): f32 `scale`, f32 `min`, then 16 bytes of nibbles in
 * Q4_0's order (byte j: low nibble = value j, high nibble = value j + 16); value =
 * f32(f32(scale * q) - min), q in 0..15. A Q4_K sub-block of 32 (6-bit sc, m) maps onto it
 * exactly: scale = f32(d * sc), min = f32(dmin * m), q = its nibble (Q4_K stores sub-blocks 2g
 * and 2g + 1 as the low and high nibbles of the same 32 bytes, so the nibbles are re-paired).
 * Fused matrices mixing Q4_K with other types stay Q8X (`q8x.ts`), whose 8-bit quants hold
 * Q6_K's values too.
 * @module
 */
import { readF16 } from "./f16.ts";
import { Q4_K_BYTES, QK_K } from "./k_quants.ts";
import { q4kScaleMin } from "./q8x.ts";

/** Values per Q4X block. */
export const Q4X_BLOCK = 32;
/** Bytes per Q4X block: two f32 then 16 nibble bytes. */
export const Q4X_BYTES = 24;
/** Byte offset of the nibbles in a block. */
export const Q4X_QS = 8;

const f32 = Math.fround;

/**
 * Transcodes `blocks` Q4_K super-blocks (a whole number of rows' worth, in row order) into
 * Q4X blocks (eight per super-block, in the same value order). Exact: {@link dequantizeQ4X}
 * of the result equals ggml's dequantization of the source, bit for bit.
 */
export function transcodeQ4KToQ4X(src: Uint8Array, blocks: number): Uint8Array<ArrayBuffer> {
  if (src.length < blocks * Q4_K_BYTES) {
    throw new RangeError(`Q4_K: ${src.length} bytes hold fewer than ${blocks} blocks`);
  }
  const out = new Uint8Array(blocks * (QK_K / Q4X_BLOCK) * Q4X_BYTES);
  const view = new DataView(out.buffer);
  let o = 0;
  for (let b = 0; b < blocks; b++) {
    const at = b * Q4_K_BYTES;
    const d = readF16(src, at);
    const dmin = readF16(src, at + 2);
    for (let s = 0; s < 8; s++) {
      const [sc, m] = q4kScaleMin(src, at + 4, s);
      view.setFloat32(o, f32(d * sc), true);
      view.setFloat32(o + 4, f32(dmin * m), true);
      // Sub-block s: nibble (s & 1) of bytes 32(s >> 1) .. +31, value l at byte l.
      const q = at + 16 + 32 * (s >> 1);
      const shift = 4 * (s & 1);
      for (let j = 0; j < 16; j++) {
        out[o + Q4X_QS + j] = ((src[q + j] >> shift) & 0xf) | (((src[q + j + 16] >> shift) & 0xf) << 4);
      }
      o += Q4X_BYTES;
    }
  }
  return out;
}

/** Dequantizes `blocks` Q4X blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ4X(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q4X_BYTES;
    const scale = view.getFloat32(at, true);
    const min = view.getFloat32(at + 4, true);
    for (let j = 0; j < 16; j++) {
      const byte = src[at + Q4X_QS + j];
      out[outOffset + 32 * b + j] = f32(f32(scale * (byte & 0xf)) - min);
      out[outOffset + 32 * b + j + 16] = f32(f32(scale * (byte >> 4)) - min);
    }
  }
}
