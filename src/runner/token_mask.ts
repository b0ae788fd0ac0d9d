/**
 * Constrained decoding on the GPU (kernels/mask.wgsl): the token bitmasks of a step's
 * constrained rows are written into one buffer with one `writeBuffer` and applied to their
 * logits by one dispatch between the forward pass and the sampler. A step without
 * constrained rows writes and dispatches nothing.
 *
 * One buffer serves every step: a `writeBuffer` is ordered on the queue after the submits
 * before it, so a step in flight still reads its own masks.
 * @module
 */
import type { CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { MASK } from "../kernels/descriptors.ts";

/** Sizes of a {@link TokenMaskPass}. */
export interface TokenMaskOptions {
  /** Logits per row. */
  vocab: number;
  /** Most logit rows one step samples (every one may be constrained). */
  maxRows: number;
}

/** The masking pass: its pipeline, the mask buffer and its CPU staging copy. */
export class TokenMaskPass {
  /** u32 words of one row's mask (`ceil(vocab / 32)`). */
  readonly maskWords: number;
  #device: GPUDevice;
  #kernel: CompiledKernel<"logits" | "masks">;
  #params: GPUBuffer;
  #masks: GPUBuffer;
  #staging: Uint32Array<ArrayBuffer>;
  #bindGroup: GPUBindGroup | null = null;

  constructor(device: GPUDevice, pipelines: PipelineCache, options: TokenMaskOptions) {
    this.#device = device;
    this.#kernel = pipelines.get(MASK, {});
    this.maskWords = Math.ceil(options.vocab / 32);
    this.#staging = new Uint32Array(options.maxRows * this.maskWords);
    this.#masks = device.createBuffer({
      label: "token_masks",
      size: Math.max(16, this.#staging.byteLength),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.#params = this.#kernel.uniform(
      { vocab: options.vocab, mask_words: this.maskWords },
      "mask_params",
    );
  }

  /** Builds the bind group once: step metadata and the logits to mask. */
  bind(meta: GPUBuffer, metaSlotBytes: number, logits: GPUBuffer): void {
    this.#bindGroup = this.#kernel.bindGroup("mask", {
      step: { buffer: meta, offset: 0, size: metaSlotBytes },
      p: this.#params,
      logits,
      masks: this.#masks,
    });
  }

  /**
   * The CPU staging words: mask row `i` is `maskWords` words at `i * maskWords`, filled by the
   * caller before {@link upload}.
   */
  get staging(): Uint32Array {
    return this.#staging;
  }

  /** Queues the first `rows` mask rows for the next submitted step. */
  upload(rows: number): void {
    if (rows > 0) this.#device.queue.writeBuffer(this.#masks, 0, this.#staging, 0, rows * this.maskWords);
  }

  /** Masks the step's logit rows that have a mask row (the step's metadata is at `metaOffset`). */
  encode(pass: GPUComputePassEncoder, metaOffset: number, logitRows: number): void {
    if (!this.#bindGroup) throw new Error("TokenMaskPass.bind was not called");
    if (logitRows <= 0) return;
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, this.#bindGroup, [metaOffset]);
    pass.dispatchWorkgroups(Math.ceil(this.maskWords / 64), logitRows);
  }

  /** Frees the pass's buffers. */
  destroy(): void {
    this.#masks.destroy();
    this.#params.destroy();
  }
}
