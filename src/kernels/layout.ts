/**
 * Memory layouts shared by TypeScript and WGSL, defined once here and emitted into the kernels
 * as the generated include `layout` (see {@link layoutWgsl}): the step-metadata header, the
 * per-row sampling parameters, the sampler's output records and the token-id markers.
 * @module
 */
import type { SamplingParams } from "../types/api.ts";

/**
 * The step-metadata header: word index of each field. A metadata slot is one flat u32 array
 * per in-flight step, bound with a dynamic offset; array fields hold the word offset (from the
 * slot's start) of that per-step array.
 */
export const STEP_HEADER = {
  /** Tokens in the step. */
  numTokens: 0,
  /** Sequences in the step. */
  numSeqs: 1,
  /** Rows of logits the step computes (and samples). */
  numLogitRows: 2,
  /** Words per block-table row. */
  blockTableLen: 3,
  /** Array: token id per token (or a record reference, see RECORD_REF). */
  tokenIds: 4,
  /** Array: absolute position per token. */
  positions: 5,
  /** Array: KV-cache slot per token (block * blockSize + offset, or NO_SLOT). */
  slots: 6,
  /** Array: sequence index per token. */
  tokenSeq: 7,
  /** Array: block tables, numSeqs rows of blockTableLen. */
  blockTables: 8,
  /** Array: token index of each logit row. */
  logitRows: 9,
  /** Array: context length per sequence after the step. */
  contextLens: 10,
  /** Array: first token of each sequence (numSeqs + 1 entries). */
  queryStart: 11,
  /** Array: sampling parameters, SAMPLING_ROW_WORDS per logit row. */
  samplingParams: 12,
  /** First output record of this step in the sampler's ring. */
  recordBase: 13,
  /** Pooled hidden-state rows the step computes (embedding requests). */
  numPoolRows: 14,
  /** Array: (first token, token count) per pooled row (kernels/pool_hidden.wgsl). */
  poolRanges: 15,
  /** Array: recurrent-state slot per sequence (hybrid models' linear-attention layers). */
  stateSlots: 16,
  /** Array: per token, the row its MTP head input reads (kernels/mtp_input.wgsl); MTP draft steps only. */
  hiddenSrc: 17,
} as const;

/** Words reserved for the header. */
export const STEP_HEADER_WORDS = 20;

/** A token id with this bit set refers to a sampler output record still on the GPU. */
export const RECORD_REF = 0x80000000;

/** KV slot of a token whose K/V are not stored. */
export const NO_SLOT = 0xffffffff;

/** Mask row of a logit row that is not constrained (kernels/mask.wgsl leaves it alone). */
export const NO_MASK = 0xffffffff;

/** A logit row without a draft distribution (`qRow`) or without a draft token to verify. */
export const NO_Q = 0xffffffff;

/** Per-row fields packed beside the sampling parameters. */
export interface SamplingRowExtras {
  /** Index of the token being sampled within its sequence's output. */
  outputIndex: number;
  /** The sequence's row in the sampler's penalty tables. */
  seqSlot: number;
  /** The row's token bitmask in the step's mask buffer, or NO_MASK (default). */
  maskRow?: number;
  /**
   * Speculative decoding with a draft model, sampled rows only (kernels/sample.wgsl): a row of
   * the sampler's draft-distribution buffer, or NO_Q (default). With no `draftToken` the row
   * writes its processed distribution q there (the draft runner); with one, it verifies that
   * token against q (the target's verification row).
   */
  qRow?: number;
  /** The draft token this row verifies against `qRow`, or NO_Q (default). */
  draftToken?: number;
}

type RowField = keyof SamplingParams | keyof SamplingRowExtras;

const EXTRAS: ReadonlySet<RowField> = new Set(["outputIndex", "seqSlot", "maskRow", "qRow", "draftToken"]);

/** One logit row's sampling words, in order, with their WGSL scalar type. */
export const SAMPLING_ROW: readonly (readonly [RowField, "f32" | "u32"])[] = [
  ["temperature", "f32"],
  ["topK", "u32"],
  ["topP", "f32"],
  ["minP", "f32"],
  ["repetitionPenalty", "f32"],
  ["presencePenalty", "f32"],
  ["frequencyPenalty", "f32"],
  ["seed", "u32"],
  ["outputIndex", "u32"],
  ["seqSlot", "u32"],
  ["topLogprobs", "u32"],
  ["logprobs", "u32"],
  ["maskRow", "u32"],
  ["qRow", "u32"],
  ["draftToken", "u32"],
];

/** u32 words of sampling parameters per logit row. */
export const SAMPLING_ROW_WORDS: number = SAMPLING_ROW.length;

/** Packs one row's sampling words at word `offset` of `out` (u32 and f32 views of one buffer). */
export function packSamplingRow(
  sampling: SamplingParams,
  extras: SamplingRowExtras,
  out: Uint32Array,
  outF: Float32Array,
  offset: number,
): void {
  for (let k = 0; k < SAMPLING_ROW.length; k++) {
    const [field, type] = SAMPLING_ROW[k];
    const v = field === "maskRow"
      ? extras.maskRow ?? NO_MASK
      : field === "qRow" || field === "draftToken"
      ? extras[field] ?? NO_Q
      : EXTRAS.has(field)
      ? extras[field as keyof SamplingRowExtras]
      : sampling[field as keyof SamplingParams];
    if (type === "f32") outF[offset + k] = v as number;
    else out[offset + k] = typeof v === "boolean" ? (v ? 1 : 0) : (v as number) >>> 0;
  }
}

/** The sampler's output record: [id, logprob, (top id, top logprob) x maxTopLogprobs]. */
export const RECORD = { id: 0, logprob: 1, top: 2 } as const;

/** Words of one output record for a maximum number of alternatives. */
export function recordWords(maxTopLogprobs: number): number {
  return RECORD.top + 2 * maxTopLogprobs;
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

/** The generated WGSL include `layout`: every constant above as a WGSL `const`. */
export function layoutWgsl(): string {
  const lines = ["// Generated from src/kernels/layout.ts: do not edit in WGSL."];
  for (const [name, index] of Object.entries(STEP_HEADER)) lines.push(`const STEP_${snake(name)}: u32 = ${index}u;`);
  lines.push(`const STEP_HEADER_WORDS: u32 = ${STEP_HEADER_WORDS}u;`);
  lines.push(`const RECORD_REF: u32 = 0x${RECORD_REF.toString(16)}u;`);
  lines.push(`const NO_SLOT: u32 = 0x${NO_SLOT.toString(16)}u;`);
  lines.push(`const NO_MASK: u32 = 0x${NO_MASK.toString(16)}u;`);
  lines.push(`const NO_Q: u32 = 0x${NO_Q.toString(16)}u;`);
  SAMPLING_ROW.forEach(([name], k) => lines.push(`const ROW_${snake(name)}: u32 = ${k}u;`));
  lines.push(`const ROW_WORDS: u32 = ${SAMPLING_ROW_WORDS}u;`);
  for (const [name, index] of Object.entries(RECORD)) lines.push(`const RECORD_${snake(name)}: u32 = ${index}u;`);
  return lines.join("\n");
}
