/**
 * The per-sequence grammar state: which tokens may come next, fed the tokens that came.
 * One per constrained sequence; the engine fills the row's bitmask before each step of that
 * sequence and accepts the sampled token after it.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { bitmaskWords } from "./bitmask.ts";
import type { Utf8Guard } from "./utf8_guard.ts";
import type { XGrammarInstance } from "./xgrammar.ts";

// The wrapper's private handle (an embind GrammarMatcher): its GetNextTokenBitmask returns a
// std::vector that is read in place and freed, instead of the wrapper's async copy.
interface MatcherHandle {
  GetNextTokenBitmask(vocabSize: number): { delete(): void };
}

/** What a sequence's constraint needs of a matcher (local, or in a grammar host Worker). */
export interface TokenMatcher {
  /** u32 words of one mask. */
  readonly maskWords: number;
  /** Writes the mask of tokens allowed next into `out` at word `offset`. */
  fillNextTokenBitmask(out: Uint32Array, offset?: number): void;
  /** Advances by one token; false (state unchanged) when the grammar rejects it. */
  acceptToken(id: number): boolean;
  /** Whether the grammar is complete and a stop token was accepted. */
  isTerminated(): boolean;
  /** The text every valid continuation starts with (jump-forward). */
  findJumpForwardString(): string;
  /**
   * Undoes the last `n` accepted tokens. Absent where the matcher cannot (a grammar host's):
   * its sequence then does not speculate.
   */
  rollback?(n: number): void;
  /** Frees the matcher (idempotent). */
  dispose(): void;
}

/** A grammar matcher for one sequence. */
export class GrammarMatcher implements TokenMatcher {
  /** Logits per row the mask covers. */
  readonly vocabSize: number;
  /** u32 words of one mask. */
  readonly maskWords: number;
  #matcher: XG.GrammarMatcher;
  #xg: XGrammarInstance;
  #guard: Utf8Guard;
  // UTF-8 state after each accepted token (index 0: the start), for rollback.
  #utf8: number[] = [0];
  #disposed = false;

  /** @internal Made by {@link CompiledGrammar.createMatcher}. */
  constructor(
    xg: XGrammarInstance,
    matcher: XG.GrammarMatcher,
    vocabSize: number,
    guard: Utf8Guard,
  ) {
    this.#xg = xg;
    this.#matcher = matcher;
    this.#guard = guard;
    this.vocabSize = vocabSize;
    this.maskWords = bitmaskWords(vocabSize);
  }

  /**
   * Writes the mask of tokens allowed next into `out` at word `offset` (bit `id % 32` of word
   * `id >> 5`; set = allowed): the grammar's mask, less tokens that would make the output
   * ill-formed UTF-8 (utf8_guard.ts). After termination only stop tokens remain allowed.
   */
  fillNextTokenBitmask(out: Uint32Array, offset = 0): void {
    const handle = (this.#matcher as unknown as { handle: MatcherHandle }).handle;
    const vec = handle.GetNextTokenBitmask(this.vocabSize);
    try {
      const view = this.#xg.binding.vecIntToView(vec);
      out.set(new Uint32Array(view.buffer, view.byteOffset, this.maskWords), offset);
    } finally {
      vec.delete();
    }
    this.#guard.restrict(out, this.#utf8[this.#utf8.length - 1], offset);
  }

  /** Advances by one sampled token; false (state unchanged) when the grammar rejects it. */
  acceptToken(id: number): boolean {
    const next = this.#guard.advance(this.#utf8[this.#utf8.length - 1], id);
    if (next < 0 || !this.#matcher.acceptToken(id)) return false;
    this.#utf8.push(next);
    return true;
  }

  /** Whether the grammar is complete and a stop token was accepted. */
  isTerminated(): boolean {
    return this.#matcher.isTerminated();
  }

  /** Undoes the last `n` accepted tokens (for speculative or run-ahead decoding). */
  rollback(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.#utf8.length - 1) {
      throw new RangeError(`cannot roll back ${n} tokens after ${this.#utf8.length - 1}`);
    }
    this.#matcher.rollBack(n);
    this.#utf8.length -= n;
  }

  /**
   * The longest text every valid continuation starts with (e.g. `"name": "` after `{` in a
   * schema-fixed object): text a decoder can append without sampling (jump-forward decoding).
   */
  findJumpForwardString(): string {
    return this.#matcher.findJumpForwardString();
  }

  /** Back to the start of the grammar. */
  reset(): void {
    this.#matcher.reset();
    this.#utf8 = [0];
  }

  /** Frees the native matcher (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#matcher.dispose();
  }
}
