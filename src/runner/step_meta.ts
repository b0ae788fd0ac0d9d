/**
 * One step's work as flat ragged arrays (no batch axis, no padding), and its packing into
 * the u32 metadata slot every kernel reads (header layout: STEP_HEADER in
 * `src/kernels/layout.ts`, emitted into the WGSL).
 * @module
 */
import type { SamplingParams } from "../types/api.ts";
import {
  packSamplingRow,
  SAMPLING_ROW_WORDS,
  type SamplingRowExtras,
  STEP_HEADER as H,
  STEP_HEADER_WORDS,
} from "../kernels/layout.ts";

/** The flattened inputs of one forward step. */
export interface StepBatch {
  /** Token id per scheduled token. */
  tokenIds: Uint32Array;
  /** Absolute position per token. */
  positions: Uint32Array;
  /** KV-cache slot (block * blockSize + offset) per token. */
  slots: Uint32Array;
  /** Sequence index (row of `blockTables`) per token. */
  tokenSeq: Uint32Array;
  /** Start of each sequence's tokens in the flat arrays; length = sequences + 1. */
  queryStart: Uint32Array;
  /** Tokens in cache per sequence after this step (context length). */
  contextLens: Uint32Array;
  /** Block table per sequence. */
  blockTables: Uint32Array[];
  /** Token indices whose logits are computed (in output row order). */
  logitTokens: Uint32Array;
  /** Pooled hidden-state rows: (first token, token count) pairs, one pair per row. */
  poolRanges: Uint32Array;
  /** Recurrent-state slot per sequence (hybrid models). */
  stateSlots: Uint32Array;
  /**
   * MTP draft steps: per token, the hidden-state row its input reads (a target KV slot, or
   * the MTP layer's own slot with the top bit set; kernels/mtp_input.wgsl). Absent: zeros.
   */
  hiddenSrc?: Uint32Array;
}

/** One sequence's share of a step. */
export interface SequenceChunk {
  /** Token ids scheduled this step. */
  tokens: ArrayLike<number>;
  /** Position of the first of them (tokens already in cache). */
  start: number;
  /** The sequence's block table (covers start + tokens.length). */
  blockTable: ArrayLike<number>;
  /** Which of this chunk's tokens need logits: all, only the last, or none. */
  logits: "all" | "last" | "none";
  /**
   * Pooled final hidden state this chunk outputs (embedding requests): its last token's, the
   * sum over all its tokens, or none (default).
   */
  pool?: "last" | "sum" | "none";
  /**
   * The sequence's recurrent-state slot (hybrid models; default: its index in the step). A
   * chunk starting at position 0 starts from a zero state; a later chunk continues the slot's.
   */
  stateSlot?: number;
}

/** Raised when a step does not fit the buffers the forward pass was built for. */
export class StepCapacityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StepCapacityError";
  }
}

/** Flattens sequence chunks into a {@link StepBatch}. */
export function buildStepBatch(chunks: readonly SequenceChunk[], blockSize: number): StepBatch {
  const total = chunks.reduce((n, c) => n + c.tokens.length, 0);
  const tokenIds = new Uint32Array(total);
  const positions = new Uint32Array(total);
  const slots = new Uint32Array(total);
  const tokenSeq = new Uint32Array(total);
  const queryStart = new Uint32Array(chunks.length + 1);
  const contextLens = new Uint32Array(chunks.length);
  const logitTokens: number[] = [];
  const poolRanges: number[] = [];
  let t = 0;
  chunks.forEach((c, s) => {
    queryStart[s] = t;
    const end = c.start + c.tokens.length;
    if (Math.ceil(end / blockSize) > c.blockTable.length) {
      throw new StepCapacityError(`sequence ${s}: block table too short for ${end} tokens`);
    }
    for (let i = 0; i < c.tokens.length; i++, t++) {
      const pos = c.start + i;
      tokenIds[t] = c.tokens[i];
      positions[t] = pos;
      slots[t] = c.blockTable[Math.floor(pos / blockSize)] * blockSize + pos % blockSize;
      tokenSeq[t] = s;
      if (c.logits === "all" || (c.logits === "last" && i === c.tokens.length - 1)) {
        logitTokens.push(t);
      }
    }
    contextLens[s] = end;
    if (c.pool === "last") poolRanges.push(t - 1, 1);
    else if (c.pool === "sum") poolRanges.push(t - c.tokens.length, c.tokens.length);
  });
  queryStart[chunks.length] = t;
  return {
    tokenIds,
    positions,
    slots,
    tokenSeq,
    queryStart,
    contextLens,
    blockTables: chunks.map((c) => Uint32Array.from(c.blockTable)),
    logitTokens: Uint32Array.from(logitTokens),
    poolRanges: Uint32Array.from(poolRanges),
    stateSlots: Uint32Array.from(chunks, (c, s) => c.stateSlot ?? s),
  };
}

/** The sizes of one step that decide kernel variants and workgroup counts. */
export interface StepShape {
  tokens: number;
  logitRows: number;
  /** Sequences in the step. */
  seqs: number;
  /** Longest run of tokens of one sequence (1 for a decode-only step). */
  maxQueryLen: number;
  /** Largest context length (tokens in cache after the step) of any sequence. */
  maxContext: number;
  /** Pooled hidden-state rows (embedding requests; absent = 0). */
  poolRows?: number;
}

/** The shape of a batch. */
export function shapeOf(batch: StepBatch): StepShape {
  let maxContext = 0;
  for (const c of batch.contextLens) maxContext = Math.max(maxContext, c);
  let maxQueryLen = 0;
  for (let s = 0; s + 1 < batch.queryStart.length; s++) {
    maxQueryLen = Math.max(maxQueryLen, batch.queryStart[s + 1] - batch.queryStart[s]);
  }
  return {
    tokens: batch.tokenIds.length,
    logitRows: batch.logitTokens.length,
    seqs: batch.blockTables.length,
    maxQueryLen,
    maxContext,
    poolRows: batch.poolRanges.length / 2,
  };
}

/** Capacity of one metadata slot. */
export interface StepCapacity {
  maxTokens: number;
  maxSeqs: number;
  maxLogitRows: number;
  maxBlocksPerSeq: number;
}

/** One logit row's sampling: the sequence's parameters and the row's own fields. */
export interface RowSampling extends SamplingRowExtras {
  sampling: SamplingParams;
}

/** The sampled rows of a step and where their output records go. */
export interface StepSampling {
  /** One per logit row, in row order. */
  rows: readonly RowSampling[];
  /** First output record of this step in the sampler's ring. */
  recordBase: number;
}

/** Words one metadata slot needs for a capacity. */
export function metaSlotWords(cap: StepCapacity): number {
  return STEP_HEADER_WORDS + 4 * cap.maxTokens + cap.maxSeqs * cap.maxBlocksPerSeq +
    cap.maxLogitRows + cap.maxSeqs + (cap.maxSeqs + 1) + cap.maxSeqs + cap.maxLogitRows * SAMPLING_ROW_WORDS +
    2 * cap.maxSeqs + cap.maxTokens;
}

/** Packs a batch into one metadata slot (a single `writeBuffer`). */
export function packStepMeta(
  batch: StepBatch,
  cap: StepCapacity,
  sampling?: StepSampling,
): Uint32Array<ArrayBuffer> {
  const T = batch.tokenIds.length;
  const S = batch.blockTables.length;
  const R = batch.logitTokens.length;
  const P = batch.poolRanges.length / 2;
  if (T === 0) throw new StepCapacityError("empty step");
  if (T > cap.maxTokens) throw new StepCapacityError(`${T} tokens > maxTokens ${cap.maxTokens}`);
  if (S > cap.maxSeqs) throw new StepCapacityError(`${S} sequences > maxSeqs ${cap.maxSeqs}`);
  if (R > cap.maxLogitRows) {
    throw new StepCapacityError(`${R} logit rows > maxLogitRows ${cap.maxLogitRows}`);
  }
  if (P > cap.maxSeqs) throw new StepCapacityError(`${P} pooled rows > maxSeqs ${cap.maxSeqs}`);
  const W = cap.maxBlocksPerSeq;
  const meta = new Uint32Array(metaSlotWords(cap));
  let off = STEP_HEADER_WORDS;
  const put = (header: number, data: ArrayLike<number>, reserve: number) => {
    meta[header] = off;
    meta.set(data, off);
    off += reserve;
  };
  meta[H.numTokens] = T;
  meta[H.numSeqs] = S;
  meta[H.numLogitRows] = R;
  meta[H.blockTableLen] = W;
  put(H.tokenIds, batch.tokenIds, cap.maxTokens);
  put(H.positions, batch.positions, cap.maxTokens);
  put(H.slots, batch.slots, cap.maxTokens);
  put(H.tokenSeq, batch.tokenSeq, cap.maxTokens);
  meta[H.blockTables] = off;
  batch.blockTables.forEach((table, s) => {
    if (table.length > W) {
      throw new StepCapacityError(`block table of ${table.length} > maxBlocksPerSeq ${W}`);
    }
    meta.set(table, off + s * W);
  });
  off += cap.maxSeqs * W;
  put(H.logitRows, batch.logitTokens, cap.maxLogitRows);
  put(H.contextLens, batch.contextLens, cap.maxSeqs);
  put(H.queryStart, batch.queryStart, cap.maxSeqs + 1);
  put(H.stateSlots, batch.stateSlots, cap.maxSeqs);
  meta[H.numPoolRows] = P;
  meta[H.poolRanges] = off + cap.maxLogitRows * SAMPLING_ROW_WORDS;
  meta.set(batch.poolRanges, meta[H.poolRanges]);
  meta[H.hiddenSrc] = meta[H.poolRanges] + 2 * cap.maxSeqs;
  if (batch.hiddenSrc) {
    if (batch.hiddenSrc.length !== T) throw new StepCapacityError(`${batch.hiddenSrc.length} hidden sources for ${T} tokens`);
    meta.set(batch.hiddenSrc, meta[H.hiddenSrc]);
  }
  meta[H.samplingParams] = off;
  if (sampling) {
    if (sampling.rows.length !== R) throw new StepCapacityError(`${sampling.rows.length} sampled rows for ${R} logit rows`);
    const f = new Float32Array(meta.buffer);
    sampling.rows.forEach((row, r) => packSamplingRow(row.sampling, row, meta, f, off + r * SAMPLING_ROW_WORDS));
    meta[H.recordBase] = sampling.recordBase;
  }
  return meta;
}
