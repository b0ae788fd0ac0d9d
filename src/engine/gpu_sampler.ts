/**
 * Sampling on the GPU (kernels/sample.wgsl): one output record per logit row, written into a
 * ring that later steps read their input ids from (embed.wgsl) and that is copied back to
 * the CPU in batches. Per-sequence penalty state (prompt-token mask, output-token counts)
 * lives on the GPU in rows indexed by the sequence's slot.
 * @module
 */
import type { PipelineCache } from "../gpu/kernel.ts";
import { SAMPLE } from "../gpu/descriptors.ts";

/** u32 words of sampling parameters per logit row (the layout `sample.wgsl` reads). */
export const SAMPLING_PARAM_WORDS = 12;

/** The distribution-shaping parameters shared by requests, sequences and sampled rows. */
export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  minP: number;
  /** 1 = off. */
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
}

/** One logit row's sampling parameters. */
export interface RowSampling extends SamplingParams {
  /** u32 seed of the sequence's random stream. */
  seed: number;
  /** Index of the token being sampled within the sequence's output. */
  outputIndex: number;
  /** The sequence's row in the penalty tables. */
  seqSlot: number;
  /** Alternatives to record (0 = none). */
  topLogprobs: number;
  /** Whether to compute logprobs at all. */
  logprobs: boolean;
}

/** A decoded output record. */
export interface SampledToken {
  id: number;
  /** Log-probability under the raw model distribution (0 when not asked). */
  logprob: number;
  /** Best alternatives, most likely first. */
  top: { id: number; logprob: number }[];
}

/** Packs rows' parameters into `out` from word `offset` (SAMPLING_PARAM_WORDS per row). */
export function packRowSampling(rows: readonly RowSampling[], out: Uint32Array, offset: number): void {
  const f = new Float32Array(out.buffer, out.byteOffset, out.length);
  rows.forEach((row, r) => {
    const o = offset + r * SAMPLING_PARAM_WORDS;
    f[o] = row.temperature;
    out[o + 1] = row.topK;
    f[o + 2] = row.topP;
    f[o + 3] = row.minP;
    f[o + 4] = row.repetitionPenalty;
    f[o + 5] = row.presencePenalty;
    f[o + 6] = row.frequencyPenalty;
    out[o + 7] = row.seed >>> 0;
    out[o + 8] = row.outputIndex;
    out[o + 9] = row.seqSlot;
    out[o + 10] = row.logprobs ? row.topLogprobs : 0;
    out[o + 11] = row.logprobs ? 1 : 0;
  });
}

/** Words of one output record for a maximum number of alternatives. */
export function recordWordsFor(maxTopLogprobs: number): number {
  return 2 + 2 * maxTopLogprobs;
}

/** Sizes of a {@link GpuSampler}. */
export interface GpuSamplerOptions {
  vocab: number;
  /** Most logit rows in one step. */
  maxRows: number;
  /** Penalty-table rows (the scheduler's sequence slots). */
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
  #pipelines: PipelineCache;
  #params: GPUBuffer;
  #counts: GPUBuffer;
  #promptMask: GPUBuffer;
  #maskWords: number;
  #bindGroup: GPUBindGroup | null = null;

  constructor(device: GPUDevice, pipelines: PipelineCache, options: GpuSamplerOptions) {
    this.#device = device;
    this.#pipelines = pipelines;
    this.options = options;
    this.recordWords = recordWordsFor(options.maxTopLogprobs);
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
    this.#params = device.createBuffer({ label: "sample_params", size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(
      this.#params,
      0,
      new Uint32Array([options.vocab, this.recordWords, this.#maskWords, options.maxTopLogprobs]),
    );
  }

  /** Builds the bind group once: step metadata, the logits to sample from. */
  bind(meta: GPUBuffer, metaSlotBytes: number, logits: GPUBuffer): void {
    const kernel = this.#pipelines.get(SAMPLE, {});
    this.#bindGroup = this.#device.createBindGroup({
      label: "sample",
      layout: kernel.layout,
      entries: [
        { binding: 0, resource: { buffer: meta, offset: 0, size: metaSlotBytes } },
        { binding: 1, resource: { buffer: this.#params } },
        { binding: 2, resource: { buffer: logits } },
        { binding: 3, resource: { buffer: this.#counts } },
        { binding: 4, resource: { buffer: this.#promptMask } },
        { binding: 5, resource: { buffer: this.records } },
      ],
    });
  }

  /** Samples `rows` logit rows of the step whose metadata is at `metaOffset`. */
  encode(pass: GPUComputePassEncoder, metaOffset: number, rows: number): void {
    if (!this.#bindGroup) throw new Error("GpuSampler.bind was not called");
    if (rows <= 0) return;
    pass.setPipeline(this.#pipelines.get(SAMPLE, {}).pipeline);
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

  /** Record `index`, with up to `topLogprobs` alternatives. */
  at(index: number, topLogprobs: number): SampledToken {
    const w = this.#words;
    const f = this.#floats;
    const o = index * this.#recordWords;
    const top: { id: number; logprob: number }[] = [];
    for (let j = 0; j < topLogprobs && 2 + 2 * j < this.#recordWords; j++) {
      top.push({ id: w[o + 2 + 2 * j], logprob: f[o + 3 + 2 * j] });
    }
    return { id: w[o], logprob: f[o + 1], top };
  }
}
