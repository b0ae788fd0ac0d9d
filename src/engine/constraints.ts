/**
 * Grammar constraints where the engine runs: the model's vocabulary and an xgrammar compiler
 * (loaded on the first constrained request), and one matcher per constrained sequence behind
 * the scheduler's {@link SequenceConstraint}.
 *
 * Specs arrive checked: the caller's thread compiled each one in its probe Worker first
 * (`src/grammar/spec_check.ts`), so the compiler here is `trusted` and a spec that would make
 * xgrammar abort never reaches this instance. Compiling still runs on this thread (xgrammar
 * has no way to hand a compiled grammar across), once per spec: cached.
 * @module
 */
import type { GrammarSpec } from "../types/api.ts";
import { ForcedTokenizer } from "../grammar/forced_tokens.ts";
import { GrammarCompiler } from "../grammar/grammar_compiler.ts";
import type { GrammarMatcher } from "../grammar/matcher.ts";
import { loadModelVocabulary } from "../grammar/model_vocabulary.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import type { SequenceConstraint } from "../scheduler/sequence.ts";

/** One sequence's grammar matcher, as the scheduler and runner use it. */
export class GrammarConstraint implements SequenceConstraint {
  #matcher: GrammarMatcher;
  #forced: ForcedTokenizer | null;
  /** Words of a mask row on the GPU (the model's logits), when they differ from the matcher's. */
  #words: number;
  #scratch: Uint32Array | null;

  constructor(matcher: GrammarMatcher, options: { forced: ForcedTokenizer | null; maskWords: number }) {
    this.#matcher = matcher;
    this.#forced = options.forced;
    this.#words = options.maskWords;
    this.#scratch = matcher.maskWords === options.maskWords ? null : new Uint32Array(matcher.maskWords);
  }

  get terminated(): boolean {
    return this.#matcher.isTerminated();
  }

  accept(id: number): boolean {
    return this.#matcher.acceptToken(id);
  }

  forced(): number[] {
    if (!this.#forced || this.#matcher.isTerminated()) return [];
    const text = this.#matcher.findJumpForwardString();
    if (!text) return [];
    const ids: number[] = [];
    for (const id of this.#forced.encode(text)) {
      if (!this.#matcher.acceptToken(id)) break;
      ids.push(id);
    }
    return ids;
  }

  fillMask(out: Uint32Array, offset: number): void {
    if (!this.#scratch) {
      this.#matcher.fillNextTokenBitmask(out, offset);
      return;
    }
    // The tokenizer has ids past the model's logits (or the other way round): copy what fits.
    this.#matcher.fillNextTokenBitmask(this.#scratch, 0);
    const n = Math.min(this.#words, this.#scratch.length);
    out.set(this.#scratch.subarray(0, n), offset);
    out.fill(0, offset + n, offset + this.#words);
  }

  dispose(): void {
    this.#matcher.dispose();
  }
}

/** What {@link EngineGrammar} needs to know about the model. */
export interface EngineGrammarOptions {
  /** The checkpoint directory (its tokenizer files). */
  model: string;
  /** Logits per row. */
  vocabSize: number;
  /** config.json's `model_type`. */
  architecture: string;
}

/** The engine's grammar compiler for its model, made on first use. */
export class EngineGrammar {
  #options: EngineGrammarOptions;
  #ready: Promise<{ compiler: GrammarCompiler; forced: ForcedTokenizer }> | null = null;
  #maskWords: number;

  constructor(options: EngineGrammarOptions) {
    this.#options = options;
    this.#maskWords = Math.ceil(options.vocabSize / 32);
  }

  #load(): Promise<{ compiler: GrammarCompiler; forced: ForcedTokenizer }> {
    return this.#ready ??= (async () => {
      const { model, vocabSize, architecture } = this.#options;
      const tokenizer = await Tokenizer.load(model);
      const { vocabulary } = await loadModelVocabulary(model, tokenizer, { vocabSize, architecture });
      const compiler = await GrammarCompiler.create(vocabulary, { trusted: true, probe: false });
      return { compiler, forced: new ForcedTokenizer(vocabulary) };
    })();
  }

  /**
   * A fresh constraint for one sequence. `jumpForward`: forced text is appended without
   * sampling (off when the request wants logprobs, which forced tokens do not have).
   */
  async constraint(spec: GrammarSpec, jumpForward: boolean): Promise<GrammarConstraint> {
    const { compiler, forced } = await this.#load();
    const grammar = await compiler.compile(spec);
    return new GrammarConstraint(await grammar.createMatcher(), {
      forced: jumpForward ? forced : null,
      maskWords: this.#maskWords,
    });
  }
}
