/**
 * Batched readback of sampler output records. Each step copies its records into the current
 * staging buffer; every `stepsPerSync` steps the batch is mapped (one GPU->CPU wait for many
 * steps, since each wait costs ~11 ms in Deno) and a new batch opens. Staging buffers are
 * made up front and reused, so steps allocate nothing on the GPU.
 * @module
 */

/** Who a record belongs to (opaque to the ring). */
export interface RecordOwner<T> {
  owner: T;
  outputIndex: number;
  /**
   * GPU speculation: a verification row (its output index is known only once its step's
   * accepted count is), or the accepted count that follows a verification step's rows.
   */
  kind?: "verify_row" | "verify_count";
}

interface Batch<T> {
  staging: GPUBuffer;
  /** Owners of the records, in record order. */
  rows: RecordOwner<T>[];
  /** Steps copied in. */
  steps: number;
  mapped: Promise<void> | null;
  /** Set once `mapped` has resolved. */
  ready: boolean;
}

/** A read-back batch: the record words and who each record belongs to. */
export interface ReadBatch<T> {
  words: Uint32Array;
  rows: RecordOwner<T>[];
}

/** Staging buffers cycling between "filling", "mapping" and "free". */
export class ReadbackRing<T> {
  readonly stepsPerSync: number;
  /** Batches mapping at once before the oldest must be drained. */
  readonly maxInflight: number;
  #device: GPUDevice;
  #recordBytes: number;
  #free: GPUBuffer[] = [];
  #all: GPUBuffer[] = [];
  #current: Batch<T>;
  #inflight: Batch<T>[] = [];

  constructor(device: GPUDevice, options: { stepsPerSync: number; maxRowsPerStep: number; recordBytes: number; maxInflight?: number }) {
    this.#device = device;
    this.stepsPerSync = options.stepsPerSync;
    this.maxInflight = options.maxInflight ?? 2;
    this.#recordBytes = options.recordBytes;
    const size = Math.max(16, options.stepsPerSync * options.maxRowsPerStep * options.recordBytes);
    for (let i = 0; i < this.maxInflight + 1; i++) {
      const b = device.createBuffer({ label: `sample_readback.${i}`, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      this.#all.push(b);
      this.#free.push(b);
    }
    this.#current = this.#open();
  }

  /** Steps copied into the batch being filled. */
  get pendingSteps(): number {
    return this.#current.steps;
  }

  /** Batches being mapped. */
  get inflight(): number {
    return this.#inflight.length;
  }

  /** Encodes the copy of one step's records (contiguous in `src`) into the current batch. */
  addStep(encoder: GPUCommandEncoder, src: GPUBuffer, srcRecord: number, rows: RecordOwner<T>[]): void {
    this.addRecords(encoder, src, srcRecord, rows);
    this.endStep();
  }

  /**
   * Encodes the copy of some of a step's records (contiguous in `src`); a step may add several
   * runs, then {@link endStep}.
   */
  addRecords(encoder: GPUCommandEncoder, src: GPUBuffer, srcRecord: number, rows: RecordOwner<T>[]): void {
    const batch = this.#current;
    if (rows.length === 0) return;
    encoder.copyBufferToBuffer(
      src,
      srcRecord * this.#recordBytes,
      batch.staging,
      batch.rows.length * this.#recordBytes,
      rows.length * this.#recordBytes,
    );
    for (const r of rows) batch.rows.push(r);
  }

  /** Counts a step into the current batch (after its records were added). */
  endStep(): void {
    this.#current.steps++;
  }

  /** Whether the current batch holds `stepsPerSync` steps. */
  get full(): boolean {
    return this.#current.steps >= this.stepsPerSync;
  }

  /** Starts mapping the current batch (call after its steps are submitted) and opens a new one. */
  flush(): void {
    const batch = this.#current;
    const bytes = batch.rows.length * this.#recordBytes;
    batch.mapped = bytes > 0 ? batch.staging.mapAsync(GPUMapMode.READ, 0, bytes) : this.#device.queue.onSubmittedWorkDone();
    batch.mapped.then(() => (batch.ready = true), () => {});
    this.#inflight.push(batch);
    this.#current = this.#open();
  }

  /** Whether the oldest mapping batch is ready ({@link drainOldest} would not wait). */
  get oldestReady(): boolean {
    const b = this.#inflight[0];
    return b !== undefined && (b.ready || (b.rows.length > 0 && b.staging.mapState === "mapped"));
  }

  /** Waits for the oldest mapping batch and returns its records. */
  async drainOldest(): Promise<ReadBatch<T>> {
    const batch = this.#inflight.shift();
    if (!batch) throw new Error("nothing to drain");
    await batch.mapped;
    let words = new Uint32Array(0);
    if (batch.rows.length > 0) {
      words = new Uint32Array(batch.staging.getMappedRange(0, batch.rows.length * this.#recordBytes).slice(0));
      batch.staging.unmap();
    }
    this.#free.push(batch.staging);
    return { words, rows: batch.rows };
  }

  /** Frees the staging buffers (call once the GPU is idle). */
  destroy(): void {
    for (const b of this.#all) b.destroy();
  }

  #open(): Batch<T> {
    const staging = this.#free.pop();
    if (!staging) throw new Error("no free staging buffer: drain before flushing again");
    return { staging, rows: [], steps: 0, mapped: null, ready: false };
  }
}

interface RowBatch<T> {
  staging: GPUBuffer;
  rows: RecordOwner<T>[];
  mapped: Promise<void> | null;
}

/**
 * Readback of single records right after their step, apart from the batched ring: the rows
 * of constrained sequences, whose next step needs the token on the CPU (its grammar mask
 * depends on it). Each step with such rows copies their records into a small staging buffer
 * that is mapped as soon as the step is submitted; the engine takes the mapped ones whenever
 * it passes by (never waiting for them while other rows have work), or waits for the oldest
 * when nothing else can run. Staging buffers are reused.
 */
export class RowReadback<T> {
  #device: GPUDevice;
  #recordBytes: number;
  #size: number;
  #free: GPUBuffer[] = [];
  #all: GPUBuffer[] = [];
  #current: RowBatch<T> | null = null;
  #inflight: RowBatch<T>[] = [];

  constructor(device: GPUDevice, options: { maxRowsPerStep: number; recordBytes: number }) {
    this.#device = device;
    this.#recordBytes = options.recordBytes;
    this.#size = Math.max(16, options.maxRowsPerStep * options.recordBytes);
  }

  /** Steps whose rows are being mapped. */
  get pending(): number {
    return this.#inflight.length;
  }

  /** Encodes the copy of one record into the batch of the step being built. */
  add(encoder: GPUCommandEncoder, src: GPUBuffer, srcRecord: number, row: RecordOwner<T>): void {
    const batch = (this.#current ??= { staging: this.#take(), rows: [], mapped: null });
    encoder.copyBufferToBuffer(
      src,
      srcRecord * this.#recordBytes,
      batch.staging,
      batch.rows.length * this.#recordBytes,
      this.#recordBytes,
    );
    batch.rows.push(row);
  }

  /** Starts mapping the step's rows (call after its submit). */
  flush(): void {
    const batch = this.#current;
    if (!batch) return;
    this.#current = null;
    batch.mapped = batch.staging.mapAsync(GPUMapMode.READ, 0, batch.rows.length * this.#recordBytes);
    this.#inflight.push(batch);
  }

  /** The batches already mapped, without waiting (in submission order among themselves). */
  takeMapped(): ReadBatch<T>[] {
    const out: ReadBatch<T>[] = [];
    this.#inflight = this.#inflight.filter((b) => {
      if (b.staging.mapState !== "mapped") return true;
      out.push(this.#read(b));
      return false;
    });
    return out;
  }

  /** Waits until the oldest batch is mapped (it is then returned by {@link takeMapped}). */
  async waitOldest(): Promise<void> {
    await this.#inflight[0]?.mapped;
  }

  /** Frees the staging buffers (call once the GPU is idle). */
  destroy(): void {
    for (const b of this.#all) b.destroy();
  }

  #read(batch: RowBatch<T>): ReadBatch<T> {
    const bytes = batch.rows.length * this.#recordBytes;
    const words = new Uint32Array(batch.staging.getMappedRange(0, bytes).slice(0));
    batch.staging.unmap();
    this.#free.push(batch.staging);
    return { words, rows: batch.rows };
  }

  #take(): GPUBuffer {
    const free = this.#free.pop();
    if (free) return free;
    const b = this.#device.createBuffer({
      label: `row_readback.${this.#all.length}`,
      size: this.#size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#all.push(b);
    return b;
  }
}
