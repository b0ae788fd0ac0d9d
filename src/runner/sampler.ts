/**
 * Sampling on the GPU (kernels/sample.wgsl): one output record per logit row, written into a
 * ring that later steps read their input ids from (embed.wgsl) and that is copied back to
 * the CPU in batches. Per-sequence penalty state (prompt-token mask, output-token counts)
 * lives on the GPU in rows indexed by the sequence's slot. With a draft model, the draft
 * runner's sampler writes each draft row's processed distribution q into a buffer that the
 * target's sampler reads to verify those drafts ({@link GpuSampler.useProbs}).
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
  #kernel: CompiledKernel<"logits" | "counts" | "prompt_mask" | "records" | "probs">;
  #params: GPUBuffer;
  #counts: GPUBuffer;
  #promptMask: GPUBuffer;
  #maskWords: number;
  #bindGroup: GPUBindGroup | null = null;
  #bound: { meta: GPUBuffer; metaSlotBytes: number; logits: GPUBuffer } | null = null;
  /** Draft distributions (a placeholder until {@link useProbs}; rows with a q row read it). */
  #probs: GPUBuffer;
  #ownProbs: GPUBuffer;

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
    this.#probs = this.#ownProbs = device.createBuffer({ label: "sample_probs_none", size: 16, usage: storage });
    this.#params = this.#kernel.uniform(this.#paramValues(0), "sample_params");
  }

  #paramValues(probsStride: number): Record<string, number> {
    const o = this.options;
    return { vocab: o.vocab, record_words: this.recordWords, mask_words: this.#maskWords, max_top: o.maxTopLogprobs, probs_stride: probsStride };
  }

  /** Builds the bind group once: step metadata, the logits to sample from. */
  bind(meta: GPUBuffer, metaSlotBytes: number, logits: GPUBuffer): void {
    this.#bound = { meta, metaSlotBytes, logits };
    this.#bindGroup = this.#kernel.bindGroup("sample", {
      step: { buffer: meta, offset: 0, size: metaSlotBytes },
      p: this.#params,
      logits,
      counts: this.#counts,
      prompt_mask: this.#promptMask,
      records: this.records,
      probs: this.#probs,
    });
  }

  /**
   * Binds the draft-distribution buffer, rows of `stride` floats (the draft model's
   * vocabulary): rows with a `qRow` write their processed distribution there (draft runner)
   * or verify their draft token against it (target). The caller owns the buffer.
   */
  useProbs(buffer: GPUBuffer, stride: number): void {
    this.#probs = buffer;
    this.#device.queue.writeBuffer(this.#params, 0, this.#kernel.packParams(this.#paramValues(stride)));
    if (this.#bound) this.bind(this.#bound.meta, this.#bound.metaSlotBytes, this.#bound.logits);
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
    for (const b of [this.records, this.#counts, this.#promptMask, this.#params, this.#ownProbs]) b.destroy();
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
