/**
 * Grammar constraints where the engine runs: the model's vocabulary and an xgrammar compiler
 * (loaded on the first constrained request), and one matcher per constrained sequence behind
 * the scheduler's {@link SequenceConstraint}.
 *
 * Specs arrive checked: the caller's thread compiled each one in its probe Worker first
 * (`src/grammar/spec_check.ts`), so the compiler here is `trusted` and a spec that would make
 * xgrammar abort never reaches this instance. xgrammar cannot hand a compiled grammar from one
 * instance to another, so a spec is compiled again here, once (cached), when the probe found
 * it cheap; one whose probe compile took over {@link HOST_COMPILE_MS} is compiled and matched
 * in a grammar host Worker of its own (`src/grammar/grammar_host.ts`) instead, so that no slow
 * compile runs on the engine's thread and stalls the other sequences.
 * @module
 */
import type { GrammarSpec, ReasoningGate } from "../types/api.ts";
import { ForcedTokenizer } from "../grammar/forced_tokens.ts";
import { GrammarCompiler } from "../grammar/grammar_compiler.ts";
import type { TokenMatcher } from "../grammar/matcher.ts";
import { GrammarHost } from "../grammar/grammar_host.ts";
import { normalizeSpec, specKey } from "../grammar/spec.ts";
import type { Vocabulary } from "../grammar/vocabulary.ts";
import { loadModelVocabulary } from "../grammar/model_vocabulary.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import type { SequenceConstraint } from "../scheduler/sequence.ts";

/** One sequence's grammar matcher, as the scheduler and runner use it. */
export class GrammarConstraint implements SequenceConstraint {
  #matcher: TokenMatcher;
  #forced: ForcedTokenizer | null;
  /** Words of a mask row on the GPU (the model's logits), when they differ from the matcher's. */
  #words: number;
  #scratch: Uint32Array | null;
  /** See {@link SequenceConstraint.walkDraft}; undefined where the matcher cannot roll back. */
  readonly walkDraft: ((draft: readonly number[], out?: Uint32Array, offset?: number) => number) | undefined;

  constructor(matcher: TokenMatcher, options: { forced: ForcedTokenizer | null; maskWords: number }) {
    this.#matcher = matcher;
    this.#forced = options.forced;
    this.#words = options.maskWords;
    this.#scratch = matcher.maskWords === options.maskWords ? null : new Uint32Array(matcher.maskWords);
    this.walkDraft = matcher.rollback ? (draft, out, offset) => this.#walk(draft, out, offset ?? 0) : undefined;
  }

  #walk(draft: readonly number[], out: Uint32Array | undefined, offset: number): number {
    let kept = 0;
    try {
      if (out) this.fillMask(out, offset);
      while (kept < draft.length) {
        if (!this.#matcher.acceptToken(draft[kept])) break;
        kept++;
        if (out) this.fillMask(out, offset + kept * this.#words);
        if (this.#matcher.isTerminated() || this.forcesNext()) break;
      }
    } finally {
      this.#matcher.rollback!(kept);
    }
    return kept;
  }

  /** @internal Whether {@link forced} would append tokens now (jump-forward text is pending). */
  forcesNext(): boolean {
    return this.#forced !== null && !this.#matcher.isTerminated() && this.#matcher.findJumpForwardString() !== "";
  }

  /** @internal Undoes the last `n` accepted tokens (only where {@link walkDraft} is defined). */
  rollback(n: number): void {
    this.#matcher.rollback!(n);
  }

  /** Words of a mask row this constraint writes. */
  get maskWords(): number {
    return this.#words;
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

/**
 * A constraint that starts after the output's reasoning: while the model reasons (from its
 * start marker, or from the first token when the gate is open) every token is allowed, and
 * the grammar takes over after the end marker, one token (`</think>`) or a token sequence
 * (harmony's `<|channel|>final<|message|>`). A partial marker that breaks off is reasoning
 * like any other text. An output that does not open a block is constrained from its first
 * token, which may also be the start marker.
 */
export class ReasoningGatedConstraint implements SequenceConstraint {
  #inner: GrammarConstraint;
  #gate: ReasoningGate;
  #state: "expect" | "reasoning" | "active";
  /** The reasoning's last ids, as many as the end marker has (to spot it). */
  #tail: number[] = [];
  /** See {@link SequenceConstraint.walkDraft}; undefined where the inner matcher cannot roll back. */
  readonly walkDraft: ((draft: readonly number[], out?: Uint32Array, offset?: number) => number) | undefined;

  constructor(inner: GrammarConstraint, gate: ReasoningGate) {
    if (gate.endTokenIds.length === 0) throw new RangeError("a reasoning gate needs an end marker");
    this.#inner = inner;
    this.#gate = gate;
    this.#state = gate.open ? "reasoning" : "expect";
    this.walkDraft = inner.walkDraft ? (draft, out, offset) => this.#walk(draft, out, offset ?? 0) : undefined;
  }

  // The gate's own state is saved and put back; the grammar rolls back the tokens it took.
  #walk(draft: readonly number[], out: Uint32Array | undefined, offset: number): number {
    const state = this.#state;
    const tail = [...this.#tail];
    const words = this.#inner.maskWords;
    let kept = 0;
    let inner = 0;
    try {
      if (out) this.fillMask(out, offset);
      while (kept < draft.length) {
        const id = draft[kept];
        const grammar = this.#state === "active" || (this.#state === "expect" && id !== this.#gate.startTokenId);
        if (!this.accept(id)) break;
        if (grammar) inner++;
        kept++;
        if (out) this.fillMask(out, offset + kept * words);
        if (this.terminated || (this.#state === "active" && this.#inner.forcesNext())) break;
      }
    } finally {
      this.#state = state;
      this.#tail = tail;
      this.#inner.rollback(inner);
    }
    return kept;
  }

  /** "reasoning" until the end marker, then "active" (the grammar's); "expect": the first token may open reasoning. */
  get state(): "expect" | "reasoning" | "active" {
    return this.#state;
  }

  get terminated(): boolean {
    return this.#state === "active" && this.#inner.terminated;
  }

  accept(id: number): boolean {
    if (this.#state === "reasoning") {
      const end = this.#gate.endTokenIds;
      this.#tail.push(id);
      if (this.#tail.length > end.length) this.#tail.shift();
      if (this.#tail.length === end.length && this.#tail.every((t, i) => t === end[i])) this.#state = "active";
      return true;
    }
    if (this.#state === "expect") {
      if (id === this.#gate.startTokenId) {
        this.#state = "reasoning";
        return true;
      }
      this.#state = "active";
    }
    return this.#inner.accept(id);
  }

  forced(): number[] {
    return this.#state === "active" ? this.#inner.forced() : [];
  }

  fillMask(out: Uint32Array, offset: number): void {
    if (this.#state === "active") return this.#inner.fillMask(out, offset);
    const words = this.#inner.maskWords;
    if (this.#state === "reasoning") {
      out.fill(0xffffffff, offset, offset + words);
      return;
    }
    this.#inner.fillMask(out, offset);
    const id = this.#gate.startTokenId;
    if (id !== undefined && id < words * 32) out[offset + (id >>> 5)] |= 1 << (id & 31);
  }

  dispose(): void {
    this.#inner.dispose();
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
  /** Probe compile time (ms) above which a grammar gets a host Worker (default {@link HOST_COMPILE_MS}). */
  hostCompileMs?: number;
}

/** Default probe compile time (ms) above which a grammar gets a host Worker instead of a compile here. */
export const HOST_COMPILE_MS = 250;

/** Host Workers kept; past this, hosts without live matchers are closed (least recently used first). */
const MAX_IDLE_HOSTS = 4;

interface Loaded {
  compiler: GrammarCompiler;
  forced: ForcedTokenizer;
  vocabulary: Vocabulary;
}

/** The engine's grammar compiler for its model, made on first use. */
export class EngineGrammar {
  #options: EngineGrammarOptions;
  #ready: Promise<Loaded> | null = null;
  #maskWords: number;
  /** Grammar hosts by spec key, least recently used first. */
  #hosts = new Map<string, GrammarHost>();
  /** Constraints waiting for a host's compile (such a host is not idle). */
  #waiting = new Map<GrammarHost, number>();

  constructor(options: EngineGrammarOptions) {
    this.#options = options;
    this.#maskWords = Math.ceil(options.vocabSize / 32);
  }

  #load(): Promise<Loaded> {
    return this.#ready ??= (async () => {
      const { model, vocabSize, architecture } = this.#options;
      const tokenizer = await Tokenizer.load(model);
      const { vocabulary } = await loadModelVocabulary(model, tokenizer, { vocabSize, architecture });
      const compiler = await GrammarCompiler.create(vocabulary, { trusted: true, probe: false });
      return { compiler, forced: new ForcedTokenizer(vocabulary), vocabulary };
    })();
  }

  /**
   * A fresh constraint for one sequence. `jumpForward`: forced text is appended without
   * sampling (off when the request wants logprobs, which forced tokens do not have).
   * `compileMs`: what the probe's compile took, when known (a slow grammar gets a host);
   * `reasoning`: the grammar starts after the output's reasoning.
   */
  async constraint(
    spec: GrammarSpec,
    jumpForward: boolean,
    { compileMs, reasoning }: { compileMs?: number; reasoning?: ReasoningGate } = {},
  ): Promise<SequenceConstraint> {
    const { compiler, forced, vocabulary } = await this.#load();
    const matcher = compileMs !== undefined && compileMs > (this.#options.hostCompileMs ?? HOST_COMPILE_MS)
      ? await this.#hostMatcher(spec, vocabulary)
      : await (await compiler.compile(spec)).createMatcher();
    const constraint = new GrammarConstraint(matcher, { forced: jumpForward ? forced : null, maskWords: this.#maskWords });
    return reasoning ? new ReasoningGatedConstraint(constraint, reasoning) : constraint;
  }

  /** A matcher in the spec's host Worker (started, and the spec compiled there, on first use). */
  async #hostMatcher(spec: GrammarSpec, vocabulary: Vocabulary): Promise<TokenMatcher> {
    const normalized = normalizeSpec(spec);
    const key = specKey(normalized);
    let host = this.#hosts.get(key);
    if (host) this.#hosts.delete(key);
    else host = new GrammarHost(vocabulary, normalized);
    this.#hosts.set(key, host);
    this.#waiting.set(host, (this.#waiting.get(host) ?? 0) + 1);
    try {
      await host.ready;
    } catch (e) {
      if (this.#hosts.get(key) === host) this.#hosts.delete(key);
      host.close();
      throw e;
    } finally {
      const n = this.#waiting.get(host)! - 1;
      if (n > 0) this.#waiting.set(host, n);
      else this.#waiting.delete(host);
    }
    const matcher = host.createMatcher();
    this.#evictIdleHosts();
    return matcher;
  }

  #evictIdleHosts(): void {
    let over = this.#hosts.size - MAX_IDLE_HOSTS;
    for (const [key, host] of this.#hosts) {
      if (over <= 0) break;
      if (host.liveMatchers > 0 || this.#waiting.has(host)) continue;
      host.close();
      this.#hosts.delete(key);
      over--;
    }
  }

  /** Grammar host Workers running. */
  get hosts(): number {
    return this.#hosts.size;
  }

  /** Stops the grammar host Workers. */
  close(): void {
    for (const host of this.#hosts.values()) host.close();
    this.#hosts.clear();
  }
}
