/**
 * Uploads a checkpoint's tensors to GPU buffers, streaming chunk by chunk (the file is never
 * held in memory), converting dtypes and fusing projections that run as one matmul:
 * q|k|v and gate|up. Matrices above the binding limit are split by rows.
 * @module
 */
import type { ModelSpec } from "./config.ts";
import type { SafetensorsDType, TensorInfo } from "./safetensors.ts";
import type { TensorSource } from "./tensor_source.ts";
import { CheckpointError } from "./errors.ts";

/** How matrices are stored on the GPU. Norms and biases are always f32. */
export type WeightDType = "f32" | "f16";

/** A row-split matrix in HF Linear layout [rows, cols]. */
export interface MatrixWeight {
  rows: number;
  cols: number;
  dtype: WeightDType;
  parts: { buffer: GPUBuffer; rowStart: number; rows: number }[];
}

/** The GPU weights of one decoder layer. */
export interface LayerWeights {
  inputNorm: GPUBuffer;
  qkv: MatrixWeight;
  qkvBias: GPUBuffer | null;
  qNorm: GPUBuffer | null;
  kNorm: GPUBuffer | null;
  o: MatrixWeight;
  oBias: GPUBuffer | null;
  /** Llama: the pre-MLP norm. Gemma-2: the norm applied to the attention output. */
  postAttnNorm: GPUBuffer;
  /** Gemma-2 only: the pre-MLP norm and the norm on the MLP output. */
  preFfnNorm: GPUBuffer | null;
  postFfnNorm: GPUBuffer | null;
  gateUp: MatrixWeight;
  gateUpBias: GPUBuffer | null;
  down: MatrixWeight;
  downBias: GPUBuffer | null;
}

/** All GPU weights of a model. */
export interface ModelWeights {
  embed: MatrixWeight;
  layers: LayerWeights[];
  finalNorm: GPUBuffer;
  /** The embedding itself when tied. */
  lmHead: MatrixWeight;
  /** Bytes uploaded. */
  bytes: number;
  destroy(): void;
}

/** Options for {@link uploadWeights}. */
export interface UploadOptions {
  /** Matrix storage: "auto" keeps f32 checkpoints f32 and stores f16/bf16 ones as f16. */
  weightDType?: "auto" | WeightDType;
  /** Called after each tensor with bytes done and total, for progress bars. */
  onProgress?: (done: number, total: number) => void;
  /** Read granularity from disk. */
  chunkBytes?: number;
  /** Largest storage binding; larger matrices are split by rows (default: the device's). */
  maxBindingBytes?: number;
}

const ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** Decodes raw little-endian tensor bytes into f32 values. */
export function decodeToF32(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array<ArrayBuffer> {
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
  bytes = 0;

  constructor(device: GPUDevice, index: TensorSource, chunkBytes: number) {
    this.#device = device;
    this.#index = index;
    this.#chunkBytes = chunkBytes;
  }

  /** Writes tensor `info` into `sink(elementOffset, data)` in even-sized pieces. */
  async stream(
    info: TensorInfo,
    dtype: WeightDType,
    sink: (elementOffset: number, data: Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer>) => void,
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
      const f32 = decodeToF32(data.subarray(0, usable * elemBytes), info.dtype);
      carry = data.slice(usable * elemBytes);
      if (f32.length) sink(cursor, dtype === "f16" ? encodeF16(f32) : f32);
      cursor += f32.length;
    }
    if (carry.length) {
      const f32 = decodeToF32(carry, info.dtype);
      sink(cursor, dtype === "f16" ? encodeF16(f32) : f32);
      cursor += f32.length;
    }
    const expected = info.shape.reduce((a, b) => a * b, 1);
    if (cursor !== expected) {
      throw new CheckpointError(info.file, `tensor ${info.name}: read ${cursor} of ${expected} values`);
    }
  }

  /** Uploads 1-D tensors (norms, biases) concatenated into one f32 buffer. */
  async vector(names: string[], label: string): Promise<GPUBuffer> {
    const infos = names.map((n) => this.#index.get(n));
    const total = infos.reduce((n, i) => n + i.shape.reduce((a, b) => a * b, 1), 0);
    const buffer = this.#device.createBuffer({
      label,
      size: Math.max(16, total * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    let base = 0;
    for (const info of infos) {
      await this.stream(info, "f32", (off, data) => {
        this.#device.queue.writeBuffer(buffer, (base + off) * 4, data);
      });
      base += info.shape.reduce((a, b) => a * b, 1);
    }
    this.bytes += total * 4;
    return buffer;
  }

  /** Uploads matrices stacked by rows into one row-split {@link MatrixWeight}. */
  async matrix(names: string[], dtype: WeightDType, maxBinding: number, label: string) {
    const infos = names.map((n) => this.#index.get(n));
    const cols = infos[0].shape[1];
    for (const info of infos) {
      if (info.shape.length !== 2 || info.shape[1] !== cols) {
        throw new CheckpointError(info.file, `tensor ${info.name} has shape [${info.shape}], expected [*, ${cols}]`);
      }
    }
    // f16 pairs live in u32 words: an odd row length would straddle words.
    const store: WeightDType = cols % 2 === 0 ? dtype : "f32";
    const elem = store === "f16" ? 2 : 4;
    const rows = infos.reduce((n, i) => n + i.shape[0], 0);
    // Parts start on 64-row boundaries so bias slices bind at aligned offsets.
    const rowsPerPart = Math.floor(maxBinding / (cols * elem) / 64) * 64 || Math.floor(maxBinding / (cols * elem));
    if (rowsPerPart < 1) {
      throw new CheckpointError(infos[0].file, `tensor ${infos[0].name}: one row exceeds the binding limit`);
    }
    const parts: MatrixWeight["parts"] = [];
    for (let r = 0; r < rows; r += rowsPerPart) {
      const n = Math.min(rowsPerPart, rows - r);
      parts.push({
        rowStart: r,
        rows: n,
        buffer: this.#device.createBuffer({
          label: `${label}[${r}]`,
          size: Math.ceil((n * cols * elem) / 4) * 4,
          usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
        }),
      });
    }
    let rowBase = 0;
    for (const info of infos) {
      const base = rowBase * cols;
      await this.stream(info, store, (off, data) => {
        // Split the span at part boundaries (row-aligned, so even for f16 with even cols).
        let start = base + off;
        let i = 0;
        while (i < data.length) {
          const row = Math.floor(start / cols);
          const part = parts[Math.floor(row / rowsPerPart)];
          const partEnd = (part.rowStart + part.rows) * cols;
          const n = Math.min(data.length - i, partEnd - start);
          // dataOffset/size in elements rather than a subarray view: Dawn's node bindings
          // ignore a view's byteOffset.
          this.#device.queue.writeBuffer(part.buffer, (start - part.rowStart * cols) * elem, data, i, n);
          start += n;
          i += n;
        }
      });
      rowBase += info.shape[0];
    }
    this.bytes += rows * cols * elem;
    return { rows, cols, dtype: store, parts } satisfies MatrixWeight;
  }
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
  const up = new Uploader(device, index, options.chunkBytes ?? (8 << 20));
  const total = index.names().reduce((n, name) => n + index.get(name).byteLength, 0);
  const progress = () => options.onProgress?.(Math.min(up.bytes, total), total);
  const p = (i: number) => `model.layers.${i}`;

  const embed = await up.matrix(["model.embed_tokens.weight"], dtype, maxBinding, "embed");
  progress();
  const layers: LayerWeights[] = [];
  for (let i = 0; i < spec.numLayers; i++) {
    const a = `${p(i)}.self_attn`;
    const m = `${p(i)}.mlp`;
    const opt = (cond: boolean, names: string[], label: string) =>
      cond ? up.vector(names, label) : Promise.resolve(null);
    layers.push({
      inputNorm: await up.vector([`${p(i)}.input_layernorm.weight`], `l${i}.input_norm`),
      qkv: await up.matrix([`${a}.q_proj.weight`, `${a}.k_proj.weight`, `${a}.v_proj.weight`], dtype, maxBinding, `l${i}.qkv`),
      qkvBias: await opt(spec.qkvBias, [`${a}.q_proj.bias`, `${a}.k_proj.bias`, `${a}.v_proj.bias`], `l${i}.qkv_bias`),
      qNorm: await opt(spec.qkNorm, [`${a}.q_norm.weight`], `l${i}.q_norm`),
      kNorm: await opt(spec.qkNorm, [`${a}.k_norm.weight`], `l${i}.k_norm`),
      o: await up.matrix([`${a}.o_proj.weight`], dtype, maxBinding, `l${i}.o`),
      oBias: await opt(spec.oProjBias, [`${a}.o_proj.bias`], `l${i}.o_bias`),
      postAttnNorm: await up.vector([`${p(i)}.post_attention_layernorm.weight`], `l${i}.post_attn_norm`),
      preFfnNorm: await opt(spec.sandwichNorm, [`${p(i)}.pre_feedforward_layernorm.weight`], `l${i}.pre_ffn_norm`),
      postFfnNorm: await opt(spec.sandwichNorm, [`${p(i)}.post_feedforward_layernorm.weight`], `l${i}.post_ffn_norm`),
      gateUp: await up.matrix([`${m}.gate_proj.weight`, `${m}.up_proj.weight`], dtype, maxBinding, `l${i}.gate_up`),
      gateUpBias: await opt(spec.mlpBias, [`${m}.gate_proj.bias`, `${m}.up_proj.bias`], `l${i}.gate_up_bias`),
      down: await up.matrix([`${m}.down_proj.weight`], dtype, maxBinding, `l${i}.down`),
      downBias: await opt(spec.mlpBias, [`${m}.down_proj.bias`], `l${i}.down_bias`),
    });
    progress();
  }
  const finalNorm = await up.vector(["model.norm.weight"], "final_norm");
  const lmHead = spec.tieWordEmbeddings
    ? embed
    : await up.matrix(["lm_head.weight"], dtype, maxBinding, "lm_head");
  progress();
  const buffers = (): GPUBuffer[] => {
    const out: GPUBuffer[] = [finalNorm];
    const mats = [embed, ...(spec.tieWordEmbeddings ? [] : [lmHead])];
    for (const l of layers) {
      mats.push(l.qkv, l.o, l.gateUp, l.down);
      for (const b of [l.inputNorm, l.qkvBias, l.qNorm, l.kNorm, l.oBias, l.postAttnNorm, l.preFfnNorm, l.postFfnNorm, l.gateUpBias, l.downBias]) {
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
    bytes: up.bytes,
    destroy: () => buffers().forEach((b) => b.destroy()),
  };
}
