/**
 * GPU timestamps for compute passes (`timestamp-query`): each timed pass writes a begin
 * and an end timestamp; `read` resolves them and returns per-pass durations.
 * @module
 */

/** Times up to `capacity` compute passes of one submission. */
export class GpuTimer {
  readonly capacity: number;
  #device: GPUDevice;
  #querySet: GPUQuerySet;
  #resolve: GPUBuffer;
  #read: GPUBuffer;

  constructor(device: GPUDevice, capacity: number) {
    if (!device.features.has("timestamp-query")) {
      throw new Error("the device lacks timestamp-query");
    }
    this.capacity = capacity;
    this.#device = device;
    this.#querySet = device.createQuerySet({ type: "timestamp", count: 2 * capacity });
    this.#resolve = device.createBuffer({
      size: 16 * capacity,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.#read = device.createBuffer({
      size: 16 * capacity,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** The descriptor of timed pass `index` (0-based). */
  pass(index: number, label?: string): GPUComputePassDescriptor {
    if (index >= this.capacity) {
      throw new RangeError(`timed pass ${index} >= capacity ${this.capacity}`);
    }
    return {
      label,
      timestampWrites: {
        querySet: this.#querySet,
        beginningOfPassWriteIndex: 2 * index,
        endOfPassWriteIndex: 2 * index + 1,
      },
    };
  }

  /** Appends the resolve of the first `count` passes' timestamps to `encoder`. */
  resolve(encoder: GPUCommandEncoder, count: number): void {
    encoder.resolveQuerySet(this.#querySet, 0, 2 * count, this.#resolve, 0);
    encoder.copyBufferToBuffer(this.#resolve, 0, this.#read, 0, 16 * count);
  }

  /** Durations in nanoseconds of the first `count` passes (after the submit that resolved them). */
  async read(count: number): Promise<number[]> {
    await this.#read.mapAsync(GPUMapMode.READ, 0, 16 * count);
    const t = new BigInt64Array(this.#read.getMappedRange(0, 16 * count).slice(0));
    this.#read.unmap();
    const out: number[] = [];
    for (let i = 0; i < count; i++) out.push(Math.max(0, Number(t[2 * i + 1] - t[2 * i])));
    return out;
  }

  /** Frees the query set and buffers. */
  destroy(): void {
    this.#querySet.destroy();
    this.#resolve.destroy();
    this.#read.destroy();
  }
}
