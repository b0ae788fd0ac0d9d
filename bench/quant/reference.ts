/**
 * CPU references for the quantized matmuls, built from the dequantizers in
 * `src/model/quant/` (JavaScript doubles): the exact path is x times the dequantized weights;
 * the fast path is the exact integer dot product of Q8 activation blocks with the weight
 * blocks, scaled by d_w * d_x, as the kernels compute it.
 * @module
 */
import { dequantize } from "../../src/model/quant/dequantize.ts";
import type { QuantMatrix } from "../../src/model/quant/pack_c8.ts";
import { GGML_TYPES } from "../../src/model/quant/ggml_types.ts";
import { xqRowWords } from "../../src/kernels/quant_matmul.ts";
import { dequantizeQ8X } from "../../src/model/quant/q8x.ts";
import { dequantizeQ4X } from "../../src/model/quant/q4x.ts";

/** The dequantized weights, row-major [rows, k] (llama.cpp's values). */
export function dequantizeMatrix(m: QuantMatrix): Float32Array {
  if (m.type !== "Q8X" && m.type !== "Q4X") return dequantize(m.type, m.data);
  const out = new Float32Array(m.rows * m.k);
  (m.type === "Q8X" ? dequantizeQ8X : dequantizeQ4X)(m.data, 0, (m.rows * m.k) / 32, out);
  return out;
}

/** out[r, n] = sum_k x[r, k] * W[n, k] over the dequantized weights. */
export function quantMatmulRef(x: ArrayLike<number>, m: QuantMatrix, rows: number): Float64Array {
  const w = dequantizeMatrix(m);
  const out = new Float64Array(rows * m.rows);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < m.rows; n++) {
      let a = 0;
      for (let k = 0; k < m.k; k++) a += x[r * m.k + k] * w[n * m.k + k];
      out[r * m.rows + n] = a;
    }
  }
  return out;
}

/** One activation row as `quantize_rows` stores it: int8 quants, f32 scales, i32 block sums. */
export interface QuantRow {
  q: Int8Array;
  d: Float32Array;
  sum: Int32Array;
}

/** Splits `rows` quantized activation rows (the kernel's buffer words) into their parts. */
export function readQuantRows(words: Uint32Array, rows: number, k: number): QuantRow[] {
  const stride = xqRowWords(k);
  const kb = k / 32;
  return Array.from({ length: rows }, (_, r) => {
    const row = words.slice(r * stride, (r + 1) * stride);
    return {
      q: new Int8Array(row.buffer, 0, k).slice(),
      d: new Float32Array(row.buffer, k, kb).slice(),
      sum: new Int32Array(row.buffer, k + 4 * kb, kb).slice(),
    };
  });
}

/** What `quantize_rows` should produce for a row `u` (already normalized): llama.cpp's Q8 math. */
export function quantizeRowRef(u: ArrayLike<number>): QuantRow {
  const k = u.length;
  const kb = k / 32;
  const out: QuantRow = { q: new Int8Array(k), d: new Float32Array(kb), sum: new Int32Array(kb) };
  for (let b = 0; b < kb; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(u[32 * b + i]));
    const d = Math.fround(amax / 127);
    const id = d > 0 ? Math.fround(1 / d) : 0;
    out.d[b] = d;
    for (let i = 0; i < 32; i++) {
      const v = Math.fround(u[32 * b + i] * id);
      // WGSL round(): halves to even.
      const f = Math.floor(v);
      const q = v - f === 0.5 ? (f % 2 === 0 ? f : f + 1) : Math.round(v);
      out.q[32 * b + i] = q;
      out.sum[b] += q;
    }
  }
  return out;
}

/** The fast path's result from quantized rows: per block, exact integer dot times d_w * d_x. */
export function fastMatmulRef(xq: QuantRow[], m: QuantMatrix): Float64Array {
  if (m.type === "Q8X" || m.type === "Q4X") throw new RangeError(`${m.type} has no fast path`);
  const kb = m.k / 32;
  const bytes = GGML_TYPES[m.type].blockBytes;
  const signed = new Int8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  const out = new Float64Array(xq.length * m.rows);
  xq.forEach((row, r) => {
    for (let n = 0; n < m.rows; n++) {
      let a = 0;
      for (let b = 0; b < kb; b++) {
        const at = (n * kb + b) * bytes;
        const dw = new Float16Array(new Uint8Array([m.data[at], m.data[at + 1]]).buffer)[0];
        let s = 0;
        for (let i = 0; i < 32; i++) {
          const wq = m.type === "Q8_0"
            ? signed[at + 2 + i]
            : (i < 16 ? m.data[at + 2 + i] & 0xf : m.data[at + 2 + i - 16] >> 4) - 8;
          s += wq * row.q[32 * b + i];
        }
        a += s * dw * row.d[b];
      }
      out[r * m.rows + n] = a;
    }
  });
  return out;
}
