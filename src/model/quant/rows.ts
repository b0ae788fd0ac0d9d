/**
 * Streams a tensor of a {@link TensorSource} as f32 rows in batches, whatever the chunking
 * and element type of the source: the step between reading and (re)quantizing.
 * @module
 */
import type { SourceTensor, TensorSource } from "../tensor_source.ts";
import { dequantize } from "./dequantize.ts";
import { release } from "../release.ts";
import { valueDType } from "../safetensors.ts";

const ELEMENT_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;

/**
 * Batches of whole rows (`rowsPerBatch` x cols f32 values, the last batch shorter). Each batch
 * is a fresh buffer the consumer owns (it may release it once used).
 */
export async function* f32Rows(
  source: TensorSource,
  info: SourceTensor,
  cols: number,
  rowsPerBatch: number,
  chunkBytes: number,
): AsyncIterable<{ row: number; values: Float32Array<ArrayBuffer> }> {
  const elem = ELEMENT_BYTES[valueDType(info)];
  const total = info.shape.reduce((a, b) => a * b, 1);
  let batch = new Float32Array(Math.min(rowsPerBatch * cols, total));
  let filled = 0;
  let row = 0;
  let carry = new Uint8Array(0);
  for await (const { bytes } of source.readChunks(info, chunkBytes)) {
    let data: Uint8Array = bytes;
    if (carry.length) {
      data = new Uint8Array(carry.length + bytes.length);
      data.set(carry);
      data.set(bytes, carry.length);
    }
    const usable = Math.floor(data.length / elem) * elem;
    carry = data.slice(usable);
    const values = dequantize(valueDType(info), data.subarray(0, usable));
    // Freed now rather than at a later GC (see release.ts); the chunk is ours.
    release(data);
    release(bytes);
    let i = 0;
    while (i < values.length) {
      const n = Math.min(values.length - i, batch.length - filled);
      batch.set(values.subarray(i, i + n), filled);
      filled += n;
      i += n;
      if (filled === batch.length) {
        const rows = batch.length / cols; // before the yield: the consumer may release the batch
        yield { row, values: batch };
        row += rows;
        batch = new Float32Array(Math.min(rowsPerBatch * cols, total - row * cols));
        filled = 0;
      }
    }
    release(values);
  }
  if (row * cols !== total || carry.length) {
    throw new RangeError(`tensor ${info.name}: read ${row * cols + filled} of ${total} values`);
  }
}
