/**
 * Q8X: the internal 32-value block the quantized matmuls compute on for llama.cpp's K-quants
 * (Q4_K, Q6_K) and for fused matrices that mix block types (q|k|v of a Q4_K_M file: Q4_K q/k,
 * Q6_K v). Never written to files; transcoded at load time from the file's blocks.
 *
 * A block (44 bytes, 11 bits a weight): f32 `lo` (the scale of values 0..15), f32 `hi` (of
 * values 16..31), f32 `min`, then 32 int8 quants; value = f32(f32(scale * q) - min). Each
 * source type maps onto it so that this is exactly ggml's dequantized value:
 * - Q4_K sub-block of 32 (6-bit sc, m): lo = hi = f32(d * sc), min = f32(dmin * m), q = nibble;
 * - Q6_K: two sub-blocks of 16 (int8 sc): lo / hi = f32(d * sc), min = 0, q = 6-bit - 32;
 * - Q8_0: lo = hi = d, min = 0, q as stored; Q4_0: lo = hi = d, min = 0, q = nibble - 8.
 * @module
 */
import { readF16 } from "./f16.ts";
import { Q4_K_BYTES, Q6_K_BYTES, QK_K } from "./k_quants.ts";
import type { QuantType } from "./ggml_types.ts";

/** Values per Q8X block. */
export const Q8X_BLOCK = 32;
/** Bytes per Q8X block: three f32 then 32 int8. */
export const Q8X_BYTES = 44;
/** Byte offset of the int8 quants in a block. */
const QS = 12;

const f32 = Math.fround;

/** Bytes per source block and values per source block, by type. */
const SOURCE: Record<QuantType, { bytes: number; values: number }> = {
  Q8_0: { bytes: 34, values: 32 },
  Q4_0: { bytes: 18, values: 32 },
  Q4_K: { bytes: Q4_K_BYTES, values: QK_K },
  Q6_K: { bytes: Q6_K_BYTES, values: QK_K },
};

/** Writes one Q8X block header at `at` of `view`. */
function header(view: DataView, at: number, lo: number, hi: number, min: number): void {
  view.setFloat32(at, lo, true);
  view.setFloat32(at + 4, hi, true);
  view.setFloat32(at + 8, min, true);
}

/** Q4_K's j-th 6-bit (scale, min) pair from the 12 scale bytes at `s` (ggml's get_scale_min_k4). */
export function q4kScaleMin(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j] & 63, b[s + j + 4] & 63];
  return [
    (b[s + j + 4] & 0xf) | ((b[s + j - 4] >> 6) << 4),
    (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4),
  ];
}

/**
 * Transcodes `blocks` source blocks of `type` (a whole number of rows' worth, in row order)
 * into Q8X blocks (in the same value order). Exact: {@link dequantizeQ8X} of the result
 * equals ggml's dequantization of the source, bit for bit.
 */
export function transcodeToQ8X(type: QuantType, src: Uint8Array, blocks: number): Uint8Array<ArrayBuffer> {
  const { bytes, values } = SOURCE[type];
  if (src.length < blocks * bytes) throw new RangeError(`${type}: ${src.length} bytes hold fewer than ${blocks} blocks`);
  const out = new Uint8Array((blocks * values / Q8X_BLOCK) * Q8X_BYTES);
  const view = new DataView(out.buffer);
  const signed = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
  let o = 0;
  for (let b = 0; b < blocks; b++) {
    const at = b * bytes;
    if (type === "Q8_0" || type === "Q4_0") {
      const d = readF16(src, at);
      header(view, o, d, d, 0);
      for (let j = 0; j < 32; j++) {
        out[o + QS + j] = type === "Q8_0"
          ? src[at + 2 + j]
          : (((j < 16 ? src[at + 2 + j] & 0xf : src[at + 2 + j - 16] >> 4) - 8) & 0xff);
      }
      o += Q8X_BYTES;
    } else if (type === "Q4_K") {
      const d = readF16(src, at);
      const dmin = readF16(src, at + 2);
      // Sub-block 2g: low nibbles of bytes 32g..32g+31; sub-block 2g + 1: their high nibbles.
      for (let s = 0; s < 8; s++) {
        const [sc, m] = q4kScaleMin(src, at + 4, s);
        const scale = f32(d * sc);
        header(view, o, scale, scale, f32(dmin * m));
        const q = at + 16 + 32 * (s >> 1);
        const shift = 4 * (s & 1);
        for (let l = 0; l < 32; l++) out[o + QS + l] = (src[q + l] >> shift) & 0xf;
        o += Q8X_BYTES;
      }
    } else {
      const d = readF16(src, at + 208);
      // Half n (128 values) of four 32-value groups t: ql bytes 64n + (t & 1) * 32 + l, nibble
      // t >> 1; qh byte 32n + l, bits 2t; scales 8n + 2t (values l < 16) and 8n + 2t + 1.
      for (let n = 0; n < 2; n++) {
        for (let t = 0; t < 4; t++) {
          const sc = at + 192 + 8 * n + 2 * t;
          header(view, o, f32(d * signed[sc]), f32(d * signed[sc + 1]), 0);
          for (let l = 0; l < 32; l++) {
            const low = (src[at + 64 * n + 32 * (t & 1) + l] >> (4 * (t >> 1))) & 0xf;
            const high = (src[at + 128 + 32 * n + l] >> (2 * t)) & 3;
            out[o + QS + l] = ((low | (high << 4)) - 32) & 0xff;
          }
          o += Q8X_BYTES;
        }
      }
    }
  }
  return out;
}

/** Dequantizes `blocks` Q8X blocks from `src` at `srcOffset` into `out` at `outOffset`. */
export function dequantizeQ8X(src: Uint8Array, srcOffset: number, blocks: number, out: Float32Array, outOffset = 0): void {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const signed = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
  for (let b = 0; b < blocks; b++) {
    const at = srcOffset + b * Q8X_BYTES;
    const lo = view.getFloat32(at, true);
    const hi = view.getFloat32(at + 4, true);
    const min = view.getFloat32(at + 8, true);
    for (let j = 0; j < 32; j++) {
      out[outOffset + 32 * b + j] = f32(f32((j < 16 ? lo : hi) * signed[at + QS + j]) - min);
    }
  }
}

/** Source blocks of `type` per row of `k` values. */
export function sourceBlocksPerRow(type: QuantType, k: number): number {
  return k / SOURCE[type].values;
}
