/**
 * n-gram (prompt lookup) speculation's GPU step (kernels/ngram_draft.wgsl). Each speculating
 * sequence slot keeps its token history (prompt + output) and its length in GPU buffers; one
 * dispatch per step brings each listed sequence's history up to date and drafts up to k
 * tokens from the latest earlier occurrence of its last n tokens. A request either appends
 * the newest token (an id, or a reference to the sampler output record of a step still on the
 * GPU) or accepts a verification step's rows against the slot's last draft (the longest
 * prefix whose samples equal the draft, plus the next sample), so neither needs a GPU->CPU
 * wait. Drafts are kept per slot, accepted counts per request.
 *
 * Buffers are written with `writeBuffer`, which the queue orders after every earlier submit:
 * a step in flight still reads its own request list.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import type { CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { NGRAM_DRAFT, NGRAM_DRAFT_WG } from "../kernels/spec_descriptors.ts";
import { RECORD } from "../kernels/layout.ts";

/** Words per request in the kernel's request list (see ngram_draft.wgsl). */
const REQ_WORDS = 5;
const MODE_APPEND = 0;
const MODE_ACCEPT = 1;

/** Sizes and settings of a {@link GpuNgramDrafter}. */
export interface NgramDrafterOptions {
  family: KernelFamily;
  /** Sequence slots (history rows). */
  maxSeqs: number;
  /** Longest history, in tokens (the runner's longest sequence). */
  maxContext: number;
  /** Most tokens drafted per sequence. */
  maxDraft: number;
  /** Longest n-gram looked up. */
  promptLookupMax: number;
  /** Shortest n-gram looked up. */
  promptLookupMin: number;
  /** u32 words per sampler output record (for record references). */
  recordWords: number;
}

/** One sequence of a dispatch: how its history is brought up to date, and the draft wanted. */
export type DraftRequest =
  & {
    /** The sequence's slot (history row). */
    slot: number;
    /** Tokens wanted (0: only update the history). */
    k: number;
  }
  & (
    | {
      mode: "append";
      /** The sequence's length counting the newest token. */
      length: number;
      /** The newest token: an id, or `RECORD_REF | record` for a token still on the GPU. */
      newest: number;
    }
    | {
      mode: "accept";
      /** Draft tokens the verification step fed (its rows - 1): only these can be accepted. */
      fed: number;
      /**
       * Output record of the first row of the slot's verification step (rows fed the slot's
       * last token, then its last draft; their records are consecutive).
       */
      firstRecord: number;
    }
  );

/** The drafter: its pipeline, the per-slot histories, lengths and drafts. */
export class GpuNgramDrafter {
  readonly options: NgramDrafterOptions;
  /** Per slot, `1 + maxDraft` words: the draft's length, then its tokens (COPY_SRC). */
  readonly drafts: GPUBuffer;
  /**
   * Per request of the last dispatch, one record-sized entry (`recordWords` words, so a step
   * copies them into the readback with its records): drafts accepted, drafts fed (COPY_SRC).
   */
  readonly accepted: GPUBuffer;
  /** Per slot: the history's length (COPY_SRC). */
  readonly lengths: GPUBuffer;
  #device: GPUDevice;
  #kernel: CompiledKernel<"history" | "lengths" | "requests" | "records" | "drafts" | "accepted">;
  #params: GPUBuffer;
  /** Per slot, `maxContext` ids: the token history. */
  readonly history: GPUBuffer;
  #requests: GPUBuffer;
  #bindGroup: GPUBindGroup | null = null;

  constructor(device: GPUDevice, pipelines: PipelineCache, options: NgramDrafterOptions) {
    this.#device = device;
    this.options = options;
    this.#kernel = pipelines.get(NGRAM_DRAFT, { WG: NGRAM_DRAFT_WG[options.family] });
    this.#params = this.#kernel.uniform({
      max_n: options.promptLookupMax,
      min_n: options.promptLookupMin,
      k_max: options.maxDraft,
      stride: options.maxContext,
      record_words: options.recordWords,
    }, "ngram_draft_params");
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const buffer = (label: string, words: number, usage = storage | GPUBufferUsage.COPY_SRC) =>
      device.createBuffer({ label, size: Math.max(16, words * 4), usage });
    this.history = buffer("ngram_history", options.maxSeqs * options.maxContext, storage);
    this.#requests = buffer("ngram_requests", options.maxSeqs * REQ_WORDS, storage);
    this.lengths = buffer("ngram_lengths", options.maxSeqs);
    this.drafts = buffer("ngram_drafts", options.maxSeqs * (1 + options.maxDraft));
    this.accepted = buffer("ngram_accepted", options.maxSeqs * options.recordWords);
  }

  /** Builds the bind group once: the sampler's output records (references, verified rows). */
  bind(records: GPUBuffer): void {
    this.#bindGroup = this.#kernel.bindGroup("ngram_draft", {
      p: this.#params,
      history: this.history,
      lengths: this.lengths,
      requests: this.#requests,
      records,
      drafts: this.drafts,
      accepted: this.accepted,
    });
  }

  /** Queues `tokens` (known on the CPU) as a slot's history from position `from`. */
  write(slot: number, tokens: ArrayLike<number>, from = 0): void {
    const n = Math.min(tokens.length, this.options.maxContext - from);
    if (n <= 0) return;
    this.#device.queue.writeBuffer(this.history, (slot * this.options.maxContext + from) * 4, Uint32Array.from({ length: n }, (_, i) => tokens[i]));
  }

  /**
   * Encodes a copy of a sampled token (an output record's id) into a slot's history at
   * `position`: a token still on the GPU joins a history uploaded from the CPU.
   */
  copyRecord(encoder: GPUCommandEncoder, records: GPUBuffer, record: number, slot: number, position: number): void {
    if (position >= this.options.maxContext) return;
    const from = (record * this.options.recordWords + RECORD.id) * 4;
    encoder.copyBufferToBuffer(records, from, this.history, (slot * this.options.maxContext + position) * 4, 4);
  }

  /** Queues the request list of the next dispatch (at most `maxSeqs`, one per slot). */
  upload(requests: readonly DraftRequest[]): void {
    if (requests.length > this.options.maxSeqs) throw new RangeError(`${requests.length} requests > maxSeqs ${this.options.maxSeqs}`);
    const words = new Uint32Array(Math.max(1, requests.length) * REQ_WORDS);
    requests.forEach((r, i) => {
      const k = Math.min(r.k, this.options.maxDraft);
      if (r.mode === "append") {
        if (r.length < 1 || r.length > this.options.maxContext) throw new RangeError(`history length ${r.length} out of range`);
        words.set([r.slot, MODE_APPEND, r.length, r.newest >>> 0, k], i * REQ_WORDS);
      } else {
        words.set([r.slot, MODE_ACCEPT, r.fed, r.firstRecord, k], i * REQ_WORDS);
      }
    });
    this.#device.queue.writeBuffer(this.#requests, 0, words);
  }

  /** Encodes the dispatch over the `count` uploaded requests. */
  encode(pass: GPUComputePassEncoder, count: number): void {
    if (!this.#bindGroup) throw new Error("GpuNgramDrafter.bind was not called");
    if (count <= 0) return;
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, this.#bindGroup);
    pass.dispatchWorkgroups(count);
  }

  /** A slot's draft in a mapped copy of {@link drafts}. */
  static readDraft(words: Uint32Array, slot: number, maxDraft: number): number[] {
    const base = slot * (1 + maxDraft);
    return Array.from(words.subarray(base + 1, base + 1 + Math.min(words[base], maxDraft)));
  }

  /** Frees the drafter's buffers. */
  destroy(): void {
    for (const b of [this.history, this.#requests, this.lengths, this.drafts, this.accepted, this.#params]) b.destroy();
  }
}
