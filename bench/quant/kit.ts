/**
 * A small harness over raw WebGPU for the quantized-matmul tests and benchmark: a device with
 * the kernel registry, buffers from host data, one-step metadata, dispatches by binding name,
 * readback. Everything it creates is freed by `destroy` (the device stays).
 * @module
 */
import { createGpu, type CreateGpuOptions, type Gpu } from "../../src/gpu/device.ts";
import {
  type BindingResource,
  type CompiledKernel,
  type Defines,
  type KernelDescriptor,
  loadKernelSources,
  PipelineCache,
} from "../../src/kernels/registry.ts";
import { KERNEL_FILES } from "../../src/kernels/descriptors.ts";
import { QUANT_KERNEL_FILES } from "../../src/kernels/quant_matmul.ts";
import {
  buildStepBatch,
  metaSlotWords,
  packStepMeta,
  type StepBatch,
  type StepCapacity,
} from "../../src/runner/step_meta.ts";

/** A dispatch grid. */
export type Grid = [number, number, number];

/** One dispatch ready to encode. */
export interface Dispatch {
  kernel: CompiledKernel;
  group: GPUBindGroup;
  grid: Grid;
}

/** Step metadata on the GPU. */
export interface MetaSlot {
  buffer: GPUBuffer;
  bytes: number;
}

/** Device, pipeline cache and owned buffers. */
export class QuantKit {
  readonly gpu: Gpu;
  readonly pipelines: PipelineCache;
  #owned: GPUBuffer[] = [];

  private constructor(gpu: Gpu, pipelines: PipelineCache) {
    this.gpu = gpu;
    this.pipelines = pipelines;
  }

  /** Opens a device (or uses `shared`) and loads the kernel sources. */
  static async create(
    options: CreateGpuOptions & { shared?: Gpu; files?: readonly string[] } = {},
  ): Promise<QuantKit> {
    const gpu = options.shared ?? await createGpu(options);
    const files = options.files ?? [...KERNEL_FILES, ...QUANT_KERNEL_FILES, "gemv_c8"];
    return new QuantKit(gpu, new PipelineCache(gpu.device, await loadKernelSources(files)));
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  /** A storage buffer holding `data` (or `bytes` zero bytes). */
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
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(b, 0, padded);
    }
    this.#owned.push(b);
    return b;
  }

  /** Metadata of one step: `rows` tokens of one sequence, logits for every token (or `logitTokens`). */
  meta(rows: number, logitTokens?: number[]): MetaSlot {
    const blocks = Math.ceil(rows / 16) + 1;
    const cap: StepCapacity = {
      maxTokens: rows,
      maxSeqs: 1,
      maxLogitRows: rows,
      maxBlocksPerSeq: blocks,
    };
    const batch = buildStepBatch([{
      tokens: Array(rows).fill(1),
      start: 0,
      blockTable: Array.from({ length: blocks }, (_, i) => i),
      logits: "all",
    }], 16);
    if (logitTokens) batch.logitTokens = Uint32Array.from(logitTokens);
    return { buffer: this.buffer(packStepMeta(batch, cap)), bytes: metaSlotWords(cap) * 4 };
  }

  /** Metadata of an arbitrary step. */
  metaBatch(batch: StepBatch): MetaSlot {
    const cap: StepCapacity = {
      maxTokens: batch.tokenIds.length,
      maxSeqs: batch.blockTables.length,
      maxLogitRows: Math.max(1, batch.logitTokens.length),
      maxBlocksPerSeq: Math.max(...batch.blockTables.map((t) => t.length)),
    };
    return { buffer: this.buffer(packStepMeta(batch, cap)), bytes: metaSlotWords(cap) * 4 };
  }

  /** Compiles (or fetches) a kernel. */
  kernel<D extends Defines, B extends string>(
    desc: KernelDescriptor<D, B>,
    defines: D,
  ): CompiledKernel<B> {
    return this.pipelines.get(desc, defines);
  }

  /** A dispatch: parameters by field name, buffers by binding name. */
  dispatch<B extends string>(
    kernel: CompiledKernel<B>,
    meta: MetaSlot,
    params: Record<string, number>,
    buffers: Partial<Record<B, BindingResource>>,
    grid: Grid,
  ): Dispatch {
    const p = kernel.uniform(params);
    this.#owned.push(p);
    const group = kernel.bindGroup(kernel.key, {
      ...buffers,
      step: { buffer: meta.buffer, offset: 0, size: meta.bytes },
      p,
    } as Partial<Record<B | "step" | "p", BindingResource>>);
    return { kernel, group, grid };
  }

  /** Encodes one dispatch (skipped when the grid is empty). */
  static encode(pass: GPUComputePassEncoder, d: Dispatch): void {
    if (d.grid[0] === 0 || d.grid[1] === 0 || d.grid[2] === 0) return;
    pass.setPipeline(d.kernel.pipeline);
    pass.setBindGroup(0, d.group, [0]);
    pass.dispatchWorkgroups(...d.grid);
  }

  /**
   * Runs dispatches in one pass; throws on a validation error. It does not wait for the GPU
   * to finish: the {@link read} that follows waits for every submitted pass (a second
   * GPU->CPU wait per case doubled the quantized kernel tests' time).
   */
  async run(dispatches: Dispatch[]): Promise<void> {
    this.device.pushErrorScope("validation");
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (const d of dispatches) QuantKit.encode(pass, d);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
    const error = await this.device.popErrorScope();
    if (error) throw new Error(`dispatch failed: ${error.message}`);
  }

  /** Reads `words` 32-bit words from a buffer. */
  async read(buffer: GPUBuffer, words: number): Promise<ArrayBuffer> {
    const bytes = Math.max(4, words * 4);
    const staging = this.device.createBuffer({
      size: Math.ceil(bytes / 16) * 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, Math.ceil(bytes / 4) * 4);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Reads `floats` f32 values. */
  async readF32(buffer: GPUBuffer, floats: number): Promise<Float32Array<ArrayBuffer>> {
    return new Float32Array(await this.read(buffer, floats));
  }

  /** Frees every buffer this kit created. */
  destroy(): void {
    for (const b of this.#owned) b.destroy();
    this.#owned = [];
  }
}
