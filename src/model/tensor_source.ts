/**
 * What the weight uploader reads: named tensors in Hugging Face naming, streamed as chunks
 * of F32/F16/BF16 bytes. A safetensors {@link TensorIndex} is one; a GGUF file
 * ({@link ./gguf/source.ts}) and a load-time quantized checkpoint
 * ({@link ./quant/quantized_source.ts}) are others. A source that holds a tensor as ggml
 * blocks says so in {@link SourceTensor.blocks}: its chunks are then the dequantized f32
 * values (so every source loads through the f32/f16 upload path), and `readBlocks` yields
 * the blocks themselves for kernels that compute on them.
 * @module
 */
import type { TensorChunk, TensorInfo } from "./safetensors.ts";
import type { QuantType } from "./quant/ggml_types.ts";

/** A tensor held as ggml blocks along its rows. */
export interface BlockLayout {
  type: QuantType;
  /** Bytes of one row of blocks. */
  rowBytes: number;
  /** Bytes of all blocks. */
  byteLength: number;
}

/** A tensor's description; `dtype` and `byteLength` describe what `readChunks` yields. */
export interface SourceTensor extends TensorInfo {
  /** Set when the source holds the tensor as blocks (its chunks are then dequantized F32). */
  blocks?: BlockLayout;
}

/** Named tensors the weight uploader reads. */
export interface TensorSource {
  /** The file that names the tensors (for messages). */
  readonly source: string;
  has(name: string): boolean;
  /** All tensor names (Hugging Face naming). */
  names(): string[];
  /** The tensor; throws a CheckpointError when absent. */
  get(name: string): SourceTensor;
  /**
   * The tensor's values as `dtype` bytes, in chunks of whole elements. Each chunk is a fresh
   * buffer the consumer owns: it may keep it or release it (`release.ts`) once used.
   */
  readChunks(info: SourceTensor, maxChunkBytes?: number): AsyncIterable<TensorChunk>;
  /** The whole tensor (small tensors, tests). */
  read(info: SourceTensor): Promise<Uint8Array<ArrayBuffer>>;
  /** The tensor's blocks in chunks of whole rows (fresh buffers, as `readChunks`'); only for tensors with `blocks`. */
  readBlocks?(info: SourceTensor, maxChunkBytes?: number): AsyncIterable<TensorChunk>;
  /**
   * The block type of load-time quantization (`quant/quantized_source.ts`), absent otherwise:
   * the uploader quantizes float MoE experts to it too (their matrices are not tensors this
   * source serves as blocks: gpt-oss's are `x @ W` stacks quantized along their K after the
   * transpose).
   */
  readonly loadQuantType?: "Q8_0" | "Q4_0";
  close(): void;
}

/** Concatenates a chunk stream (for `read`). */
export async function collectChunks(length: number, chunks: AsyncIterable<TensorChunk>): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(length);
  for await (const { offset, bytes } of chunks) out.set(bytes, offset);
  return out;
}
