/**
 * Uploads a checkpoint's tensors to GPU buffers in the layouts the kernels read, chosen at
 * load time: matrices packed for their kernel family (column blocks or padded rows, see
 * `weight_layout.ts`), with q|k|v and gate|up fused and their columns ordered for the fused
 * epilogues (RoPE, act(gate) * up); norm weights as `gamma` vectors (offset + w); biases
 * permuted like their columns. Tensors stream from disk chunk by chunk. A matrix in source
 * row order (the embedding, the LM head, o and down) is packed batch of rows by batch of rows
 * as it streams, so the largest tensor is never whole on the host; a matrix whose columns are
 * reordered (q|k|v, gate|up) is gathered on the host to be packed. A packed matrix above the
 * binding limit is split into parts of whole 8-column blocks. Writes go through an
 * {@link UploadQueue}, so the staging copies of queued writes stay bounded.
 * @module
 */
import type { ModelSpec } from "./config.ts";
import type { SafetensorsDType, TensorInfo } from "./safetensors.ts";
import { collectChunks, type TensorSource } from "./tensor_source.ts";
import { CheckpointError } from "./errors.ts";
import {
  type ColumnMap,
  gluColumns,
  identityColumns,
  type MatrixLayout,
  type HostMatrix,
  layoutRowStride,
  normScale,
  packMatrix,
  permuteColumns,
  ropeColumns,
} from "./weight_layout.ts";
import { packQuantParts, readQuantMatrix } from "./quant/quant_matrix.ts";
import type { QuantMatrix } from "./quant/pack_c8.ts";
import { type UploadData, UploadQueue } from "./upload_queue.ts";
import { release } from "./release.ts";
import { moeBuffers, type MoeLayerWeights, uploadMoeLayer } from "./moe_weights.ts";

/** How matrices are stored on the GPU. Norms and biases are always f32. */
export type WeightDType = "f32" | "f16";

/**
 * Block types the quantized matmuls compute on (`kind: "quant"` weights): llama.cpp's Q8_0 /
 * Q4_0 as stored; q4x, the load-time transcoding of matrices all Q4_K to 32-value blocks of
 * nibbles with an f32 scale and min (`quant/q4x.ts`); and q8x, that of Q6_K and of fused
 * matrices that mix types, to blocks of int8 with f32 scales and min (`quant/q8x.ts`).
 */
export type QuantWeightDType = "q8_0" | "q4_0" | "q8x" | "q4x";

/** One buffer of a packed matrix: whole blocks of 8 output columns (a quantized part is a self-contained layout). */
export interface MatrixPart {
  buffer: GPUBuffer;
  /** First block (output columns 8 * blockStart ...). */
  blockStart: number;
  blocks: number;
}

/**
 * A linear weight on the GPU, packed for its kernel family. `kind` says how its elements are
 * stored, and the forward pass dispatches on it ("dense": f16/f32 values, the packed matmuls;
 * "quant": Q8_0/Q4_0/Q8X/Q4X blocks in `model/quant/quant_matrix.ts`'s layouts, the
 * quantized matmuls, which dequantize in registers).
 */
export interface MatrixWeight {
  kind: "dense" | "quant";
  /** f16/f32 for "dense", q8_0/q4_0/q8x/q4x for "quant". */
  dtype: WeightDType | QuantWeightDType;
  /** The family's layout (for "quant", "padded_rows" means the quantized rows layout). */
  layout: MatrixLayout;
  /** Output columns of the source (rows of the HF tensor). */
  n: number;
  /** Input length (columns of the HF tensor). */
  k: number;
  /** Packed output columns (a multiple of 8, padding included). */
  cols: number;
  /** Elements per packed row (padded rows) or K (column blocks); 0 for "quant". */
  rowStride: number;
  parts: MatrixPart[];
}

/** A weight the 16-bit kernels read (the embedding and the LM head are never quantized). */
export type DenseMatrixWeight = MatrixWeight & { kind: "dense"; dtype: WeightDType };

/** A Gated DeltaNet layer's small tensors (its in- and out-projections are `qkv` and `o`). */
export interface LinearAttentionWeights {
  /** conv1d.weight, [channels][kernel] f32. */
  conv: GPUBuffer;
  /** A_log and dt_bias, one per value head, f32. */
  aLog: GPUBuffer;
  dtBias: GPUBuffer;
  /** The gated RMSNorm's weight (plain w, no offset), one per value-head dim. */
  norm: GPUBuffer;
}

/** The GPU weights of one decoder layer. Norm vectors hold offset + w. */
export interface LayerWeights {
  inputNorm: GPUBuffer;
  /**
   * q|k|v, columns in RoPE order when {@link ModelWeights.ropeInQkv}; with an output gate
   * (Qwen3.5) q|k|v|gate. A Gated DeltaNet layer: its fused in-projection qkv|z|b|a.
   */
  qkv: MatrixWeight;
  qkvBias: GPUBuffer | null;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  /** gpt-oss: per-head attention sink logits [numHeads] f32, else null. */
  sinks: GPUBuffer | null;
  /** o_proj; a Gated DeltaNet layer's out_proj. */
  o: MatrixWeight;
  oBias: GPUBuffer | null;
  /** Set on Gated DeltaNet layers. */
  linear: LinearAttentionWeights | null;
  /** Llama: the pre-MLP norm. Gemma-2: the norm applied to the attention output. */
  postAttnNorm: GPUBuffer;
  /** Gemma-2 only: the pre-MLP norm and the norm on the MLP output. */
  preFfnNorm: GPUBuffer | null;
  postFfnNorm: GPUBuffer | null;
  /**
   * gate|up, columns in GLU order (4 gate then 4 up per block). A sparse layer: its shared
   * expert's (Qwen3.5-MoE), else null.
   */
  gateUp: MatrixWeight | null;
  gateUpBias: GPUBuffer | null;
  /** A sparse layer: its shared expert's, else null. */
  down: MatrixWeight | null;
  downBias: GPUBuffer | null;
  /** A sparse layer's router and experts (moe_weights.ts), else null. */
  moe: MoeLayerWeights | null;
}

/** All GPU weights of a model. */
export interface ModelWeights {
  /** The embedding table, in the same layout as the LM head (the same object when tied). */
  embed: DenseMatrixWeight;
  layers: LayerWeights[];
  finalNorm: GPUBuffer;
  lmHead: DenseMatrixWeight;
  /** Whether q|k|v's columns are in RoPE order (RoPE + the KV write in its epilogue). */
  ropeInQkv: boolean;
  /** An MTP head's input weights ({@link UploadOptions.mtpInput}), else absent. */
  mtp?: MtpInputWeights;
  /** Bytes uploaded. */
  bytes: number;
  destroy(): void;
}

/**
 * An MTP head's input (Qwen3.5's `mtp.fc` over `cat(norm_e(embedding), norm_h(hidden))`):
 * the two norms as gammas (1 + w) and fc [H, 2H].
 */
export interface MtpInputWeights {
  normEmbed: GPUBuffer;
  normHidden: GPUBuffer;
  fc: MatrixWeight;
}

/** How the decoder's linear weights are stored: each dtype present, in layer order. */
export function linearWeightDTypes(weights: ModelWeights): (WeightDType | QuantWeightDType)[] {
  return [...new Set(weights.layers.flatMap((l) => denseMatrices(l).map((m) => m.dtype)))];
}

/** A layer's dense linear weights (q|k|v, o, and gate|up, down: the MLP's or the shared expert's). */
export function denseMatrices(l: LayerWeights): MatrixWeight[] {
  return [l.qkv, l.o, l.gateUp, l.down].filter((m): m is MatrixWeight => m !== null);
}

/** Options for {@link uploadWeights}. */
export interface UploadOptions {
  /** Matrix storage: "auto" keeps f32 checkpoints f32 and stores f16/bf16 ones as f16. */
  weightDType?: "auto" | WeightDType;
  /** The kernel family's layout (default column blocks). */
  layout?: MatrixLayout;
  /** Called after each tensor with bytes done and total, for progress bars. */
  onProgress?: (done: number, total: number) => void;
  /** Read granularity from disk. */
  chunkBytes?: number;
  /** Bytes of queued writes before the upload waits for the queue (default: upload_queue.ts's `UPLOAD_BYTES_IN_FLIGHT`). */
  maxBytesInFlight?: number;
  /** Largest storage binding; larger matrices are split by column blocks (default: the device's). */
  maxBindingBytes?: number;
  /**
   * Decoder linear weights the source holds as blocks (load-time quantization, GGUF; Q4_K
   * transcoded to Q4X, Q6_K and mixed types to Q8X) are uploaded as blocks for the quantized matmuls (default true); false dequantizes
   * them to `weightDType` (the reference path for tests). Float MoE experts are quantized to
   * the source's `loadQuantType` only when true (false leaves them unquantized).
   */
  quantizedKernels?: boolean;
  /**
   * The embedding and LM head to use instead of uploading them (an MTP head shares its
   * target's); they are not destroyed with these weights.
   */
  shared?: Pick<ModelWeights, "embed" | "lmHead">;
  /**
   * Also upload an MTP head's input weights (`mtp.fc.weight`, `mtp.pre_fc_norm_embedding.weight`,
   * `mtp.pre_fc_norm_hidden.weight`) as {@link ModelWeights.mtp}.
   */
  mtpInput?: boolean;
}

/**
 * Whether a model's q|k|v matmul can apply RoPE and write K/V in its epilogue: each 8-column
 * block must hold rotation partners (head_dim % 8 == 0), and nothing may sit between the
 * projection and RoPE (Qwen3's q/k norm needs the whole head).
 */
export function ropeInQkv(spec: ModelSpec): boolean {
  return !spec.qkNorm && spec.headDim % 8 === 0 && spec.rotaryDim === spec.headDim;
}

/**
 * Columns of q|k|v for a q_proj that yields [query, gate] per head (Qwen3.5's gated
 * attention): every query head first, then k and v as usual, then every gate, so the
 * unfused RoPE path sees plain q|k|v rows and the gate sits in one block after them.
 */
export function gatedQkvColumns(numHeads: number, numKvHeads: number, headDim: number): ColumnMap {
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const map = new Int32Array(2 * q + 2 * kv);
  for (let h = 0; h < numHeads; h++) {
    for (let d = 0; d < headDim; d++) {
      map[h * headDim + d] = h * 2 * headDim + d;
      map[q + 2 * kv + h * headDim + d] = h * 2 * headDim + headDim + d;
    }
  }
  for (let i = 0; i < 2 * kv; i++) map[q + i] = 2 * q + i;
  return map;
}

const ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

/** Decodes raw little-endian tensor bytes into f32 values. */
export function decodeToF32(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array<ArrayBuffer> {
  if (dtype === "U8") return Float32Array.from(bytes);
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "F32") {
    return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice() as Float32Array<ArrayBuffer>;
  }
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
  if (dtype === "F16") return Float32Array.from(new Float16Array(halves.buffer, halves.byteOffset, halves.length));
  const out = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = halves[i] << 16;
  return new Float32Array(out.buffer);
}

/** Encodes f32 values as f16 bits (round to nearest even). */
function encodeF16(values: Float32Array): Uint16Array<ArrayBuffer> {
  return new Uint16Array(Float16Array.from(values).buffer);
}

/** Streams one tensor into a destination at an element offset, converting on the way. */
class Uploader {
  #device: GPUDevice;
  #index: TensorSource;
  #chunkBytes: number;
  #queue: UploadQueue;
  bytes = 0;

  constructor(device: GPUDevice, index: TensorSource, chunkBytes: number, maxBytesInFlight?: number) {
    this.#device = device;
    this.#index = index;
    this.#chunkBytes = chunkBytes;
    this.#queue = new UploadQueue(device.queue, maxBytesInFlight);
  }

  /** Waits until every write has executed. */
  drain(): Promise<void> {
    return this.#queue.drain();
  }

  /**
   * Writes tensor `info` into `sink(elementOffset, data)` in even-sized pieces, in order. The
   * sink copies what it keeps: `data` is released once the sink has returned.
   */
  async stream(
    info: TensorInfo,
    dtype: WeightDType,
    sink: (elementOffset: number, data: Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer>) => void | Promise<void>,
  ): Promise<void> {
    const elemBytes = ELEMENT_BYTES[info.dtype];
    let carry = new Uint8Array(0);
    let cursor = 0;
    for await (const { bytes } of this.#index.readChunks(info, this.#chunkBytes)) {
      let data = bytes;
      if (carry.length) {
        data = new Uint8Array(carry.length + bytes.length);
        data.set(carry);
        data.set(bytes, carry.length);
      }
      // Keep whole elements, and an even count so f16 writes stay 4-byte aligned.
      let usable = Math.floor(data.length / elemBytes);
      if (usable % 2 === 1) usable--;
      carry = data.slice(usable * elemBytes);
      if (usable && info.dtype === "F16" && dtype === "f16" && data.byteOffset % 2 === 0) {
        // Already f16 bits: no f32 round trip (it would allocate 3x the chunk per chunk).
        await sink(cursor, new Uint16Array(data.buffer as ArrayBuffer, data.byteOffset, usable));
        cursor += usable;
      } else {
        const f32 = decodeToF32(data.subarray(0, usable * elemBytes), info.dtype);
        const out = dtype === "f16" ? encodeF16(f32) : f32;
        if (out.length) await sink(cursor, out);
        cursor += f32.length;
        release(out);
        release(f32);
      }
      // The sink has copied what it keeps; the chunk is ours (a fresh buffer per chunk).
      release(data);
      release(bytes);
    }
    if (carry.length) {
      const f32 = decodeToF32(carry, info.dtype);
      await sink(cursor, dtype === "f16" ? encodeF16(f32) : f32);
      cursor += f32.length;
    }
    const expected = info.shape.reduce((a, b) => a * b, 1);
    if (cursor !== expected) {
      throw new CheckpointError(info.file, `tensor ${info.name}: read ${cursor} of ${expected} values`);
    }
  }

  /** Reads 1-D tensors (norms, biases) concatenated, as f32. */
  async hostVector(names: string[]): Promise<Float32Array<ArrayBuffer>> {
    const infos = names.map((n) => this.#index.get(n));
    const out = new Float32Array(infos.reduce((n, i) => n + count(i), 0));
    let base = 0;
    for (const info of infos) {
      await this.stream(info, "f32", (off, data) => out.set(data, base + off));
      base += count(info);
    }
    return out;
  }

  /** Writes `data` into `buffer` at `byteOffset` through the bounded queue. */
  async write(buffer: GPUBuffer, byteOffset: number, data: UploadData): Promise<void> {
    await this.#queue.write(buffer, byteOffset, data);
    this.bytes += data.byteLength;
  }

  /** Uploads an f32 vector. */
  async upload(data: Float32Array<ArrayBuffer>, label: string): Promise<GPUBuffer> {
    const buffer = this.#device.createBuffer({
      label,
      size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    await this.#queue.write(buffer, 0, data);
    this.bytes += data.byteLength;
    return buffer;
  }

  /**
   * Uploads matrices stacked by rows, packed in `layout` with `columns`, split by blocks; as
   * their blocks when `quant` and the source holds them so (never dequantized; Q4_K as Q4X,
   * Q6_K and mixed types as Q8X).
   */
  async matrix(
    names: string[],
    options: { dtype: WeightDType; layout: MatrixLayout; columns?: ColumnMap; maxBinding: number; label: string; quant?: boolean },
  ): Promise<MatrixWeight> {
    const q = options.quant ? await readQuantMatrix(this.#index, names) : null;
    if (!q && !options.columns) return await this.#streamMatrix(names, options);
    const source = q ?? await this.#hostMatrix(names, options.dtype);
    const placed = q ? placeQuantMatrix(this.#device, q, options) : placeMatrix(this.#device, source as HostMatrix, options);
    release(source.data);
    for (const w of placed.writes) await this.#queue.write(w.buffer, 0, w.data, w.start, w.count);
    for (const w of placed.writes) release(w.data);
    this.bytes += placed.bytes;
    return placed.weight;
  }

  /** The tensors of a row-stacked matrix, checked to share K; with the stacked row count. */
  #matrixInfos(names: string[]): { infos: TensorInfo[]; n: number; k: number } {
    const infos = names.map((n) => this.#index.get(n));
    const k = infos[0].shape[1];
    for (const info of infos) {
      if (info.shape.length !== 2 || info.shape[1] !== k) {
        throw new CheckpointError(info.file, `tensor ${info.name} has shape [${info.shape}], expected [*, ${k}]`);
      }
    }
    return { infos, n: infos.reduce((a, i) => a + i.shape[0], 0), k };
  }

  /** Matrices stacked by rows on the host, as `dtype` values. */
  async #hostMatrix(names: string[], dtype: WeightDType): Promise<HostMatrix> {
    const { infos, n, k } = this.#matrixInfos(names);
    const host = dtype === "f16" ? new Uint16Array(n * k) : new Float32Array(n * k);
    let base = 0;
    for (const info of infos) {
      await this.stream(info, dtype, (off, data) => host.set(data, base + off));
      base += count(info);
    }
    return { data: host, rows: n, cols: k };
  }

  /**
   * Uploads matrices stacked by rows in source order (identity columns), packing batches of
   * whole 8-row blocks as they stream: in that order a batch packs to a contiguous run of the
   * packed matrix, so only a read chunk's worth is ever on the host, never the tensor.
   */
  async #streamMatrix(
    names: string[],
    options: { dtype: WeightDType; layout: MatrixLayout; maxBinding: number; label: string },
  ): Promise<MatrixWeight> {
    const { infos, n, k } = this.#matrixInfos(names);
    const elem = options.dtype === "f16" ? 2 : 4;
    const rowStride = layoutRowStride(k, options.layout);
    const blockElements = 8 * rowStride;
    const blocks = Math.ceil(n / 8);
    const parts = createParts(this.#device, blocks, blockElements * elem, options.maxBinding, options.label, k);
    const batchRows = 8 * Math.max(1, Math.floor(this.#chunkBytes / (8 * k * elem)));
    const alloc = (rows: number) => options.dtype === "f16" ? new Uint16Array(rows * k) : new Float32Array(rows * k);
    let batch = alloc(Math.min(batchRows, n));
    let batchStart = 0; // first element of `batch` in the stacked matrix
    const put = async (at: number, data: Float32Array | Uint16Array) => {
      for (let i = 0; i < data.length;) {
        const take = Math.min(data.length - i, batchStart + batch.length - (at + i));
        if (take <= 0) throw new CheckpointError(options.label, `more than ${n} x ${k} values`);
        batch.set(data.subarray(i, i + take), at + i - batchStart);
        i += take;
        if (at + i === batchStart + batch.length) {
          const row = batchStart / k;
          const packed = packMatrix({ data: batch, rows: batch.length / k, cols: k }, options.layout);
          await this.#writeBlocks(parts, row / 8, packed.data, blockElements);
          batchStart += batch.length;
          release(packed.data);
          release(batch);
          batch = alloc(Math.min(batchRows, n - batchStart / k));
        }
      }
    };
    let base = 0;
    for (const info of infos) {
      await this.stream(info, options.dtype, (off, data) => put(base + off, data));
      base += count(info);
    }
    this.bytes += blocks * blockElements * elem;
    return {
      kind: "dense",
      dtype: options.dtype,
      layout: options.layout,
      n,
      k,
      cols: 8 * blocks,
      rowStride,
      parts,
    };
  }

  /** Writes packed blocks `first ..` (`data`, whole blocks) into the parts that hold them. */
  async #writeBlocks(parts: MatrixPart[], first: number, data: UploadData, blockElements: number): Promise<void> {
    const last = first + data.length / blockElements;
    const elem = data.BYTES_PER_ELEMENT;
    for (const p of parts) {
      const lo = Math.max(first, p.blockStart);
      const hi = Math.min(last, p.blockStart + p.blocks);
      if (lo >= hi) continue;
      await this.#queue.write(p.buffer, (lo - p.blockStart) * blockElements * elem, data, (lo - first) * blockElements, (hi - lo) * blockElements);
    }
  }
}

function count(info: TensorInfo): number {
  return info.shape.reduce((a, b) => a * b, 1);
}

/**
 * Creates the buffers of a packed matrix's parts: `blocks` 8-column blocks of `blockBytes`,
 * as many whole blocks per buffer as `maxBinding` allows.
 */
function createParts(
  device: GPUDevice,
  blocks: number,
  blockBytes: number,
  maxBinding: number,
  label: string,
  k: number,
): MatrixPart[] {
  const perPart = Math.floor(maxBinding / blockBytes);
  if (perPart < 1) {
    throw new CheckpointError(label, `8 columns of ${k} exceed the binding limit ${maxBinding}`);
  }
  const parts: MatrixPart[] = [];
  for (let b = 0; b < blocks; b += perPart) {
    const n = Math.min(perPart, blocks - b);
    const buffer = device.createBuffer({
      label: `${label}[${b}]`,
      size: n * blockBytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    parts.push({ buffer, blockStart: b, blocks: n });
  }
  return parts;
}

/** Options of {@link uploadMatrix}. */
export interface UploadMatrixOptions {
  layout: MatrixLayout;
  /** Output column order (default: identity, padded to a multiple of 8). */
  columns?: ColumnMap;
  /** Largest buffer binding: parts hold at most this many bytes of whole blocks. */
  maxBinding: number;
  label: string;
}

/** A write a placed matrix still needs: `count` elements of `data` from `start`, to offset 0 of `buffer`. */
export interface PartWrite {
  buffer: GPUBuffer;
  data: UploadData;
  start: number;
  count: number;
}

/** A matrix packed, its parts' buffers created, and the writes that fill them. */
export interface PlacedMatrix<W extends MatrixWeight = MatrixWeight> {
  weight: W;
  /** Bytes the writes carry. */
  bytes: number;
  writes: PartWrite[];
}

/**
 * Packs a host matrix (f16 bits or f32 values, HF layout [n, k]) in `layout` and uploads it
 * as parts of whole 8-column blocks; returns the weight and the bytes written.
 */
export function uploadMatrix(
  device: GPUDevice,
  m: HostMatrix,
  options: UploadMatrixOptions,
): { weight: DenseMatrixWeight; bytes: number } {
  const { weight, bytes, writes } = placeMatrix(device, m, options);
  for (const w of writes) device.queue.writeBuffer(w.buffer, 0, w.data, w.start, w.count);
  return { weight, bytes };
}

/** {@link uploadMatrix} without the writes: packs and creates the parts' buffers. */
export function placeMatrix(
  device: GPUDevice,
  m: HostMatrix,
  options: UploadMatrixOptions,
): PlacedMatrix<DenseMatrixWeight> {
  const packed = packMatrix(m, options.layout, options.columns);
  const elem = packed.data.BYTES_PER_ELEMENT;
  const parts = createParts(device, packed.cols / 8, packed.blockElements * elem, options.maxBinding, options.label, m.cols);
  // Element offsets rather than a subarray view: Dawn's node bindings ignore a view's byteOffset.
  const writes: PartWrite[] = parts.map((p) => ({
    buffer: p.buffer,
    data: packed.data,
    start: p.blockStart * packed.blockElements,
    count: p.blocks * packed.blockElements,
  }));
  const weight: DenseMatrixWeight = {
    kind: "dense",
    dtype: m.data instanceof Float32Array ? "f32" : "f16",
    layout: options.layout,
    n: m.rows,
    k: m.cols,
    cols: packed.cols,
    rowStride: packed.rowStride,
    parts,
  };
  return { weight, bytes: packed.data.byteLength, writes };
}

/**
 * Packs a matrix of llama.cpp blocks for the quantized kernels of `layout`'s family and creates
 * its parts' buffers (whole 8-column blocks); the writes that fill them are returned.
 */
export function placeQuantMatrix(
  device: GPUDevice,
  m: QuantMatrix,
  options: UploadMatrixOptions,
): PlacedMatrix {
  const columns = options.columns ?? identityColumns(m.rows);
  const parts: MatrixPart[] = [];
  const writes: PartWrite[] = [];
  let bytes = 0;
  for (const part of packQuantParts(m, columns, options.layout === "column_blocks" ? "column_blocks" : "rows", options.maxBinding)) {
    const data = part.packed.data;
    const buffer = device.createBuffer({
      label: `${options.label}[${part.blockStart}]`,
      size: Math.max(16, data.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    writes.push({ buffer, data, start: 0, count: data.length });
    bytes += data.byteLength;
    parts.push({ buffer, blockStart: part.blockStart, blocks: part.blocks });
  }
  const weight: MatrixWeight = {
    kind: "quant",
    dtype: ({ Q8_0: "q8_0", Q4_0: "q4_0", Q8X: "q8x", Q4X: "q4x" } as const)[m.type],
    layout: options.layout,
    n: m.rows,
    k: m.k,
    cols: columns.length,
    rowStride: 0,
    parts,
  };
  return { weight, bytes, writes };
}

/** Uploads every weight of `spec` from `index` to `device`. */
export async function uploadWeights(
  device: GPUDevice,
  spec: ModelSpec,
  index: TensorSource,
  options: UploadOptions = {},
): Promise<ModelWeights> {
  const maxBinding = Math.min(
    options.maxBindingBytes ?? device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
  );
  const dtype: WeightDType = options.weightDType && options.weightDType !== "auto"
    ? options.weightDType
    : spec.dtype === "float32" ? "f32" : "f16";
  const layout = options.layout ?? "column_blocks";
  const up = new Uploader(device, index, options.chunkBytes ?? (8 << 20), options.maxBytesInFlight);
  const total = index.names().reduce((n, name) => n + index.get(name).byteLength, 0);
  const progress = () => options.onProgress?.(Math.min(up.bytes, total), total);
  const p = (i: number) => `model.layers.${i}`;
  const quant = options.quantizedKernels ?? true;
  // Decoder linear weights may run quantized; the embedding and the LM head stay 16-bit.
  const matrix = (names: string[], label: string, columns?: ColumnMap, q = false) =>
    up.matrix(names, { dtype, layout, columns, maxBinding, label, quant: q && quant });
  const dense = async (names: string[], label: string) => (await matrix(names, label)) as DenseMatrixWeight;
  const norm = async (name: string, label: string) =>
    up.upload(normScale(await up.hostVector([name]), spec.normOffset), label);
  // Biases are permuted like their matrix's columns (padding columns get 0).
  const bias = async (cond: boolean, names: string[], columns: ColumnMap, label: string) =>
    cond ? up.upload(permuteColumns(await up.hostVector(names), columns), label) : null;

  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const rope = ropeInQkv(spec);
  const qkvRows = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  const qkvColumns = rope
    ? ropeColumns(spec.numHeads, spec.numKvHeads, spec.headDim)
    : spec.attnOutputGate
    ? gatedQkvColumns(spec.numHeads, spec.numKvHeads, spec.headDim)
    : identityColumns(qkvRows);
  const vector = async (name: string, label: string) => up.upload(await up.hostVector([name]), label);
  const moeIo = {
    device,
    read: (name: string) => up.hostVector([name]),
    readBytes: (name: string) => index.read(index.get(name)),
    write: up.write.bind(up),
    maxBindingBytes: maxBinding,
    // A quantized GGUF's experts run as its blocks (with the quantized kernels).
    blockType: (name: string) => (quant ? index.get(name).blocks?.type ?? null : null),
    readBlocks: (name: string) => {
      const info = index.get(name);
      return collectChunks(info.blocks!.byteLength, index.readBlocks!(info));
    },
  };
  /** The feed-forward of layer i: the dense MLP, or the router and experts (and shared expert). */
  const ffn = async (i: number): Promise<Pick<LayerWeights, "gateUp" | "gateUpBias" | "down" | "downBias" | "moe">> => {
    const m = `${p(i)}.mlp`;
    if (spec.moe?.sparseLayers[i]) {
      const S = spec.moe.sharedExpertIntermediateSize ?? 0;
      const s = `${m}.shared_expert`;
      return {
        gateUp: S ? await matrix([`${s}.gate_proj.weight`, `${s}.up_proj.weight`], `l${i}.shared_gate_up`, gluColumns(S), true) : null,
        gateUpBias: null,
        down: S ? await matrix([`${s}.down_proj.weight`], `l${i}.shared_down`, undefined, true) : null,
        downBias: null,
        moe: await uploadMoeLayer(moeIo, spec.moe, p(i), H, dtype, `l${i}`, quant ? index.loadQuantType ?? null : null),
      };
    }
    return {
      gateUp: await matrix([`${m}.gate_proj.weight`, `${m}.up_proj.weight`], `l${i}.gate_up`, gluColumns(I), true),
      gateUpBias: await bias(spec.mlpBias, [`${m}.gate_proj.bias`, `${m}.up_proj.bias`], gluColumns(I), `l${i}.gate_up_bias`),
      down: await matrix([`${m}.down_proj.weight`], `l${i}.down`, undefined, true),
      downBias: await bias(spec.mlpBias, [`${m}.down_proj.bias`], identityColumns(H), `l${i}.down_bias`),
      moe: null,
    };
  };
  /** A Gated DeltaNet layer: in-projections fused as qkv|z|b|a, then its small tensors. */
  const linearLayer = async (i: number): Promise<LayerWeights> => {
    const a = `${p(i)}.linear_attn`;
    const inProj = ["qkv", "z", "b", "a"].map((n) => `${a}.in_proj_${n}.weight`);
    return {
      inputNorm: await norm(`${p(i)}.input_layernorm.weight`, `l${i}.input_norm`),
      qkv: await matrix(inProj, `l${i}.in_proj`, undefined, true),
      qkvBias: null,
      qNorm: null,
      kNorm: null,
      sinks: null,
      o: await matrix([`${a}.out_proj.weight`], `l${i}.out_proj`, undefined, true),
      oBias: null,
      linear: {
        conv: await vector(`${a}.conv1d.weight`, `l${i}.conv`),
        aLog: await vector(`${a}.A_log`, `l${i}.a_log`),
        dtBias: await vector(`${a}.dt_bias`, `l${i}.dt_bias`),
        norm: await vector(`${a}.norm.weight`, `l${i}.linear_norm`),
      },
      postAttnNorm: await norm(`${p(i)}.post_attention_layernorm.weight`, `l${i}.post_attn_norm`),
      preFfnNorm: null,
      postFfnNorm: null,
      ...await ffn(i),
    };
  };
  const embed = options.shared?.embed ?? await dense(["model.embed_tokens.weight"], "embed");
  progress();
  const mtp: MtpInputWeights | undefined = options.mtpInput
    ? {
      normEmbed: await norm("mtp.pre_fc_norm_embedding.weight", "mtp.norm_embed"),
      normHidden: await norm("mtp.pre_fc_norm_hidden.weight", "mtp.norm_hidden"),
      fc: await matrix(["mtp.fc.weight"], "mtp.fc", undefined, true),
    }
    : undefined;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const a = `${p(i)}.self_attn`;
    if (spec.linearAttention?.layers[i]) {
      layers.push(await linearLayer(i));
      progress();
      continue;
    }
    layers.push({
      inputNorm: await norm(`${p(i)}.input_layernorm.weight`, `l${i}.input_norm`),
      qkv: await matrix([`${a}.q_proj.weight`, `${a}.k_proj.weight`, `${a}.v_proj.weight`], `l${i}.qkv`, qkvColumns, true),
      qkvBias: await bias(spec.qkvBias, [`${a}.q_proj.bias`, `${a}.k_proj.bias`, `${a}.v_proj.bias`], qkvColumns, `l${i}.qkv_bias`),
      qNorm: spec.qkNorm ? await norm(`${a}.q_norm.weight`, `l${i}.q_norm`) : null,
      kNorm: spec.qkNorm ? await norm(`${a}.k_norm.weight`, `l${i}.k_norm`) : null,
      sinks: spec.attnSinks ? await up.upload(await up.hostVector([`${a}.sinks`]), `l${i}.sinks`) : null,
      o: await matrix([`${a}.o_proj.weight`], `l${i}.o`, undefined, true),
      oBias: await bias(spec.oProjBias, [`${a}.o_proj.bias`], identityColumns(H), `l${i}.o_bias`),
      linear: null,
      postAttnNorm: await norm(`${p(i)}.post_attention_layernorm.weight`, `l${i}.post_attn_norm`),
      preFfnNorm: spec.sandwichNorm ? await norm(`${p(i)}.pre_feedforward_layernorm.weight`, `l${i}.pre_ffn_norm`) : null,
      postFfnNorm: spec.sandwichNorm ? await norm(`${p(i)}.post_feedforward_layernorm.weight`, `l${i}.post_ffn_norm`) : null,
      ...await ffn(i),
    });
    progress();
  }
  const finalNorm = await norm("model.norm.weight", "final_norm");
  const lmHead = options.shared?.lmHead ?? (spec.tieWordEmbeddings ? embed : await dense(["lm_head.weight"], "lm_head"));
  await up.drain();
  progress();
  const buffers = (): GPUBuffer[] => {
    const out: GPUBuffer[] = [finalNorm];
    const mats: MatrixWeight[] = options.shared ? [] : [embed, ...(spec.tieWordEmbeddings ? [] : [lmHead])];
    if (mtp) {
      out.push(mtp.normEmbed, mtp.normHidden);
      mats.push(mtp.fc);
    }
    for (const l of layers) {
      mats.push(...denseMatrices(l));
      if (l.moe) out.push(...moeBuffers(l.moe));
      const lin = l.linear ? [l.linear.conv, l.linear.aLog, l.linear.dtBias, l.linear.norm] : [];
      for (const b of [l.inputNorm, l.qkvBias, l.qNorm, l.kNorm, l.sinks, l.oBias, l.postAttnNorm, l.preFfnNorm, l.postFfnNorm, l.gateUpBias, l.downBias, ...lin]) {
        if (b) out.push(b);
      }
    }
    for (const mat of mats) for (const part of mat.parts) out.push(part.buffer);
    return out;
  };
  return {
    embed,
    layers,
    finalNorm,
    lmHead,
    ropeInQkv: rope,
    ...(mtp ? { mtp } : {}),
    bytes: up.bytes,
    destroy: () => buffers().forEach((b) => b.destroy()),
  };
}
