/**
 * Load-time layout of Q8_0 / Q4_0 / Q8X / Q4X matrices for the CPU-family quantized matmul
 * (`kernels/qgemv_c8.wgsl`), packed straight from llama.cpp's block bytes (no dequantizing).
 *
 * Output columns go eight at a time (column block `c` = columns 8c..8c+7, in the order of a
 * {@link ColumnMap}, as for the f16 `packColumnBlocks`); block `c` is one contiguous run of
 * 16-byte words, a tile per 32-wide K block: first the eight f16 scales, then the quants,
 * each u32 holding 4 consecutive k of one column:
 * - Q8_0 (17 words per tile): word `1 + 2i + h` holds k-quad `i` (k 4i..4i+3) of columns
 *   `4h..4h+3`, one column per u32 (the block's int8 bytes 4i..4i+3 as they are stored).
 * - Q4_0 (9 words per tile): word `1 + 2i + h` holds the nibble bytes 4i..4i+3 of columns
 *   `4h..4h+3`: low nibbles are k-quad `i`, high nibbles k-quad `i + 4` (llama.cpp's order).
 * - Q8X (22 words per tile, `q8x.ts`): words 0-1 the eight f32 `lo` scales (columns 0..3,
 *   4..7), 2-3 the `hi` scales, 4-5 the mins, then word `6 + 2i + h` as Q8_0's `1 + 2i + h`.
 * - Q4X (12 words per tile, `q4x.ts`): words 0-1 the f32 scales, 2-3 the mins, then word
 *   `4 + 2i + h` as Q4_0's `1 + 2i + h` (the same nibble order, so the kernel shares Q4_0's
 *   unpacking).
 * One invocation streams its own run front to back with full-word loads; the bytes of a Q8_0
 * matrix grow by 1/16 (scales padded to a word per tile), Q4_0's by 0 (same 18 bytes a block),
 * Q8X's and Q4X's by 0 (44 and 24 bytes a block).
 * @module
 */
import { type ColumnMap, identityColumns, WeightLayoutError } from "../weight_layout.ts";
import { Q8X_BYTES } from "./q8x.ts";
import { Q4X_BYTES } from "./q4x.ts";

/**
 * The block types the quantized matmuls compute on: llama.cpp's Q8_0 / Q4_0 as stored, Q4X,
 * the load-time transcoding of Q4_K (`q4x.ts`), and Q8X, that of other K-quants and of
 * mixed-type fused matrices (`q8x.ts`).
 */
export type MatmulQuantType = "Q8_0" | "Q4_0" | "Q8X" | "Q4X";

/** Bytes per 32-value block of a matmul quant type. */
export function matmulBlockBytes(type: MatmulQuantType): number {
  return { Q8_0: 34, Q4_0: 18, Q8X: Q8X_BYTES, Q4X: Q4X_BYTES }[type];
}

/**
 * The f32 header words (scales, min) and the 32 quants' bytes of the load-time block types,
 * whose layouts put one f32 per (column, block) before the quants.
 */
export const FLOAT_HEADER_BLOCKS: Record<"Q8X" | "Q4X", { floats: number; quantBytes: number }> = {
  Q8X: { floats: 3, quantBytes: 32 },
  Q4X: { floats: 2, quantBytes: 16 },
};

/** A row-major `[rows, k]` matrix of llama.cpp blocks (each row k / 32 blocks). */
export interface QuantMatrix {
  type: MatmulQuantType;
  /** Output columns (rows of the HF Linear weight). */
  rows: number;
  /** Input length, a multiple of 32. */
  k: number;
  /** The blocks, rows * (k / 32) * blockBytes bytes. */
  data: Uint8Array;
}

/** A quantized matrix in a kernel layout. */
export interface PackedQuantMatrix {
  type: MatmulQuantType;
  /** u32 words, ready for `writeBuffer`. */
  data: Uint32Array<ArrayBuffer>;
  /** Output columns including padding (a multiple of 8). */
  cols: number;
  /** Input length. */
  k: number;
}

/** 16-byte words per 32 x 8 tile of the column-block layout. */
export function c8TileWords(type: MatmulQuantType): number {
  return { Q8_0: 17, Q4_0: 9, Q8X: 22, Q4X: 12 }[type];
}

/** Checks a quantized matrix's geometry and its column map; returns the map. */
export function checkQuantMatrix(m: QuantMatrix, columns?: ColumnMap): ColumnMap {
  if (m.k % 32 !== 0) {
    throw new WeightLayoutError(`${m.type} matrix K = ${m.k} is not a multiple of 32`);
  }
  const bytes = m.rows * (m.k / 32) * matmulBlockBytes(m.type);
  if (m.data.length !== bytes) {
    throw new WeightLayoutError(
      `${m.type} matrix has ${m.data.length} bytes, expected ${bytes} for ${m.rows} x ${m.k}`,
    );
  }
  const map = columns ?? identityColumns(m.rows);
  if (map.length % 8 !== 0) {
    throw new WeightLayoutError(`column map of ${map.length} is not a multiple of 8`);
  }
  for (const r of map) {
    if (r < -1 || r >= m.rows) {
      throw new WeightLayoutError(`column map refers to row ${r} of ${m.rows}`);
    }
  }
  return map;
}

/** Little-endian u32 at `at` (blocks are not 4-byte aligned). */
export function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

/** Column-block layout for `qgemv_c8`; see the module docs. */
export function packQuantColumnBlocks(m: QuantMatrix, columns?: ColumnMap): PackedQuantMatrix {
  const map = checkQuantMatrix(m, columns);
  const kb = m.k / 32;
  if (m.type === "Q8X" || m.type === "Q4X") return packFloatHeaderColumnBlocks(m, map);
  const blockBytes = matmulBlockBytes(m.type);
  const tile = 4 * c8TileWords(m.type);
  const quads = m.type === "Q8_0" ? 8 : 4;
  const out = new Uint32Array((map.length / 8) * kb * tile);
  for (let c = 0; c < map.length / 8; c++) {
    for (let q = 0; q < 8; q++) {
      const row = map[8 * c + q];
      if (row < 0) continue;
      const h = q >> 2;
      const lane = q & 3;
      for (let b = 0; b < kb; b++) {
        const at = (row * kb + b) * blockBytes;
        const o = (c * kb + b) * tile;
        // Scales: u32 q/2 holds columns 2(q/2) (low half) and 2(q/2)+1 (high half).
        out[o + (q >> 1)] |= (m.data[at] | (m.data[at + 1] << 8)) << (16 * (q & 1));
        for (let i = 0; i < quads; i++) {
          out[o + 4 * (1 + 2 * i + h) + lane] = readU32(m.data, at + 2 + 4 * i);
        }
      }
    }
  }
  return { type: m.type, data: out, cols: map.length, k: m.k };
}

/**
 * Q8X / Q4X tiles: the f32 header words (Q8X lo / hi / min, Q4X scale / min), then the quants
 * as Q8_0's or Q4_0's (see the module docs).
 */
function packFloatHeaderColumnBlocks(m: QuantMatrix, map: ColumnMap): PackedQuantMatrix {
  const { floats, quantBytes } = FLOAT_HEADER_BLOCKS[m.type as "Q8X" | "Q4X"];
  const bytes = matmulBlockBytes(m.type);
  const kb = m.k / 32;
  const tile = 4 * c8TileWords(m.type);
  const out = new Uint32Array((map.length / 8) * kb * tile);
  const view = new DataView(m.data.buffer, m.data.byteOffset, m.data.byteLength);
  for (let c = 0; c < map.length / 8; c++) {
    for (let q = 0; q < 8; q++) {
      const row = map[8 * c + q];
      if (row < 0) continue;
      const h = q >> 2;
      const lane = q & 3;
      for (let b = 0; b < kb; b++) {
        const at = (row * kb + b) * bytes;
        const o = (c * kb + b) * tile;
        // Header float t: word 2t + h, lane q & 3 (the f32 bits as stored).
        for (let t = 0; t < floats; t++) out[o + 4 * (2 * t + h) + lane] = view.getUint32(at + 4 * t, true);
        for (let i = 0; i < quantBytes / 4; i++) {
          out[o + 4 * (2 * floats + 2 * i + h) + lane] = view.getUint32(at + 4 * floats + 4 * i, true);
        }
      }
    }
  }
  return { type: m.type, data: out, cols: map.length, k: m.k };
}
