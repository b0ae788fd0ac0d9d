/**
 * One completion's sequence inside the engine: its tokens, where its KV lives, and how far the
 * GPU has got. Tokens sampled on the GPU but not yet read back are counted, not known.
 * @module
 */
import type { FinishReason, Pooling, SamplingParams } from "../types/api.ts";
import type { SpeculationState } from "./speculation.ts";

/** What a sequence generates with, and when it ends (already validated). */
export interface SequenceParams {
  maxTokens: number;
  /** This sequence's sampling (its own seed: sibling completions differ by seed). */
  sampling: SamplingParams;
  /** Ids that end the sequence (EOS unless ignored, plus the request's stop ids). */
  stopTokenIds: ReadonlySet<number>;
  /**
   * Set for an embedding request: the sequence only prefills (no sampling, `maxTokens` 0)
   * and outputs its final hidden states pooled this way.
   */
  pooling?: Pooling;
}

/**
 * A sequence's output constraint (a grammar matcher, as the scheduler and runner see it). A
 * constrained sequence is scheduled to sample only once every token it has is known on the
 * CPU: the runner asks the constraint for the mask of the next token when it builds the step,
 * and the scheduler feeds it each token read back.
 */
export interface SequenceConstraint {
  /** Advances by one token read back; false (state unchanged) when the grammar rejects it. */
  accept(id: number): boolean;
  /** Whether the grammar is complete (it accepted a stop token). */
  readonly terminated: boolean;
  /**
   * Tokens the grammar forces next (jump-forward: text every valid continuation starts with),
   * already accepted; [] when none. They are appended like prompt tokens, without sampling.
   */
  forced(): number[];
  /** Writes the mask of the next token (bit set = allowed) at word `offset` of `out`. */
  fillMask(out: Uint32Array, offset: number): void;
  /**
   * Speculative decoding: walks `draft` through the grammar from the current state and
   * returns how many of its tokens a verification may keep: it stops before the first token
   * the grammar rejects, and after a token that terminates the grammar or makes it force
   * text (jump-forward: plain decoding appends that text rather than sampling). With `out`,
   * also writes the mask before each kept token and after the last (kept + 1 rows of
   * `maskWords` words from word `offset`: a verification's rows). The state is unchanged
   * afterwards. Absent where the matcher cannot roll back: the sequence does not speculate.
   */
  walkDraft?(draft: readonly number[], out?: Uint32Array, offset?: number): number;
  /** Frees it (the sequence has ended). Idempotent. */
  dispose(): void;
}

/**
 * Where a sequence is. "draining": every token it will generate has been scheduled, so it
 * has given back its blocks and slot, and waits only for its last tokens to be read back.
 */
export type SequenceStatus = "waiting" | "running" | "draining" | "finished";

/** Engine-side state of one sequence. */
export class Sequence {
  readonly id: number;
  readonly promptIds: readonly number[];
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  readonly stopTokenIds: ReadonlySet<number>;
  /** Arrival time (ms, performance.now()). */
  readonly arrival: number;
  /** Generated ids read back so far. */
  readonly outputIds: number[] = [];
  /** Sampled on the GPU, not yet read back. */
  pending = 0;
  /** KV blocks, in order. */
  blockTable: number[] = [];
  /** Tokens whose K/V are written (or scheduled to be). */
  numComputed = 0;
  /** Full blocks already registered in the prefix cache, and the last one's key. */
  committedBlocks = 0;
  lastBlockKey: string | null = null;
  /** Row of the sampler's per-sequence tables while running (-1 otherwise). */
  slot = -1;
  status: SequenceStatus = "waiting";
  finishReason: FinishReason | null = null;
  /** Another sequence whose prefill this one waits for (n > 1 siblings share it). */
  gate: Sequence | null = null;
  /** Tokens served from the prefix cache at the last admission. */
  cachedTokens = 0;
  firstTokenAt = 0;
  lastTokenAt = 0;
  admittedAt = 0;
  /** Asked to leave; the scheduler ends it at its next step. */
  cancelled = false;
  /** The output constraint, or null (set before the sequence is added to the scheduler). */
  constraint: SequenceConstraint | null = null;
  /** Speculative decoding's state, or null when the sequence does not speculate. */
  speculation: SpeculationState | null = null;
  /** Embedding requests: how the hidden states are pooled; null for a generating sequence. */
  readonly pooling: Pooling | null;
  /** Embedding requests: pooled rows scheduled on the GPU, not yet read back. */
  pendingPooled = 0;
  /** Embedding requests: sum of the pooled rows read back since the last admission. */
  pooledSum: Float64Array | null = null;

  constructor(id: number, promptIds: readonly number[], params: SequenceParams, arrival: number) {
    this.id = id;
    this.promptIds = promptIds;
    this.maxTokens = params.maxTokens;
    this.sampling = params.sampling;
    this.stopTokenIds = params.stopTokenIds;
    this.pooling = params.pooling ?? null;
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

  /** The token at position `i` when it is known on the CPU, else undefined (still on the GPU). */
  tokenAt(i: number): number | undefined {
    return i < this.promptIds.length ? this.promptIds[i] : this.outputIds[i - this.promptIds.length];
  }

  /** Known token ids (prompt + outputs). */
  knownTokens(): number[] {
    return [...this.promptIds, ...this.outputIds];
  }
}
