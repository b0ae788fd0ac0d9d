/**
 * Quantizers to llama.cpp's Q4_K and Q6_K super-blocks (256 values), for `convert
 * --quantization q4_k_m`: per 32 values (Q4_K) an unsigned 4-bit range from the sub-block's
 * minimum and maximum, per 16 values (Q6_K) a signed 6-bit range from its largest magnitude,
 * the 6-bit / 8-bit sub-scales rounded against the super-block's f16 scale. Not ggml's
 * quantizers (llama-quantize searches each sub-block's scale and min to minimise the error):
 * valid blocks that approximate the values, read back exactly as ggml dequantizes them
 * (k_quants.ts).
 * @module
 */
import { writeF16 } from "./f16.ts";
import { Q4_K_BYTES, Q6_K_BYTES, QK_K } from "./k_quants.ts";

/** Writes a Q4_K block's 6-bit (scale, min) pair j into its 12 scale bytes at `s`. */
export function setScaleMin(b: Uint8Array, s: number, j: number, sc: number, m: number): void {
  if (j < 4) {
    b[s + j] = (b[s + j] & 0xc0) | sc;
    b[s + j + 4] = (b[s + j + 4] & 0xc0) | m;
  } else {
    b[s + j + 4] = (sc & 0xf) | ((m & 0xf) << 4);
    b[s + j - 4] = (b[s + j - 4] & 0x3f) | ((sc >> 4) << 6);
    b[s + j] = (b[s + j] & 0x3f) | ((m >> 4) << 6);
  }
}

const f32 = Math.fround;

/** Quantizes `x` (a multiple of 256 values) to Q4_K: per 32 values an unsigned 4-bit range. */
export function quantizeQ4K(x: Float32Array): Uint8Array {
  const blocks = x.length / QK_K;
  const out = new Uint8Array(blocks * Q4_K_BYTES);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q4_K_BYTES;
    const v = x.subarray(b * QK_K, (b + 1) * QK_K);
    const scales: number[] = [];
    const mins: number[] = [];
    for (let s = 0; s < 8; s++) {
      const sub = v.subarray(32 * s, 32 * s + 32);
      const lo = Math.min(0, ...sub);
      const hi = Math.max(...sub);
      scales.push((hi - lo) / 15);
      mins.push(-lo);
    }
    const d = Math.max(...scales) / 63 || 1e-8;
    const dmin = Math.max(...mins) / 63 || 1e-8;
    writeF16(out, at, d);
    writeF16(out, at + 2, dmin);
    const dd = new Float16Array(new Uint8Array(out.subarray(at, at + 4)).buffer);
    for (let s = 0; s < 8; s++) {
      const sc = Math.min(63, Math.round(scales[s] / dd[0]));
      const m = Math.min(63, Math.round(mins[s] / dd[1]));
      setScaleMin(out, at + 4, s, sc, m);
      const scale = f32(dd[0] * sc);
      const min = f32(dd[1] * m);
      for (let l = 0; l < 32; l++) {
        const q = scale > 0 ? Math.max(0, Math.min(15, Math.round((v[32 * s + l] + min) / scale))) : 0;
        out[at + 16 + 32 * (s >> 1) + l] |= q << (4 * (s & 1));
      }
    }
  }
  return out;
}

/** Quantizes `x` (a multiple of 256 values) to Q6_K: per 16 values a signed 6-bit range. */
export function quantizeQ6K(x: Float32Array): Uint8Array {
  const blocks = x.length / QK_K;
  const out = new Uint8Array(blocks * Q6_K_BYTES);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q6_K_BYTES;
    const v = x.subarray(b * QK_K, (b + 1) * QK_K);
    const scales: number[] = [];
    for (let s = 0; s < 16; s++) {
      scales.push(Math.max(...v.subarray(16 * s, 16 * s + 16).map(Math.abs)) / 31);
    }
    const d = Math.max(...scales) / 127 || 1e-8;
    writeF16(out, at + 208, d);
    const df = new Float16Array(new Uint8Array(out.subarray(at + 208, at + 210)).buffer)[0];
    const sc = scales.map((s) => Math.min(127, Math.round(s / df)));
    sc.forEach((s, i) => out[at + 192 + i] = s);
    for (let i = 0; i < QK_K; i++) {
      // Value i: half n, group t, lane l (see ggml's dequantize_row_q6_K).
      const n = i >> 7;
      const t = (i >> 5) & 3;
      const l = i & 31;
      const scale = f32(df * sc[8 * n + 2 * t + (l >> 4)]);
      const q = (scale > 0 ? Math.max(-32, Math.min(31, Math.round(v[i] / scale))) : 0) + 32;
      out[at + 64 * n + 32 * (t & 1) + l] |= (q & 0xf) << (4 * (t >> 1));
      out[at + 128 + 32 * n + l] |= (q >> 4) << (2 * t);
    }
  }
  return out;
}
