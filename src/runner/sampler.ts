/**
 * Sampling on the GPU (kernels/sample.wgsl): one output record per logit row, written into a
 * ring that later steps read their input ids from (embed.wgsl) and that is copied back to
 * the CPU in batches. Per-sequence penalty state (prompt-token mask, output-token counts)
 * lives on the GPU in rows indexed by the sequence's slot.
 * @module
 */
import type { TokenLogprob } from "../types/api.ts";
import type { CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { SAMPLE } from "../kernels/descriptors.ts";
import { RECORD, recordWords } from "../kernels/layout.ts";

/** Sizes of a {@link GpuSampler}. */
export interface GpuSamplerOptions {
  vocab: number;
  /** Per-sequence table rows (the scheduler's sequence slots). */
  maxSeqs: number;
  /** Most alternatives a row may ask for. */
  maxTopLogprobs: number;
  /** Output records in the ring. */
  outRecords: number;
}

/** The GPU sampler: its pipeline, penalty tables and output-record ring. */
export class GpuSampler {
  /** Output records (COPY_SRC, so steps copy theirs into a readback buffer). */
  readonly records: GPUBuffer;
  /** u32 words per record. */
  readonly recordWords: number;
  readonly options: GpuSamplerOptions;
  #device: GPUDevice;
  #kernel: CompiledKernel<"logits" | "counts" | "prompt_mask" | "records">;
  #params: GPUBuffer;
  #counts: GPUBuffer;
  #promptMask: GPUBuffer;
  #maskWords: number;
  #bindGroup: GPUBindGroup | null = null;

  constructor(device: GPUDevice, pipelines: PipelineCache, options: GpuSamplerOptions) {
    this.#device = device;
    this.#kernel = pipelines.get(SAMPLE, {});
    this.options = options;
    this.recordWords = recordWords(options.maxTopLogprobs);
    this.#maskWords = Math.ceil(options.vocab / 32);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    this.records = device.createBuffer({
      label: "sample_records",
      size: Math.max(16, options.outRecords * this.recordWords * 4),
      usage: storage | GPUBufferUsage.COPY_SRC,
    });
    this.#counts = device.createBuffer({
      label: "sample_counts",
      size: Math.max(16, options.maxSeqs * options.vocab * 4),
      usage: storage,
    });
    this.#promptMask = device.createBuffer({
      label: "sample_prompt_mask",
      size: Math.max(16, options.maxSeqs * this.#maskWords * 4),
      usage: storage,
    });
    this.#params = this.#kernel.uniform({
      vocab: options.vocab,
      record_words: this.recordWords,
      mask_words: this.#maskWords,
      max_top: options.maxTopLogprobs,
    }, "sample_params");
  }

  /** Builds the bind group once: step metadata, the logits to sample from. */
  bind(meta: GPUBuffer, metaSlotBytes: number, logits: GPUBuffer): void {
    this.#bindGroup = this.#kernel.bindGroup("sample", {
      step: { buffer: meta, offset: 0, size: metaSlotBytes },
      p: this.#params,
      logits,
      counts: this.#counts,
      prompt_mask: this.#promptMask,
      records: this.records,
    });
  }

  /** Samples `rows` logit rows of the step whose metadata is at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, rows: number): void {
    if (!this.#bindGroup) throw new Error("GpuSampler.bind was not called");
    if (rows <= 0) return;
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, this.#bindGroup, [metaOffset]);
    pass.dispatchWorkgroups(rows);
  }

  /**
   * Sets a sequence slot's penalty state when a sequence is (re)admitted: the prompt mask
   * and the counts of the outputs it already has. Queue writes land after every step
   * submitted before, so an earlier owner of the slot is not disturbed.
   */
  admit(slot: number, promptIds: readonly number[], outputIds: readonly number[] = []): void {
    const V = this.options.vocab;
    const mask = new Uint32Array(this.#maskWords);
    for (const id of promptIds) if (id >= 0 && id < V) mask[id >>> 5] |= 1 << (id & 31);
    const counts = new Uint32Array(V);
    for (const id of outputIds) if (id >= 0 && id < V) counts[id]++;
    this.#device.queue.writeBuffer(this.#promptMask, slot * this.#maskWords * 4, mask);
    this.#device.queue.writeBuffer(this.#counts, slot * V * 4, counts);
  }

  /** A view of records copied off the GPU (made once per readback, read per row). */
  view(words: Uint32Array): RecordView {
    return new RecordView(words, this.recordWords);
  }

  /** Frees the sampler's buffers. */
  destroy(): void {
    for (const b of [this.records, this.#counts, this.#promptMask, this.#params]) b.destroy();
  }
}

/** Output records copied off the GPU: ids as u32, logprobs as f32 over the same words. */
export class RecordView {
  #words: Uint32Array;
  #floats: Float32Array;
  #recordWords: number;

  constructor(words: Uint32Array, recordWords: number) {
    this.#words = words;
    this.#floats = new Float32Array(words.buffer, words.byteOffset, words.length);
    this.#recordWords = recordWords;
  }

  /** Record `index` as a token with its logprob, and `top` alternatives when asked (> 0). */
  at(index: number, topLogprobs: number): TokenLogprob {
    const w = this.#words;
    const f = this.#floats;
    const o = index * this.#recordWords;
    const token: TokenLogprob = { id: w[o + RECORD.id], logprob: f[o + RECORD.logprob] };
    if (topLogprobs > 0) {
      const top: { id: number; logprob: number }[] = [];
      for (let j = 0; j < topLogprobs && RECORD.top + 2 * j < this.#recordWords; j++) {
        top.push({ id: w[o + RECORD.top + 2 * j], logprob: f[o + RECORD.top + 2 * j + 1] });
      }
      token.top = top;
    }
    return token;
  }
}
