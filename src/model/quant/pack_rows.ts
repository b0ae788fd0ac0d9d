/**
 * Load-time layout of Q8_0 / Q4_0 / Q8X matrices for the GPU-family quantized matmuls
 * (`kernels/qgemv_wg.wgsl`, `kernels/qgemm_tiled.wgsl`), packed from llama.cpp's block bytes.
 *
 * llama.cpp's row format with the quants and the scales split apart so both are aligned:
 * output column `n` (in {@link ColumnMap} order, padded with zero columns to a multiple of 8)
 * holds its K / 32 blocks' quants as one contiguous run (Q8_0: 32 bytes a block, Q4_0: the 16
 * nibble bytes), so neighbouring invocations reading neighbouring blocks of a column read
 * neighbouring 16-byte words (coalesced); after all quants, the f16 scale of (n, block s) at
 * half index `n * K/32 + s`. Bytes: Q8_0 34 per block as in the file, Q4_0 18.
 * Q8X (`q8x.ts`): the 32 int8 quants per block as Q8_0's, then three regions of one f32 per
 * (n, s) at index `n * K/32 + s`: the `lo` scales, the `hi` scales, the mins (44 bytes a block).
 * @module
 */
import type { ColumnMap } from "../weight_layout.ts";
import {
  checkQuantMatrix,
  matmulBlockBytes,
  type PackedQuantMatrix,
  type QuantMatrix,
  readU32,
} from "./pack_c8.ts";

/** Quantized rows layout for `qgemv_wg` / `qgemm_tiled`; see the module docs. */
export function packQuantRows(m: QuantMatrix, columns?: ColumnMap): PackedQuantMatrix {
  const map = checkQuantMatrix(m, columns);
  const kb = m.k / 32;
  if (m.type === "Q8X") return packQ8XRows(m, map);
  const blockBytes = matmulBlockBytes(m.type);
  const qWords = m.type === "Q8_0" ? 8 : 4;
  const region = map.length * kb * qWords;
  const out = new Uint32Array(region + Math.ceil((map.length * kb) / 8) * 4);
  map.forEach((row, n) => {
    if (row < 0) return;
    for (let b = 0; b < kb; b++) {
      const at = (row * kb + b) * blockBytes;
      const o = (n * kb + b) * qWords;
      for (let i = 0; i < qWords; i++) out[o + i] = readU32(m.data, at + 2 + 4 * i);
      const h = n * kb + b;
      out[region + (h >> 1)] |= (m.data[at] | (m.data[at + 1] << 8)) << (16 * (h & 1));
    }
  });
  return { type: m.type, data: out, cols: map.length, k: m.k };
}

/** Q8X rows: the quants as Q8_0's, then the lo, hi and min regions (see the module docs). */
function packQ8XRows(m: QuantMatrix, map: ColumnMap): PackedQuantMatrix {
  const kb = m.k / 32;
  const bytes = matmulBlockBytes("Q8X");
  const blocks = map.length * kb;
  const out = new Uint32Array(11 * blocks);
  map.forEach((row, n) => {
    if (row < 0) return;
    for (let b = 0; b < kb; b++) {
      const at = (row * kb + b) * bytes;
      const h = n * kb + b;
      for (let t = 0; t < 3; t++) out[8 * blocks + t * blocks + h] = readU32(m.data, at + 4 * t);
      for (let i = 0; i < 8; i++) out[8 * h + i] = readU32(m.data, at + 12 + 4 * i);
    }
  });
  return { type: m.type, data: out, cols: map.length, k: m.k };
}
