/**
 * Speculative decoding's CPU side: n-gram (prompt lookup) drafts and the per-sequence
 * adaptive state. With GPU drafts (the engine's way for n-gram, `SchedulerOptions.gpuDrafts`)
 * the drafting and acceptance run in `runner/ngram_drafter.ts` and the sequence never waits;
 * a draft model's proposals are made by `engine/draft_model.ts` and handed in through
 * {@link SpeculationState.propose}. Without GPU drafts (a draft model, or the reference n-gram
 * drafter here) a speculating sequence is scheduled only once every token it has is known on
 * the CPU (like a constrained one); its decode chunk then carries the last token plus up to k
 * drafted tokens, each row sampled. Either way, the longest prefix of rows whose sampled token
 * equals the next draft token is kept, plus the next sampled token.
 *
 * That rule is exact for sampling too: with a deterministic draft (q one-hot) the rejection
 * rule accepts draft d with probability p(d) and on rejection samples from p with d removed,
 * which is what drawing x ~ p and comparing x with d does. The GPU sampler's draw for an
 * output depends only on (seed, output index), so a seeded request gets the tokens plain
 * decoding gives. A draft model's sampled drafts (d ~ q) carry their distributions' rows
 * ({@link SpeculationState.draftProbs}): the sampler then accepts d with probability
 * min(1, p(d)/q(d)) and on rejection samples max(p - q, 0), so the comparison stays right.
 * @module
 */
import type { SamplingParams, SpeculativeConfig, TokenLogprob } from "../types/api.ts";

/** Plain (pipelined) decode steps after a first backoff, before looking for n-grams again. */
const FIRST_BACKOFF = 8;
/**
 * Synchronous decode steps a sequence keeps looking for a draft after an n-gram match among
 * its known tokens armed it: the tokens still in flight then have moved its suffix on.
 */
const GRACE_STEPS = 2;
/** Tokens a draft made in hindsight must have predicted to arm a plain sequence again. */
const HINDSIGHT_HITS = 2;
/** Longest backoff, in generated tokens. */
const MAX_BACKOFF = 256;
/**
 * GPU drafting: verifications a sequence sends before the first comes back after it starts
 * speculating (or after drafts failed); each fully accepted one doubles the window.
 */
const PROBE_VERIFICATIONS = 2;
/** GPU drafting: the widest window of unconfirmed verifications. */
const MAX_WINDOW = 64;

/**
 * Up to `k` tokens that followed the latest earlier occurrence of the last n tokens of
 * `tokens` (n from `maxN` down to `minN`); [] when none occurs.
 */
export function ngramDraft(tokens: readonly number[], k: number, maxN: number, minN: number): number[] {
  const len = tokens.length;
  if (k <= 0) return [];
  for (let n = Math.min(maxN, len - 1); n >= minN; n--) {
    // Latest match first: the suffix tokens[len-n..len) at i..i+n, with i + n < len.
    for (let i = len - n - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && tokens[i + j] === tokens[len - n + j]) j++;
      if (j < n) continue;
      const from = i + n;
      return tokens.slice(from, Math.min(from + k, len)) as number[];
    }
  }
  return [];
}

/** Whether a request's sampling allows speculation (GPU penalty counts are per sampled row). */
export function speculationAllowed(sampling: SamplingParams): boolean {
  return sampling.repetitionPenalty === 1 && sampling.presencePenalty === 0 && sampling.frequencyPenalty === 0;
}

/** A verification step in flight: the tokens drafted after the sequence's last known token. */
export interface Verification {
  /** Output index of the first verified row. */
  base: number;
  draft: readonly number[];
  /** Draft tokens accepted so far (rows read back). */
  accepted: number;
  /** A row's sampled token differed from its draft token: later rows are dropped. */
  rejected: boolean;
}

/**
 * One sequence's speculation: how many tokens to draft, backing off to plain (pipelined)
 * decoding for a while where drafts are not found or keep failing.
 */
export class SpeculationState {
  readonly config: SpeculativeConfig;
  /** Tokens to draft next time (adapts between 1 and numSpeculativeTokens). */
  k: number;
  /** Speculating: each decode waits for every token to be known, then drafts. */
  #armed: boolean;
  /** Plain decode steps left before looking for an n-gram again. */
  #cooldown = 0;
  /** Known length at the last look for an n-gram while plain. */
  #lookedAt = -1;
  /** Draft lookups that may still find nothing before backing off again. */
  #grace = 0;
  #backoff = FIRST_BACKOFF;
  /** The verification step in flight, if any. */
  verification: Verification | null = null;
  /**
   * Hybrid models: a draft was rejected, so the next chunk first restores the recurrent state
   * snapshot taken before the verification (set and cleared by the scheduler).
   */
  restoreState = false;
  /** Method "draft": the draft model's tokens after the first `at` known tokens. */
  #proposal: { at: number; tokens: readonly number[]; probs?: readonly number[] } | null = null;
  /**
   * Method "draft": the draft distributions' rows of the last {@link draft}'s tokens when the
   * draft model sampled them (see `ScheduledChunk.draftProbs`), else null (a greedy draft).
   */
  draftProbs: readonly number[] | null = null;
  /**
   * GPU drafting: the GPU keeps this sequence's token history (from a sampled step while
   * speculating until one while not; set by the scheduler). Verifications need it.
   */
  gpuHistory = false;
  /**
   * GPU drafting: verifications that may be in flight before their results come back
   * ({@link PROBE_VERIFICATIONS} after arming or a failure, doubling per fully accepted one):
   * a sequence learns a result only at its readback, so without a window it keeps verifying
   * drafts that stopped matching (or found no n-gram) for a whole pipeline's depth.
   */
  #window = PROBE_VERIFICATIONS;
  /** GPU drafting: verifications in a row that came back without a draft. */
  #misses = 0;
  /** GPU drafting: drafts fed by each verification step in flight, oldest first. */
  gpuInflight: number[] = [];
  /** GPU drafting: the rows read back of the oldest verification, until its count comes. */
  gpuRows: TokenLogprob[] = [];

  constructor(config: SpeculativeConfig) {
    this.config = config;
    this.k = config.numSpeculativeTokens;
    // A draft model proposes for any text: start speculating, back off where it fails.
    this.#armed = config.method !== "ngram";
  }

  /** Method "draft": the known length the pending proposal drafts after, or -1. */
  get proposalAt(): number {
    return this.#proposal?.at ?? -1;
  }

  /**
   * Method "draft": the draft model's tokens after the first `at` known tokens (used once);
   * `probs`: the rows of the distributions they were sampled from (sampled requests).
   */
  propose(at: number, tokens: readonly number[], probs?: readonly number[]): void {
    this.#proposal = { at, tokens, probs };
  }

  /** Method "draft": forgets a pending proposal (its draft KV and distributions are gone). */
  dropProposal(): void {
    this.#proposal = null;
  }

  /** GPU drafting: verifications that may be in flight unconfirmed (see `#window`). */
  get window(): number {
    return this.#window;
  }

  /** Whether the next decode speculates (and so waits for every token to be known). */
  get active(): boolean {
    return this.#armed;
  }

  /**
   * A plain (pipelined) decode step was scheduled: counts down the backoff, then, each time
   * a readback brought new tokens, asks in hindsight whether a draft made before them would
   * have predicted them, and speculates again only when it would have (at least
   * {@link HINDSIGHT_HITS} tokens), so text with nothing to copy never stops the pipeline to
   * probe. `canArm` false: only counts the backoff down.
   */
  plainStep(known: () => readonly number[], knownLength: number, canArm = true): void {
    if (this.#armed) return;
    if (this.#cooldown > 0) {
      this.#cooldown--;
      return;
    }
    if (!canArm) return;
    const c = this.config;
    if (c.method !== "ngram") {
      // The draft model (or MTP head) only runs while speculating: no hindsight to ask, try again.
      this.#armed = true;
      return;
    }
    if (knownLength === this.#lookedAt) return;
    this.#lookedAt = knownLength;
    const tokens = known();
    const need = Math.min(HINDSIGHT_HITS, c.numSpeculativeTokens);
    // Drafts that would have been made 2..4 tokens ago.
    for (let from = knownLength - need; from >= Math.max(1, knownLength - 4); from--) {
      const d = ngramDraft(tokens.slice(0, from), need, c.promptLookupMax, c.promptLookupMin);
      let hits = 0;
      while (hits < d.length && tokens[from + hits] === d[hits]) hits++;
      if (hits === 0 || hits < Math.min(need, d.length)) continue;
      this.#armed = true;
      this.#grace = GRACE_STEPS;
      this.#window = PROBE_VERIFICATIONS;
      this.#misses = 0;
      return;
    }
  }

  /** Drafts up to min(k, limit) tokens after `tokens`; none found backs off. */
  draft(tokens: readonly number[], limit: number): number[] {
    const c = this.config;
    const n = Math.min(this.k, limit);
    let d: number[];
    this.draftProbs = null;
    if (c.method !== "ngram") {
      const p = this.#proposal;
      this.#proposal = null;
      d = p && p.at === tokens.length ? p.tokens.slice(0, Math.max(0, n)) : [];
      if (p?.probs && d.length > 0) this.draftProbs = p.probs.slice(0, d.length);
    } else {
      d = ngramDraft(tokens, n, c.promptLookupMax, c.promptLookupMin);
    }
    if (d.length > 0) this.#grace = 0;
    else if (limit > 0 && this.#grace-- <= 0) this.#backOff();
    return d;
  }

  /**
   * Stops speculating without counting it as a failure (the scheduler's batch-size limit):
   * the same way out as a backoff, with no cooldown added. The sequence arms again as after a
   * backoff (the hindsight test for n-gram, the next plain step for a draft model or MTP head)
   * once the scheduler lets it.
   */
  suspend(): void {
    this.#armed = false;
    this.#proposal = null;
  }

  /**
   * A GPU verification found no draft (after the sequence's newest token, so no grace as in
   * {@link draft}): backs off once as many in a row came back as the probe window sends.
   */
  noDraft(): void {
    this.#window = PROBE_VERIFICATIONS;
    if (this.#armed && ++this.#misses >= PROBE_VERIFICATIONS) this.#backOff();
  }

  /** A verification came back: `accepted` of `drafted` tokens were accepted. */
  observe(drafted: number, accepted: number): void {
    this.#misses = 0;
    if (accepted === drafted) {
      this.k = Math.min(this.config.numSpeculativeTokens, this.k + 1);
      this.#backoff = FIRST_BACKOFF;
      this.#window = Math.min(MAX_WINDOW, this.#window * 2);
    } else if (accepted === 0) {
      this.#window = PROBE_VERIFICATIONS;
      this.k = Math.max(0, this.k - 1);
      if (this.k === 0) {
        this.k = 1;
        this.#backOff();
      }
    } else {
      this.k = Math.max(1, accepted);
      this.#backoff = FIRST_BACKOFF;
    }
  }

  #backOff(): void {
    this.#armed = false;
    this.#cooldown = this.#backoff;
    this.#backoff = Math.min(MAX_BACKOFF, this.#backoff * 2);
  }
}
