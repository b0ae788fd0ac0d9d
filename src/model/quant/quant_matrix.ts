/**
 * Quantized matrices for the weight uploader: the blocks of one or several HF tensors fused
 * by rows (q|k|v, gate|up) read through `TensorSource.readBlocks` (never dequantized), and
 * their packing for a kernel family, split into parts of whole 8-column blocks that each fit
 * one storage binding (each part a self-contained layout, so a part binds like a matrix).
 * @module
 */
import type { SourceTensor, TensorSource } from "../tensor_source.ts";
import { release } from "../release.ts";
import type { ColumnMap } from "../weight_layout.ts";
import {
  type MatmulQuantType,
  type PackedQuantMatrix,
  packQuantColumnBlocks,
  type QuantMatrix,
} from "./pack_c8.ts";
import { packQuantRows } from "./pack_rows.ts";

/** The layouts the quantized kernels read: CPU family column blocks, GPU family rows. */
export type QuantLayout = "column_blocks" | "rows";

/** Whether a source tensor is held as blocks the quantized matmuls compute on. */
export function matmulQuantType(info: SourceTensor): MatmulQuantType | null {
  const t = info.blocks?.type;
  return t === "Q8_0" || t === "Q4_0" ? t : null;
}

/**
 * The blocks of `names` stacked by rows as one matrix, or null unless every tensor is held as
 * Q8_0 (or every one as Q4_0) blocks with the same K (then the caller uploads floats).
 */
export async function readQuantMatrix(
  source: TensorSource,
  names: readonly string[],
): Promise<QuantMatrix | null> {
  const infos = names.map((n) => source.get(n));
  const type = matmulQuantType(infos[0]);
  const k = infos[0].shape[1];
  if (
    !type || !source.readBlocks ||
    infos.some((i) => matmulQuantType(i) !== type || i.shape[1] !== k)
  ) return null;
  const total = infos.reduce((s, i) => s + i.blocks!.byteLength, 0);
  const data = new Uint8Array(total);
  let at = 0;
  for (const info of infos) {
    // Chunks straight into place (no per-tensor copy), each freed once copied.
    for await (const { offset, bytes } of source.readBlocks(info)) {
      data.set(bytes, at + offset);
      release(bytes);
    }
    at += info.blocks!.byteLength;
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
  if (layout === "column_blocks") return kb * 16 * (type === "Q8_0" ? 17 : 9);
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
