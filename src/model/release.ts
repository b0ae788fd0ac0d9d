/**
 * Frees a large transient buffer now instead of at some later garbage collection. The loader
 * allocates read chunks, row batches and packed copies of a few MB each at a high rate; V8
 * collects ArrayBuffers only after tens of MB of them have piled up (external memory
 * pressure), which showed as that much more peak host memory during a load. Detaching the
 * buffer (`ArrayBuffer.prototype.transfer(0)`) releases its memory at once in V8 and JSC.
 * @module
 */

/**
 * Releases the memory of `view`'s buffer when `view` spans the whole buffer (a view of part of
 * a buffer may share it with data someone else holds, so it is left to the GC). The caller
 * must own the buffer: every view of it becomes empty.
 */
export function release(view: ArrayBufferView | null | undefined): void {
  const buffer = view?.buffer;
  if (
    !(buffer instanceof ArrayBuffer) || buffer.detached ||
    view!.byteOffset !== 0 || view!.byteLength !== buffer.byteLength
  ) return;
  buffer.transfer(0);
}
