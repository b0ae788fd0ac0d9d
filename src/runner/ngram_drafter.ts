/**
 * n-gram (prompt lookup) drafting on the GPU (kernels/ngram_draft.wgsl). Each speculating
 * sequence slot keeps its token history (prompt + output) in one row of a GPU buffer; one
 * dispatch per step appends each listed sequence's newest token (a literal id, or a reference
 * to the sampler output record of a step still on the GPU) and drafts up to k tokens from
 * the latest earlier occurrence of its last n tokens. Since the newest token can be a record
 * reference, the history and the drafts stay current without a GPU->CPU wait.
 *
 * Buffers are written with `writeBuffer`, which the queue orders after every earlier submit:
 * a step in flight still reads its own sequence list.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import type { CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import { NGRAM_DRAFT, NGRAM_DRAFT_WG } from "../kernels/spec_descriptors.ts";

/** Words per sequence in the kernel's sequence list (see ngram_draft.wgsl). */
const SEQ_WORDS = 4;

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

/** One sequence of a drafting dispatch. */
export interface DraftRequest {
  /** The sequence's slot (history row). */
  slot: number;
  /** Its length counting the newest token. */
  length: number;
  /** The newest token: an id, or `RECORD_REF | record` for a token still on the GPU. */
  newest: number;
  /** Tokens wanted (0: only append). */
  k: number;
}

/** The drafter: its pipeline, the per-slot histories and the draft output. */
export class GpuNgramDrafter {
  readonly options: NgramDrafterOptions;
  /** Per request of the last dispatch, `1 + maxDraft` words: the draft's length, its tokens (COPY_SRC). */
  readonly drafts: GPUBuffer;
  #device: GPUDevice;
  #kernel: CompiledKernel<"history" | "seqs" | "records" | "drafts">;
  #params: GPUBuffer;
  #history: GPUBuffer;
  #seqs: GPUBuffer;
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
    this.#history = device.createBuffer({ label: "ngram_history", size: Math.max(16, options.maxSeqs * options.maxContext * 4), usage: storage });
    this.#seqs = device.createBuffer({ label: "ngram_seqs", size: Math.max(16, options.maxSeqs * SEQ_WORDS * 4), usage: storage });
    this.drafts = device.createBuffer({
      label: "ngram_drafts",
      size: Math.max(16, options.maxSeqs * (1 + options.maxDraft) * 4),
      usage: storage | GPUBufferUsage.COPY_SRC,
    });
  }

  /** Builds the bind group once: the sampler's output records, for record references. */
  bind(records: GPUBuffer): void {
    this.#bindGroup = this.#kernel.bindGroup("ngram_draft", {
      p: this.#params,
      history: this.#history,
      seqs: this.#seqs,
      records,
      drafts: this.drafts,
    });
  }

  /** Queues `tokens` (known on the CPU) as a slot's history from position `from`. */
  write(slot: number, tokens: ArrayLike<number>, from = 0): void {
    const n = Math.min(tokens.length, this.options.maxContext - from);
    if (n <= 0) return;
    this.#device.queue.writeBuffer(this.#history, (slot * this.options.maxContext + from) * 4, Uint32Array.from({ length: n }, (_, i) => tokens[i]));
  }

  /** Queues the sequence list of the next dispatch (at most `maxSeqs`). */
  upload(requests: readonly DraftRequest[]): void {
    if (requests.length > this.options.maxSeqs) throw new RangeError(`${requests.length} drafts > maxSeqs ${this.options.maxSeqs}`);
    const words = new Uint32Array(Math.max(1, requests.length) * SEQ_WORDS);
    requests.forEach((r, i) => {
      if (r.length < 1 || r.length > this.options.maxContext) throw new RangeError(`history length ${r.length} out of range`);
      words.set([r.slot, r.length, r.newest >>> 0, Math.min(r.k, this.options.maxDraft)], i * SEQ_WORDS);
    });
    this.#device.queue.writeBuffer(this.#seqs, 0, words);
  }

  /** Encodes the dispatch over the `count` uploaded requests. */
  encode(pass: GPUComputePassEncoder, count: number): void {
    if (!this.#bindGroup) throw new Error("GpuNgramDrafter.bind was not called");
    if (count <= 0) return;
    pass.setPipeline(this.#kernel.pipeline);
    pass.setBindGroup(0, this.#bindGroup);
    pass.dispatchWorkgroups(count);
  }

  /** Reads the drafts of a mapped copy of {@link drafts}: one token list per request. */
  static readDrafts(words: Uint32Array, count: number, maxDraft: number): number[][] {
    const out: number[][] = [];
    for (let s = 0; s < count; s++) {
      const base = s * (1 + maxDraft);
      out.push(Array.from(words.subarray(base + 1, base + 1 + Math.min(words[base], maxDraft))));
    }
    return out;
  }

  /** Frees the drafter's buffers. */
  destroy(): void {
    this.#history.destroy();
    this.#seqs.destroy();
    this.drafts.destroy();
    this.#params.destroy();
  }
}
