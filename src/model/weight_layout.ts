/**
 * Load-time weight layouts for the matmul kernels (pure functions, no GPU).
 *
 * A Hugging Face Linear weight is row-major `[N, K]` (one row per output column). The kernels
 * want other orders, chosen once when the checkpoint is uploaded:
 *
 * - **column blocks** (`packColumnBlocks`, CPU family, `kernels/gemv_c8.wgsl`): output columns
 *   are grouped eight at a time; block `c` is stored as K consecutive groups of 8 weights
 *   (one 16-byte word in f16, two in f32), group `k` holding columns `8c..8c+7` at input `k`.
 *   One invocation owns one block and streams its own words front to back, so every load is
 *   a full 16-byte word and each weight is unpacked once for all rows of the batch.
 * - **padded rows** (`packPaddedRows`, GPU family, `kernels/gemv_wg.wgsl` and
 *   `kernels/gemm_tiled.wgsl`): HF order with each row padded to a multiple of 8 weights, so
 *   a workgroup reads a row as coalesced 16-byte words.
 *
 * Both take a {@link ColumnMap} (which source row feeds each output column: a permutation with
 * zero padding to a multiple of 8). Blocks of 8 columns are independent, so a packed matrix
 * splits over several buffers at any block boundary.
 * @module
 */

/** Raised when a layout is asked for shapes it cannot represent. */
export class WeightLayoutError extends Error {
  readonly code = "WEIGHT_LAYOUT";
  constructor(message: string) {
    super(message);
    this.name = "WeightLayoutError";
  }
}

/** A row-major `[rows, cols]` matrix: f16 bit patterns or f32 values. */
export interface HostMatrix {
  data: Uint16Array | Float32Array;
  rows: number;
  cols: number;
}

/** For each output column, the source row it takes, or -1 for a zero column (padding). */
export type ColumnMap = Int32Array;

/** Which layout a packed matrix is in. */
export type MatrixLayout = "column_blocks" | "padded_rows";

/** A packed matrix: elements of the source's type, plus the shape the kernels see. */
export interface PackedMatrix {
  /** f16 bit patterns or f32 values, ready for `writeBuffer`. */
  data: Uint16Array<ArrayBuffer> | Float32Array<ArrayBuffer>;
  layout: MatrixLayout;
  /** Output columns including padding (a multiple of 8). */
  cols: number;
  /** Input length (reduction length) of the source matrix. */
  k: number;
  /** Elements per padded row (K rounded up to 8), or K for column blocks. */
  rowStride: number;
  /** Elements of one block of 8 columns (8 x rowStride). */
  blockElements: number;
}

function checkSource(m: HostMatrix): void {
  if (m.data.length !== m.rows * m.cols) {
    throw new WeightLayoutError(
      `matrix data has ${m.data.length} values, expected ${m.rows} x ${m.cols}`,
    );
  }
}

function resolveColumns(m: HostMatrix, columns: ColumnMap | undefined): ColumnMap {
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

/** An empty array of the source's element type. */
function like(m: HostMatrix, n: number): Uint16Array<ArrayBuffer> | Float32Array<ArrayBuffer> {
  return m.data instanceof Float32Array ? new Float32Array(n) : new Uint16Array(n);
}

/** Identity order over `n` columns, padded with zero columns to a multiple of `multiple`. */
export function identityColumns(n: number, multiple = 8): ColumnMap {
  const padded = Math.ceil(n / multiple) * multiple;
  const map = new Int32Array(padded).fill(-1);
  for (let i = 0; i < n; i++) map[i] = i;
  return map;
}

/**
 * Column order for a fused gate|up matrix (`gate` rows `0..inter-1`, `up` rows
 * `inter..2*inter-1`): blocks of 8 columns hold gate `4b..4b+3` then up `4b..4b+3`, so one
 * 8-column block computes `act(gate) * up` for 4 outputs (the `GLU` epilogue).
 */
export function gluColumns(inter: number): ColumnMap {
  const blocks = Math.ceil(inter / 4);
  const map = new Int32Array(blocks * 8).fill(-1);
  for (let b = 0; b < blocks; b++) {
    for (let q = 0; q < 4; q++) {
      const i = 4 * b + q;
      if (i < inter) {
        map[8 * b + q] = i;
        map[8 * b + 4 + q] = inter + i;
      }
    }
  }
  return map;
}

/**
 * Column order for a fused q|k|v matrix whose epilogue applies rotate-half RoPE: in q and k
 * heads, block `i` holds dims `4i..4i+3` and their rotation partners `half+4i..half+4i+3`;
 * v heads keep their order. Needs `headDim % 8 == 0`.
 */
export function ropeColumns(numHeads: number, numKvHeads: number, headDim: number): ColumnMap {
  if (headDim % 8 !== 0) {
    throw new WeightLayoutError(`RoPE layout needs head_dim % 8 == 0, got ${headDim}`);
  }
  const half = headDim / 2;
  const heads = numHeads + 2 * numKvHeads;
  const map = new Int32Array(heads * headDim);
  for (let h = 0; h < heads; h++) {
    const base = h * headDim;
    const rotated = h < numHeads + numKvHeads;
    for (let b = 0; b < headDim / 8; b++) {
      for (let q = 0; q < 8; q++) {
        const d = rotated ? (q < 4 ? 4 * b + q : half + 4 * b + q - 4) : 8 * b + q;
        map[base + 8 * b + q] = base + d;
      }
    }
  }
  return map;
}

/** Reorders a per-column vector (a bias) by a column map; padding columns get 0. */
export function permuteColumns(
  values: Float32Array,
  columns: ColumnMap,
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(columns.length);
  columns.forEach((r, i) => (out[i] = r < 0 ? 0 : values[r]));
  return out;
}

/** The `(offset + w)` an RMSNorm multiplies by (bound as `gamma`). */
export function normScale(weight: Float32Array, offset: number): Float32Array<ArrayBuffer> {
  return Float32Array.from(weight, (w) => offset + w);
}

/** Elements a packed row takes in `layout`: K for column blocks, K rounded up to 8 for padded rows. */
export function layoutRowStride(k: number, layout: MatrixLayout): number {
  return layout === "column_blocks" ? k : Math.ceil(k / 8) * 8;
}

/** Column-block layout for `kernels/gemv_c8.wgsl` (CPU family); see the module docs. */
export function packColumnBlocks(m: HostMatrix, columns?: ColumnMap): PackedMatrix {
  checkSource(m);
  const map = resolveColumns(m, columns);
  const K = m.cols;
  const src = m.data;
  const out = like(m, map.length * K);
  for (let c = 0; c < map.length / 8; c++) {
    for (let q = 0; q < 8; q++) {
      const row = map[8 * c + q];
      if (row < 0) continue;
      let o = c * K * 8 + q;
      const base = row * K;
      for (let k = 0; k < K; k++, o += 8) out[o] = src[base + k];
    }
  }
  return { data: out, layout: "column_blocks", cols: map.length, k: K, rowStride: K, blockElements: 8 * K };
}

/** Padded-rows layout for the GPU family (`gemv_wg`, `gemm_tiled`); see the module docs. */
export function packPaddedRows(m: HostMatrix, columns?: ColumnMap): PackedMatrix {
  checkSource(m);
  const map = resolveColumns(m, columns);
  const K = m.cols;
  const stride = layoutRowStride(K, "padded_rows");
  const out = like(m, map.length * stride);
  map.forEach((row, n) => {
    if (row >= 0) out.set(m.data.subarray(row * K, (row + 1) * K), n * stride);
  });
  return { data: out, layout: "padded_rows", cols: map.length, k: K, rowStride: stride, blockElements: 8 * stride };
}

/** Packs `m` in `layout`. */
export function packMatrix(m: HostMatrix, layout: MatrixLayout, columns?: ColumnMap): PackedMatrix {
  return layout === "column_blocks" ? packColumnBlocks(m, columns) : packPaddedRows(m, columns);
}
