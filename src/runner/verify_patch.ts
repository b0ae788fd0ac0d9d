/**
 * Verification rows completed on the GPU (kernels/spec_patch.wgsl): before the forward pass,
 * the step's metadata gets each row's position, KV slot, input token and output index from
 * the slot's history length and draft that the {@link GpuNgramDrafter} keeps, so a sequence
 * verifies again while its earlier verifications' accepted counts are still on the GPU.
 * @module
 */
import type { CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { SPEC_PATCH } from "../kernels/spec_descriptors.ts";
import type { GpuNgramDrafter } from "./ngram_drafter.ts";

/** Words per request of the patch (see spec_patch.wgsl). */
const PATCH_WORDS = 6;

/** One verification chunk whose metadata the GPU completes. */
export interface PatchRequest {
  /** The chunk's sequence index in the step. */
  seqIndex: number;
  slot: number;
  /** The chunk's first token index in the step. */
  firstToken: number;
  /** The chunk's first logit row. */
  firstRow: number;
  /** Rows (1 + drafts fed). */
  rows: number;
  promptLength: number;
}

/** The patch pass: its pipeline, request list and one bind group per metadata slot. */
export class VerifyPatch {
  #device: GPUDevice;
  #kernel: CompiledKernel<"step_meta" | "lengths" | "history" | "drafts" | "requests">;
  #params: GPUBuffer;
  #requests: GPUBuffer;
  #maxRequests: number;
  #meta: GPUBuffer;
  #slotBytes: number;
  #drafter: GpuNgramDrafter;
  /** One bind group per metadata slot offset. */
  #groups = new Map<number, GPUBindGroup>();

  constructor(
    device: GPUDevice,
    pipelines: PipelineCache,
    options: { drafter: GpuNgramDrafter; blockSize: number; meta: GPUBuffer; metaSlotBytes: number },
  ) {
    this.#device = device;
    this.#drafter = options.drafter;
    this.#kernel = pipelines.get(SPEC_PATCH, {});
    const o = options.drafter.options;
    this.#params = this.#kernel.uniform({ block_size: options.blockSize, stride: o.maxContext, k_max: o.maxDraft }, "spec_patch_params");
    this.#maxRequests = o.maxSeqs;
    this.#requests = device.createBuffer({
      label: "spec_patch_requests",
      size: Math.max(16, o.maxSeqs * PATCH_WORDS * 4),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.#meta = options.meta;
    this.#slotBytes = options.metaSlotBytes;
  }

  /** Queues the requests of the next dispatch. */
  upload(requests: readonly PatchRequest[]): void {
    if (requests.length > this.#maxRequests) throw new RangeError(`${requests.length} patches > ${this.#maxRequests}`);
    const words = new Uint32Array(Math.max(1, requests.length) * PATCH_WORDS);
    requests.forEach((r, i) => words.set([r.seqIndex, r.slot, r.firstToken, r.firstRow, r.rows, r.promptLength], i * PATCH_WORDS));
    this.#device.queue.writeBuffer(this.#requests, 0, words);
  }

  /** Encodes the patch of the step whose metadata slot is at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, count: number): void {
    if (count <= 0) return;
    let group = this.#groups.get(metaOffset);
    if (!group) {
      group = this.#kernel.bindGroup("spec_patch", {
        p: this.#params,
        step_meta: { buffer: this.#meta, offset: metaOffset, size: this.#slotBytes },
        lengths: this.#drafter.lengths,
        history: this.#drafter.history,
        drafts: this.#drafter.drafts,
        requests: this.#requests,
      });
      this.#groups.set(metaOffset, group);
    }
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1, count);
  }

  /** Frees the patch's buffers. */
  destroy(): void {
    this.#params.destroy();
    this.#requests.destroy();
  }
}
