/**
 * A thin layer over the raw WebGPU API for the kernel prototypes, their tests and their
 * benchmark: buffers from host data, step metadata slots, bind groups with the metadata at
 * binding 0, one-off dispatches and readback. Everything it creates is freed by `destroy`.
 * @module
 */
import { createGpu, type CreateGpuOptions, type Gpu } from "../../src/gpu/device.ts";
import {
  type CompiledKernel,
  type Defines,
  type KernelDescriptor,
  loadKernelSources,
  PipelineCache,
} from "../../src/gpu/kernel.ts";
import { KERNEL_FILES } from "../../src/gpu/descriptors.ts";
import {
  metaSlotWords,
  packStepMeta,
  type StepBatch,
  type StepCapacity,
} from "../../src/model/step_batch.ts";

/** The new kernel files (plus every existing one, for side-by-side runs). */
export const PROTO_KERNEL_FILES = [
  ...KERNEL_FILES,
  "matmul_epilogue",
  "gemv_c8",
  "gemv_wg",
  "gemm_tiled",
  "attention_lanes",
  "attention_combine",
];

/** A dispatch grid. */
export type Grid = [number, number, number];

/** A step metadata slot on the GPU. */
export interface MetaSlot {
  buffer: GPUBuffer;
  bytes: number;
}

/** Device, pipeline cache and owned buffers for prototype runs. */
export class GpuKit {
  readonly gpu: Gpu;
  readonly pipelines: PipelineCache;
  #owned: GPUBuffer[] = [];

  private constructor(gpu: Gpu, pipelines: PipelineCache) {
    this.gpu = gpu;
    this.pipelines = pipelines;
  }

  /** Opens a device (or uses `gpu`) and loads every kernel source. */
  static async create(
    options: CreateGpuOptions & { gpu?: Gpu; files?: readonly string[] } = {},
  ): Promise<GpuKit> {
    const gpu = options.gpu ?? await createGpu(options);
    const sources = await loadKernelSources(options.files ?? PROTO_KERNEL_FILES);
    return new GpuKit(gpu, new PipelineCache(gpu.device, sources));
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  /** A storage buffer holding `data` (or `bytes` zeroed bytes). */
  buffer(
    data: ArrayBufferView<ArrayBuffer> | number,
    usage: number = GPUBufferUsage.STORAGE,
  ): GPUBuffer {
    const bytes = typeof data === "number" ? data : data.byteLength;
    const b = this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: usage | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    if (typeof data !== "number") {
      this.device.queue.writeBuffer(
        b,
        0,
        data.buffer,
        data.byteOffset,
        Math.ceil(data.byteLength / 4) * 4,
      );
    }
    this.#owned.push(b);
    return b;
  }

  /** A uniform buffer holding `data`. */
  uniform(data: ArrayBuffer): GPUBuffer {
    return this.buffer(new Uint8Array(data), GPUBufferUsage.UNIFORM);
  }

  /** A metadata slot for one step. */
  meta(batch: StepBatch, cap: StepCapacity): MetaSlot {
    const bytes = metaSlotWords(cap) * 4;
    return { buffer: this.buffer(packStepMeta(batch, cap)), bytes };
  }

  /** Compiles (or fetches) a kernel. */
  kernel<D extends Defines>(desc: KernelDescriptor<D>, defines: D): CompiledKernel {
    return this.pipelines.get(desc, defines);
  }

  /** A bind group: the metadata slot at binding 0, then `buffers` from binding 1 on. */
  bind(
    kernel: CompiledKernel,
    meta: MetaSlot,
    buffers: (GPUBuffer | GPUBufferBinding)[],
  ): GPUBindGroup {
    return this.device.createBindGroup({
      layout: kernel.layout,
      entries: [
        { binding: 0, resource: { buffer: meta.buffer, offset: 0, size: meta.bytes } },
        ...buffers.map((b, i) => ({
          binding: i + 1,
          resource: b instanceof GPUBuffer ? { buffer: b } : b,
        })),
      ],
    });
  }

  /** Encodes one dispatch into a pass (skipped when the grid is empty). */
  static encode(
    pass: GPUComputePassEncoder,
    kernel: CompiledKernel,
    group: GPUBindGroup,
    grid: Grid,
  ): void {
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) return;
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, group, [0]);
    pass.dispatchWorkgroups(...grid);
  }

  /** Runs dispatches in one pass and waits for them; throws on a validation error. */
  async run(
    dispatches: { kernel: CompiledKernel; group: GPUBindGroup; grid: Grid }[],
  ): Promise<void> {
    this.device.pushErrorScope("validation");
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const d of dispatches) GpuKit.encode(pass, d.kernel, d.group, d.grid);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
    const error = await this.device.popErrorScope();
    if (error) throw new Error(`dispatch failed: ${error.message}`);
    await this.device.queue.onSubmittedWorkDone();
  }

  /** Reads `floats` f32 values from the start of a buffer. */
  async readF32(
    buffer: GPUBuffer,
    floats: number,
    offsetFloats = 0,
  ): Promise<Float32Array<ArrayBuffer>> {
    const bytes = floats * 4;
    const staging = this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, offsetFloats * 4, staging, 0, Math.ceil(bytes / 4) * 4);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Frees every buffer this kit created (the device stays). */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
    this.#owned = [];
  }
}
