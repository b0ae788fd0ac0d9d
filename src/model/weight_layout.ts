/**
 * Load-time weight layouts for the matmul kernels (pure functions, no GPU).
 *
 * A Hugging Face Linear weight is row-major `[N, K]` (one row per output column). The kernels
 * want other orders, chosen once when the checkpoint is uploaded:
 *
 * - **column blocks** (`packColumnBlocks`, CPU family, `kernels/gemv_c8.wgsl`): output columns
 *   are grouped eight at a time; block `c` is stored as K consecutive 16-byte words, word `k`
 *   holding the eight f16 weights of columns `8c..8c+7` at input `k`. One invocation owns one
 *   block and streams its own words front to back, so every load is a full 16-byte word and
 *   each weight is unpacked once for all rows of the batch. Any K works (one word per k).
 * - **padded rows** (`packPaddedRows`, GPU family, `kernels/gemv_wg.wgsl` and
 *   `kernels/gemm_tiled.wgsl`): HF order with each row padded to a multiple of 8 halves, so a
 *   workgroup reads a row as coalesced 16-byte words.
 *
 * Both take a {@link ColumnMap} (which source row feeds each output column: a permutation with
 * zero padding) and an optional per-input scale, which folds an RMSNorm weight into the matrix
 * that follows the norm (`x / rms(x) * g` times `W` equals `(x / rms(x))` times `W * g`).
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

/** Options shared by the packers. */
export interface PackOptions {
  /** Output column order (default: identity padded to a multiple of 8). */
  columns?: ColumnMap;
  /** Multiplies input `k` of every row (an RMSNorm weight folded into the matrix). */
  kScale?: Float32Array;
}

/** A packed matrix: f16 bit patterns plus the shape the kernels see. */
export interface PackedMatrix {
  /** f16 bit patterns, ready for `writeBuffer`. */
  data: Uint16Array<ArrayBuffer>;
  /** Output columns including padding (a multiple of 8). */
  cols: number;
  /** Input length (reduction length) of the source matrix. */
  k: number;
  /** Halves per row in the padded-rows layout (K rounded up to 8); K for column blocks. */
  rowStride: number;
}

const F16 = new Float16Array(1);
const F16_BITS = new Uint16Array(F16.buffer);

function checkSource(m: HostMatrix): void {
  if (m.data.length !== m.rows * m.cols) {
    throw new WeightLayoutError(
      `matrix data has ${m.data.length} values, expected ${m.rows} x ${m.cols}`,
    );
  }
}

/** Value reader for a source matrix as f32 (f16 bits decoded). */
function reader(m: HostMatrix): (row: number, k: number) => number {
  if (m.data instanceof Float32Array) {
    const d = m.data;
    return (row, k) => d[row * m.cols + k];
  }
  const halves = new Float16Array(m.data.buffer, m.data.byteOffset, m.data.length);
  return (row, k) => halves[row * m.cols + k];
}

/** f16 bits of `v`. */
function toF16Bits(v: number): number {
  F16[0] = v;
  return F16_BITS[0];
}

/** The source value at (row, k) as f16 bits, scaled when a scale is given. */
function sourceBits(
  m: HostMatrix,
  read: (row: number, k: number) => number,
  scale: Float32Array | undefined,
): (row: number, k: number) => number {
  if (!scale && m.data instanceof Uint16Array) {
    const d = m.data;
    return (row, k) => d[row * m.cols + k];
  }
  return (row, k) => toF16Bits(scale ? read(row, k) * scale[k] : read(row, k));
}

function resolveColumns(m: HostMatrix, options: PackOptions): ColumnMap {
  const columns = options.columns ?? identityColumns(m.rows);
  if (columns.length % 8 !== 0) {
    throw new WeightLayoutError(`column map of ${columns.length} is not a multiple of 8`);
  }
  for (const r of columns) {
    if (r < -1 || r >= m.rows) {
      throw new WeightLayoutError(`column map refers to row ${r} of ${m.rows}`);
    }
  }
  if (options.kScale && options.kScale.length !== m.cols) {
    throw new WeightLayoutError(`kScale has ${options.kScale.length} values for K = ${m.cols}`);
  }
  return columns;
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
 * 8-column block computes `act(gate) * up` for 4 outputs (`gemv_c8` `GLU` epilogue).
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

/** The `(offset + w)` an RMSNorm multiplies by, as the scale to fold into the next matrix. */
export function normScale(weight: Float32Array, offset: number): Float32Array<ArrayBuffer> {
  return Float32Array.from(weight, (w) => offset + w);
}

/** Column-block layout for `kernels/gemv_c8.wgsl` (CPU family); see the module docs. */
export function packColumnBlocks(m: HostMatrix, options: PackOptions = {}): PackedMatrix {
  checkSource(m);
  const columns = resolveColumns(m, options);
  const K = m.cols;
  const bits = sourceBits(m, reader(m), options.kScale);
  const out = new Uint16Array(columns.length * K);
  for (let c = 0; c < columns.length / 8; c++) {
    for (let q = 0; q < 8; q++) {
      const row = columns[8 * c + q];
      if (row < 0) continue;
      let o = c * K * 8 + q;
      for (let k = 0; k < K; k++, o += 8) out[o] = bits(row, k);
    }
  }
  return { data: out, cols: columns.length, k: K, rowStride: K };
}

/** Padded-rows layout for the GPU family (`gemv_wg`, `gemm_tiled`); see the module docs. */
export function packPaddedRows(m: HostMatrix, options: PackOptions = {}): PackedMatrix {
  checkSource(m);
  const columns = resolveColumns(m, options);
  const K = m.cols;
  const stride = Math.ceil(K / 8) * 8;
  const bits = sourceBits(m, reader(m), options.kScale);
  const out = new Uint16Array(columns.length * stride);
  columns.forEach((row, n) => {
    if (row < 0) return;
    for (let k = 0; k < K; k++) out[n * stride + k] = bits(row, k);
  });
  return { data: out, cols: columns.length, k: K, rowStride: stride };
}
