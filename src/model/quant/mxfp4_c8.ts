/**
 * gpt-oss's MXFP4 experts as the column-block expert kernels read them
 * (`kernels/moe_c8_common.wgsl`, `W_MXFP4`), repacked at upload from the hub's bytes without
 * changing a code or a scale.
 *
 * The hub stores a `[rows, K]` matrix as `*_blocks [rows][K/32][16]` (E2M1 codes, byte j
 * holding values 2j in its low nibble and 2j + 1 in its high one) and `*_scales [rows][K/32]`
 * (one E8M0 byte per 32 values): a row's 16 code bytes per block suit a row per invocation,
 * not blocks of 8 output columns read 16 bytes at a time. So output columns go eight at a
 * time (column block `c` = columns 8c..8c+7 in the order of a {@link ColumnMap}), each block
 * one contiguous run of 16-byte words, a tile of {@link MXFP4_PAIR_WORDS} words per two
 * 32-wide K blocks (`2p`, `2p + 1`):
 * - word 0: the 16 scale bytes, u32 `2o + h` byte `l` = column `4h + l`'s scale of block
 *   `2p + o` (a K/32 that is odd leaves the last tile's odd half zero);
 * - words `1 + 8o + 2i + h`, u32 `l`: the hub's u32 `i` of column `4h + l`'s block `2p + o`
 *   (the codes of k 8i..8i+7, nibble n = k 8i + n, as stored).
 * One tile of 272 bytes holds 512 weights: 4.25 bits a weight, the hub's size, where K is a
 * multiple of 64 (gpt-oss-20b/120b: 2880 = 45 x 64).
 * @module
 */
import { type ColumnMap, identityColumns, WeightLayoutError } from "../weight_layout.ts";
import { readU32 } from "./pack_c8.ts";

/** 16-byte words per tile of two 32-wide K blocks x 8 columns (a scale word, 16 code words). */
export const MXFP4_PAIR_WORDS = 17;

/** A `[rows, k]` matrix of MXFP4 blocks as the hub stores it. */
export interface Mxfp4Matrix {
  /** Output columns (rows of the Linear weight). */
  rows: number;
  /** Input length, a multiple of 32. */
  k: number;
  /** E2M1 codes, `rows * k / 2` bytes (`[rows][k/32][16]`). */
  blocks: Uint8Array;
  /** E8M0 scales, `rows * k / 32` bytes (`[rows][k/32]`). */
  scales: Uint8Array;
}

/** Bytes of a `[cols, k]` matrix as MXFP4 column blocks (`cols` a multiple of 8). */
export function mxfp4ColumnBlockBytes(cols: number, k: number): number {
  return (cols / 8) * Math.ceil(k / 64) * MXFP4_PAIR_WORDS * 16;
}

/** The column-block layout described in the module docs, as u32 words. */
export function packMxfp4ColumnBlocks(m: Mxfp4Matrix, columns?: ColumnMap): Uint32Array<ArrayBuffer> {
  if (m.k % 32 !== 0) throw new WeightLayoutError(`MXFP4 matrix K = ${m.k} is not a multiple of 32`);
  const kb = m.k / 32;
  if (m.blocks.length !== m.rows * kb * 16 || m.scales.length !== m.rows * kb) {
    throw new WeightLayoutError(`MXFP4 matrix has ${m.blocks.length} code and ${m.scales.length} scale bytes, expected ${m.rows * kb * 16} and ${m.rows * kb} for ${m.rows} x ${m.k}`);
  }
  const map = columns ?? identityColumns(m.rows);
  if (map.length % 8 !== 0) throw new WeightLayoutError(`column map of ${map.length} is not a multiple of 8`);
  const pairs = Math.ceil(kb / 2);
  const tile = 4 * MXFP4_PAIR_WORDS;
  const out = new Uint32Array(mxfp4ColumnBlockBytes(map.length, m.k) / 4);
  for (let c = 0; c < map.length / 8; c++) {
    for (let q = 0; q < 8; q++) {
      const row = map[8 * c + q];
      if (row < 0) continue;
      if (row >= m.rows) throw new WeightLayoutError(`column map refers to row ${row} of ${m.rows}`);
      const h = q >> 2;
      const lane = q & 3;
      for (let b = 0; b < kb; b++) {
        const o = b & 1;
        const at = (c * pairs + (b >> 1)) * tile;
        out[at + 2 * o + h] |= m.scales[row * kb + b] << (8 * lane);
        for (let i = 0; i < 4; i++) out[at + 4 * (1 + 8 * o + 2 * i + h) + lane] = readU32(m.blocks, (row * kb + b) * 16 + 4 * i);
      }
    }
  }
  return out;
}
