/**
 * A small harness for running single kernels in tests: a device with the project's pipeline
 * cache, buffers from host data, a step-metadata slot from a batch, dispatches bound by name
 * (through the registry, as the forward pass binds them) and read-back.
 * @module
 */
import { createGpu, type Gpu } from "../../src/gpu/device.ts";
import { type BindingResource, type CompiledKernel, loadKernelSources, PipelineCache } from "../../src/kernels/registry.ts";
import { KERNEL_FILES } from "../../src/kernels/descriptors.ts";
import { metaSlotWords, packStepMeta, type StepBatch, type StepCapacity } from "../../src/runner/step_meta.ts";

/** One dispatch: a kernel, its resources by binding name (the metadata is added) and a grid. */
export interface KitDispatch {
  kernel: CompiledKernel;
  resources: Record<string, BindingResource>;
  grid: [number, number, number];
}

/** The harness. */
export class GpuKit {
  readonly gpu: Gpu;
  readonly pipelines: PipelineCache;
  #owned: GPUBuffer[] = [];

  private constructor(gpu: Gpu, pipelines: PipelineCache) {
    this.gpu = gpu;
    this.pipelines = pipelines;
  }

  /** A device with the project's kernels. */
  static async create(options: { maxStorageBindingBytes?: number } = {}): Promise<GpuKit> {
    const gpu = await createGpu(options);
    return new GpuKit(gpu, new PipelineCache(gpu.device, await loadKernelSources(KERNEL_FILES)));
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  /** A storage buffer holding `data`, or `bytes` zero bytes. */
  buffer(data: ArrayBufferView<ArrayBuffer> | number): GPUBuffer {
    const bytes = typeof data === "number" ? data : data.byteLength;
    const b = this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    if (typeof data !== "number") this.device.queue.writeBuffer(b, 0, data);
    this.#owned.push(b);
    return b;
  }

  /** A metadata slot holding `batch`. */
  meta(batch: StepBatch, cap: StepCapacity): GPUBufferBinding {
    const words = packStepMeta(batch, cap);
    return { buffer: this.buffer(words), offset: 0, size: metaSlotWords(cap) * 4 };
  }

  /**
   * Runs dispatches in one pass against a metadata slot. Their results are read with
   * {@link read} / {@link readMany}, whose map waits for every submitted pass, so this does not
   * wait itself (a second GPU->CPU wait per case doubled the kernel tests' time).
   */
  run(meta: GPUBufferBinding, dispatches: KitDispatch[]): Promise<void> {
    this.submit(meta, dispatches);
    return Promise.resolve();
  }

  /**
   * Submits dispatches in one pass against a metadata slot without waiting: tests that run
   * many independent steps submit them all, then read every result with one wait
   * ({@link readMany}; each GPU->CPU wait costs ~11 ms here).
   */
  submit(meta: GPUBufferBinding, dispatches: KitDispatch[]): void {
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const d of dispatches) {
      if (d.grid.some((g) => g === 0)) continue;
      pass.setPipeline(d.kernel.pipeline);
      pass.setBindGroup(0, d.kernel.bindGroup("test", { ...d.resources, step: meta }), [0]);
      pass.dispatchWorkgroups(...d.grid);
    }
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  /** Reads `count` f32 values from the start of a buffer. */
  async read(buffer: GPUBuffer, count: number): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(buffer, count * 4));
  }

  /** Reads `count` f32 values from the start of each buffer, with one GPU->CPU wait. */
  async readMany(reads: { buffer: GPUBuffer; count: number }[]): Promise<Float32Array[]> {
    const offsets: number[] = [];
    let size = 0;
    for (const r of reads) {
      offsets.push(size);
      size += Math.ceil(r.count * 4 / 256) * 256; // copy offsets stay aligned
    }
    const staging = this.device.createBuffer({ size: Math.max(16, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    reads.forEach((r, i) => encoder.copyBufferToBuffer(r.buffer, 0, staging, offsets[i], Math.ceil(r.count * 4 / 4) * 4));
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = staging.getMappedRange();
    const out = reads.map((r, i) => new Float32Array(all.slice(offsets[i], offsets[i] + r.count * 4)));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Reads `bytes` bytes from the start of a buffer. */
  async readBytes(buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(16, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, size);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Frees every buffer and the device. */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
    this.device.destroy();
  }
}
