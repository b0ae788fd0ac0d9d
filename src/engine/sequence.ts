/**
 * One request's sequence inside the engine: its tokens, where its KV lives, and how far the
 * GPU has got. Tokens sampled on the GPU but not yet read back are counted, not known.
 * @module
 */
import type { SamplingParams } from "./gpu_sampler.ts";

/** Sampling and stopping parameters the engine applies (already validated). */
export interface SequenceParams extends SamplingParams {
  maxTokens: number;
  /** u32 seed of the per-sequence random stream. */
  seed: number;
  /** Ids that end the request (EOS unless ignoreEos, plus stop token ids). */
  stopTokenIds: ReadonlySet<number>;
  /** Report the sampled token's logprob. */
  logprobs: boolean;
  /** Alternatives to report per token (0 = none). */
  topLogprobs: number;
}

/** Where a sequence is. */
export type SequenceStatus = "waiting" | "running" | "finished";

/** Why a sequence ended. */
export type FinishReason = "stop" | "length" | "cancelled";

/** Mask marking a token id that is a reference to a sampler output record on the GPU. */
export const RECORD_REF = 0x80000000;

/** Engine-side state of one sequence. */
export class Sequence {
  readonly id: number;
  readonly promptIds: readonly number[];
  readonly params: SequenceParams;
  /** Arrival time (ms, performance.now()). */
  readonly arrival: number;
  /** Generated ids read back so far. */
  readonly outputIds: number[] = [];
  /** Sampled on the GPU, not yet read back. */
  pending = 0;
  /** Output record holding the newest sampled token (valid while pending > 0). */
  lastRecord = -1;
  /** KV blocks, in order. */
  blockTable: number[] = [];
  /** Tokens whose K/V are written (or scheduled to be). */
  numComputed = 0;
  /** Full blocks already registered in the prefix cache, and the last one's key. */
  committedBlocks = 0;
  lastBlockKey: string | null = null;
  /** Row of the sampler's penalty tables, while running. */
  seqSlot = -1;
  status: SequenceStatus = "waiting";
  finishReason: FinishReason | null = null;
  /** Another sequence whose prefill this one waits for (n > 1 siblings share it). */
  gate: Sequence | null = null;
  /** Tokens served from the prefix cache at the last admission. */
  cachedTokens = 0;
  firstTokenAt = 0;
  lastTokenAt = 0;
  admittedAt = 0;
  cancelled = false;

  constructor(id: number, promptIds: readonly number[], params: SequenceParams, arrival: number) {
    this.id = id;
    this.promptIds = promptIds;
    this.params = params;
    this.arrival = arrival;
  }

  /** Tokens known on the CPU: prompt then read-back outputs. */
  get knownLength(): number {
    return this.promptIds.length + this.outputIds.length;
  }

  /** All tokens including those still on the GPU. */
  get totalLength(): number {
    return this.knownLength + this.pending;
  }

  /** Generated so far, including tokens not yet read back. */
  get generated(): number {
    return this.outputIds.length + this.pending;
  }

  /** Whether the prompt has been prefilled (at least once). */
  get prefilled(): boolean {
    return this.numComputed >= this.promptIds.length;
  }

  /** Token ids of positions [start, end) for a step: literals, or a GPU record reference. */
  tokensFor(start: number, end: number): number[] {
    const out: number[] = [];
    for (let i = start; i < end; i++) {
      if (i < this.promptIds.length) out.push(this.promptIds[i]);
      else if (i < this.knownLength) out.push(this.outputIds[i - this.promptIds.length]);
      else if (i === this.totalLength - 1 && this.pending > 0) out.push((RECORD_REF | this.lastRecord) >>> 0);
      else throw new Error(`sequence ${this.id}: token ${i} is not available`);
    }
    return out;
  }

  /** Known token ids (prompt + outputs). */
  knownTokens(): number[] {
    return [...this.promptIds, ...this.outputIds];
  }
}
