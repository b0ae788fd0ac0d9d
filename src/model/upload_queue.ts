/**
 * Host-to-GPU writes with a bound on the staging copies in flight, for the weight uploader.
 *
 * `queue.writeBuffer` copies its data into a staging buffer that lives until the queue has
 * executed the copy, and the copy is only executed after a submit: wgpu (Deno) keeps queued
 * writes pending until the next `queue.submit`, and loading a model submits nothing, so every
 * weight was held twice on the host until the first step (on a CPU adapter the GPU buffers
 * are host memory too: the load's peak was the weights three times over, counting the
 * packed host copy). {@link UploadQueue} splits writes into pieces and, once
 * {@link UPLOAD_BYTES_IN_FLIGHT} are queued, submits and waits for the queue to drain.
 * @module
 */

/** Bytes of queued writes (their staging copies) allowed before the uploader drains the queue. */
export const UPLOAD_BYTES_IN_FLIGHT = 16 << 20;

/** What {@link UploadQueue} writes from: the typed arrays `writeBuffer` takes. */
export type UploadData =
  | Uint8Array<ArrayBuffer>
  | Uint16Array<ArrayBuffer>
  | Uint32Array<ArrayBuffer>
  | Float32Array<ArrayBuffer>;

/** The part of `GPUQueue` the writer uses (tests pass a fake). */
export type UploadTarget = Pick<GPUQueue, "writeBuffer" | "submit" | "onSubmittedWorkDone">;

/** Writes to GPU buffers with at most `maxBytesInFlight` bytes of them not yet executed. */
export class UploadQueue {
  readonly maxBytesInFlight: number;
  #queue: UploadTarget;
  #inFlight = 0;

  constructor(queue: UploadTarget, maxBytesInFlight = UPLOAD_BYTES_IN_FLIGHT) {
    // Pieces must stay multiples of 4 bytes (writeBuffer's alignment) for every element size.
    if (maxBytesInFlight < 4 || maxBytesInFlight % 4 !== 0) {
      throw new RangeError(`maxBytesInFlight ${maxBytesInFlight} is not a positive multiple of 4`);
    }
    this.#queue = queue;
    this.maxBytesInFlight = maxBytesInFlight;
  }

  /**
   * Writes `count` elements of `data` from `start` to `buffer` at byte `bufferOffset`, in
   * pieces of at most `maxBytesInFlight` bytes. Offsets go as element arguments rather than a
   * subarray view: Dawn's node bindings ignore a view's byteOffset.
   */
  async write(
    buffer: GPUBuffer,
    bufferOffset: number,
    data: UploadData,
    start = 0,
    count = data.length - start,
  ): Promise<void> {
    const elem = data.BYTES_PER_ELEMENT;
    const piece = this.maxBytesInFlight / elem;
    for (let done = 0; done < count; done += piece) {
      const n = Math.min(piece, count - done);
      if (this.#inFlight + n * elem > this.maxBytesInFlight) await this.drain();
      this.#queue.writeBuffer(buffer, bufferOffset + done * elem, data, start + done, n);
      this.#inFlight += n * elem;
    }
  }

  /** Submits the queued writes and waits until the queue has executed them (staging freed). */
  async drain(): Promise<void> {
    if (this.#inFlight === 0) return;
    this.#queue.submit([]);
    await this.#queue.onSubmittedWorkDone();
    this.#inFlight = 0;
  }
}
