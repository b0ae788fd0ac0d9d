/**
 * Load-time layout of Q8_0 / Q4_0 / Q8X / Q4X matrices for the GPU-family quantized matmuls
 * (`kernels/gemv_wg.wgsl`, `kernels/gemm_tiled.wgsl` with QUANT), packed from llama.cpp's block bytes.
 *
 * llama.cpp's row format with the quants and the scales split apart so both are aligned:
 * output column `n` (in {@link ColumnMap} order, padded with zero columns to a multiple of 8)
 * holds its K / 32 blocks' quants as one contiguous run (Q8_0: 32 bytes a block, Q4_0: the 16
 * nibble bytes), so neighbouring invocations reading neighbouring blocks of a column read
 * neighbouring 16-byte words (coalesced); after all quants, the f16 scale of (n, block s) at
 * half index `n * K/32 + s`. Bytes: Q8_0 34 per block as in the file, Q4_0 18.
 * Q8X (`q8x.ts`): the 32 int8 quants per block as Q8_0's, then three regions of one f32 per
 * (n, s) at index `n * K/32 + s`: the `lo` scales, the `hi` scales, the mins (44 bytes a block).
 * Q4X (`q4x.ts`): the 16 nibble bytes per block as Q4_0's, then two such f32 regions: the
 * scales, the mins (24 bytes a block).
 * @module
 */
import type { ColumnMap } from "../weight_layout.ts";
import {
  checkQuantMatrix,
  FLOAT_HEADER_BLOCKS,
  matmulBlockBytes,
  type PackedQuantMatrix,
  type QuantMatrix,
  readU32,
} from "./pack_c8.ts";

/** Quantized rows layout for `qgemv_wg` / `qgemm_tiled`; see the module docs. */
export function packQuantRows(m: QuantMatrix, columns?: ColumnMap): PackedQuantMatrix {
  const map = checkQuantMatrix(m, columns);
  const kb = m.k / 32;
  if (m.type === "Q8X" || m.type === "Q4X") return packFloatHeaderRows(m, map);
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

/**
 * Q8X / Q4X rows: the quants as Q8_0's / Q4_0's, then one f32 region per header float (Q8X lo,
 * hi, min; Q4X scale, min; see the module docs).
 */
function packFloatHeaderRows(m: QuantMatrix, map: ColumnMap): PackedQuantMatrix {
  const { floats, quantBytes } = FLOAT_HEADER_BLOCKS[m.type as "Q8X" | "Q4X"];
  const qWords = quantBytes / 4;
  const kb = m.k / 32;
  const bytes = matmulBlockBytes(m.type);
  const blocks = map.length * kb;
  const out = new Uint32Array((qWords + floats) * blocks);
  map.forEach((row, n) => {
    if (row < 0) return;
    for (let b = 0; b < kb; b++) {
      const at = (row * kb + b) * bytes;
      const h = n * kb + b;
      for (let t = 0; t < floats; t++) out[qWords * blocks + t * blocks + h] = readU32(m.data, at + 4 * t);
      for (let i = 0; i < qWords; i++) out[qWords * h + i] = readU32(m.data, at + 4 * floats + 4 * i);
    }
  });
  return { type: m.type, data: out, cols: map.length, k: m.k };
}
