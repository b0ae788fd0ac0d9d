/**
 * Load-time quantization: a {@link TensorSource} over another (a safetensors checkpoint, a
 * GGUF file of floats) that serves each decoder linear weight ({@link isQuantTarget}) as
 * llama.cpp Q8_0 or Q4_0 blocks, quantized row batch by row batch while the tensor streams
 * from disk, so peak host memory stays near one read chunk, never a tensor or the model.
 *
 * `readBlocks` yields the blocks (for kernels that compute on them); `readChunks` yields
 * their dequantized f32 values, which is what the weight uploader reads today: until the
 * dequantizing matmul kernels land, a quantized model computes with the round-tripped
 * weights stored as f32 (or f16), so it is exactly as accurate as the blocks but neither
 * smaller on the GPU nor faster.
 * @module
 */
import type { TensorChunk } from "../safetensors.ts";
import type { SourceTensor, TensorSource } from "../tensor_source.ts";
import { collectChunks } from "../tensor_source.ts";
import { GGML_TYPES, type LoadQuantization, loadQuantType } from "./ggml_types.ts";
import { isQuantTarget } from "./targets.ts";
import { f32Rows } from "./rows.ts";
import { quantizeQ8_0 } from "./q8_0.ts";
import { quantizeQ4_0 } from "./q4_0.ts";
import { dequantize } from "./dequantize.ts";
import { release } from "../release.ts";

const DEFAULT_CHUNK = 8 << 20;

/** `inner` with its decoder linear weights quantized to `quantization` ("none": `inner` itself). */
export function quantizeSource(inner: TensorSource, quantization: LoadQuantization): TensorSource {
  const type = loadQuantType(quantization);
  return type ? new QuantizedSource(inner, type) : inner;
}

/** Quantizes rows of f32 values to blocks of `type`. */
export function quantizeRows(type: "Q8_0" | "Q4_0", values: Float32Array): Uint8Array<ArrayBuffer> {
  return (type === "Q8_0" ? quantizeQ8_0(values) : quantizeQ4_0(values)) as Uint8Array<ArrayBuffer>;
}

class QuantizedSource implements TensorSource {
  readonly source: string;
  readonly loadQuantType: "Q8_0" | "Q4_0";
  #inner: TensorSource;
  #type: "Q8_0" | "Q4_0";

  constructor(inner: TensorSource, type: "Q8_0" | "Q4_0") {
    this.#inner = inner;
    this.#type = type;
    this.loadQuantType = type;
    this.source = inner.source;
  }

  has(name: string): boolean {
    return this.#inner.has(name);
  }

  names(): string[] {
    return this.#inner.names();
  }

  get(name: string): SourceTensor {
    const info = this.#inner.get(name);
    // Tensors already in blocks (a quantized GGUF) keep theirs.
    if (info.blocks || !isQuantTarget(name, info.shape)) return info;
    const [rows, cols] = info.shape;
    const t = GGML_TYPES[this.#type];
    const rowBytes = (cols / t.blockElems) * t.blockBytes;
    return {
      ...info,
      dtype: "F32",
      byteLength: rows * cols * 4,
      blocks: { type: this.#type, rowBytes, byteLength: rows * rowBytes },
    };
  }

  async *readBlocks(info: SourceTensor, maxChunkBytes = DEFAULT_CHUNK): AsyncIterable<TensorChunk> {
    if (!info.blocks) throw new TypeError(`tensor ${info.name} is not quantized`);
    if (!this.#quantizesHere(info)) {
      yield* this.#inner.readBlocks!(info, maxChunkBytes);
      return;
    }
    const cols = info.shape[1];
    const inner = this.#inner.get(info.name);
    const rowsPerBatch = Math.max(1, Math.floor(maxChunkBytes / (cols * 4)));
    for await (const { row, values } of f32Rows(this.#inner, inner, cols, rowsPerBatch, maxChunkBytes)) {
      const bytes = quantizeRows(info.blocks.type as "Q8_0" | "Q4_0", values);
      release(values);
      yield { offset: row * info.blocks.rowBytes, bytes };
    }
  }

  async *readChunks(info: SourceTensor, maxChunkBytes = DEFAULT_CHUNK): AsyncIterable<TensorChunk> {
    if (!info.blocks || !this.#quantizesHere(info)) {
      yield* this.#inner.readChunks(info, maxChunkBytes);
      return;
    }
    const rowElems = info.shape[1];
    for await (const { offset, bytes } of this.readBlocks(info, maxChunkBytes)) {
      const values = dequantize(info.blocks.type, bytes);
      release(bytes);
      yield { offset: (offset / info.blocks.rowBytes) * rowElems * 4, bytes: new Uint8Array(values.buffer) };
    }
  }

  read(info: SourceTensor): Promise<Uint8Array<ArrayBuffer>> {
    return collectChunks(info.byteLength, this.readChunks(info));
  }

  close(): void {
    this.#inner.close();
  }

  /** Whether this wrapper made the blocks (rather than the source holding them). */
  #quantizesHere(info: SourceTensor): boolean {
    return !this.#inner.get(info.name).blocks;
  }
}
