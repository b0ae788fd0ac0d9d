/**
 * Quantized matrices for the weight uploader: the blocks of one or several HF tensors fused
 * by rows (q|k|v, gate|up) read through `TensorSource.readBlocks` (never dequantized; Q4_K is
 * transcoded to Q4X blocks, `q4x.ts`, and Q6_K and fused matrices that mix block types to Q8X
 * blocks, `q8x.ts`), and
 * their packing for a kernel family, split into parts of whole 8-column blocks that each fit
 * one storage binding (each part a self-contained layout, so a part binds like a matrix).
 * @module
 */
import type { QuantType } from "./ggml_types.ts";
import { collectChunks, type SourceTensor, type TensorSource } from "../tensor_source.ts";
import { release } from "../release.ts";
import type { ColumnMap } from "../weight_layout.ts";
import {
  c8TileWords,
  matmulBlockBytes,
  type MatmulQuantType,
  type PackedQuantMatrix,
  packQuantColumnBlocks,
  type QuantMatrix,
} from "./pack_c8.ts";
import { packQuantRows } from "./pack_rows.ts";
import { sourceBlocksPerRow, transcodeToQ8X } from "./q8x.ts";
import { transcodeQ4KToQ4X } from "./q4x.ts";

/** The layouts the quantized kernels read: CPU family column blocks, GPU family rows. */
export type QuantLayout = "column_blocks" | "rows";

/**
 * The block type the quantized matmuls run a source tensor as on its own: Q8_0 / Q4_0 as
 * stored, Q4_K as Q4X, Q6_K as Q8X; null for float tensors.
 */
export function matmulQuantType(info: SourceTensor): MatmulQuantType | null {
  const t = info.blocks?.type;
  return t ? matmulTypeOf(t) : null;
}

/** The block type a tensor of source type `t` runs as on its own (see {@link matmulQuantType}). */
export function matmulTypeOf(t: QuantType): MatmulQuantType {
  return t === "Q8_0" || t === "Q4_0" ? t : t === "Q4_K" ? "Q4X" : "Q8X";
}

/**
 * The block type of a matrix stacking tensors of source types `types` (see
 * {@link readQuantMatrix}): one type throughout runs as that type does alone; a mix, as Q8X.
 */
export function stackedQuantType(types: readonly QuantType[]): MatmulQuantType {
  const t = types.map(matmulTypeOf);
  return t.every((x) => x === t[0]) ? t[0] : "Q8X";
}

/**
 * `raw` (whole rows of `k` values of source type `from`) as blocks of `to` (a
 * {@link stackedQuantType} including `from`): as stored, or transcoded exactly to Q4X / Q8X.
 */
export function toMatmulBlocks(from: QuantType, to: MatmulQuantType, raw: Uint8Array, rows: number, k: number): Uint8Array {
  if (to === from) return raw;
  const n = rows * sourceBlocksPerRow(from, k);
  if (to === "Q4X") return transcodeQ4KToQ4X(raw, n);
  if (to === "Q8X") return transcodeToQ8X(from, raw, n);
  throw new RangeError(`${from} blocks cannot run as ${to}`);
}

/**
 * The blocks of `names` stacked by rows as one matrix, or null unless every tensor is held as
 * blocks with the same K, a multiple of 32 (then the caller uploads floats). One Q8_0 or Q4_0
 * type throughout stays as stored; Q4_K throughout becomes Q4X (6 bits a weight); Q6_K, or a
 * mix of types (a Q4_K_M file's Q4_K q/k with Q6_K v), becomes Q8X (11 bits a weight, room for
 * every type's quants). Q4X's and Q8X's dequantized values are exactly the sources'.
 */
export async function readQuantMatrix(
  source: TensorSource,
  names: readonly string[],
): Promise<QuantMatrix | null> {
  const infos = names.map((n) => source.get(n));
  const types = infos.map(matmulQuantType);
  const k = infos[0].shape[1];
  if (
    !source.readBlocks || k % 32 !== 0 ||
    infos.some((i, n) =>
      !types[n] || i.shape.length !== 2 || i.shape[1] !== k ||
      !Number.isInteger(sourceBlocksPerRow(i.blocks!.type, k))
    )
  ) return null;
  const type = stackedQuantType(infos.map((i) => i.blocks!.type));
  const transcoded = type === "Q8X" || type === "Q4X";
  const outBytes = (i: SourceTensor) => i.shape[0] * (k / 32) * matmulBlockBytes(type);
  const data = new Uint8Array(infos.reduce((s, i) => s + outBytes(i), 0));
  let at = 0;
  for (const info of infos) {
    const blocks = info.blocks!;
    if (transcoded) {
      const raw = await collectChunks(blocks.byteLength, source.readBlocks(info));
      // Q4X only when every tensor is Q4_K (stackedQuantType).
      const out = toMatmulBlocks(blocks.type, type, raw, info.shape[0], k);
      release(raw);
      data.set(out, at);
      release(out);
    } else {
      // Chunks straight into place (no per-tensor copy), each freed once copied.
      for await (const { offset, bytes } of source.readBlocks(info)) {
        data.set(bytes, at + offset);
        release(bytes);
      }
    }
    at += outBytes(info);
  }
  return { type, rows: infos.reduce((s, i) => s + i.shape[0], 0), k, data };
}

/** One packed part: whole column blocks `blockStart .. blockStart + blocks - 1`. */
export interface QuantPart {
  packed: PackedQuantMatrix;
  blockStart: number;
  blocks: number;
}

/** Bytes one 8-column block of a `type` matrix with input length `k` takes in a layout. */
export function quantBlockBytes(type: MatmulQuantType, k: number, layout: QuantLayout): number {
  const kb = k / 32;
  if (layout === "column_blocks") return kb * 16 * c8TileWords(type);
  if (type === "Q8X" || type === "Q4X") return 8 * kb * matmulBlockBytes(type);
  return 8 * kb * (type === "Q8_0" ? 32 : 16) + 8 * kb * 2;
}

/** Packs `m` (columns in `columns` order) for a layout, in parts of at most `maxPartBytes`. */
export function packQuantParts(
  m: QuantMatrix,
  columns: ColumnMap,
  layout: QuantLayout,
  maxPartBytes: number,
): QuantPart[] {
  const blocks = columns.length / 8;
  // Rows parts pad their scale region to a word: leave room for it.
  const perPart = Math.max(
    1,
    Math.floor((maxPartBytes - 16) / quantBlockBytes(m.type, m.k, layout)),
  );
  const parts: QuantPart[] = [];
  for (let start = 0; start < blocks; start += perPart) {
    const n = Math.min(perPart, blocks - start);
    const map = columns.subarray(8 * start, 8 * (start + n));
    const packed = layout === "column_blocks"
      ? packQuantColumnBlocks(m, map)
      : packQuantRows(m, map);
    parts.push({ packed, blockStart: start, blocks: n });
  }
  return parts;
}
