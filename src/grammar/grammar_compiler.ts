/**
 * Grammar specs to compiled grammars for one tokenizer, cached per spec.
 *
 * A new spec is first checked ({@link SpecChecker}: shape, size, schema audit, a compile in
 * the probe Worker with a deadline), unless the compiler is `trusted` because the caller's
 * thread checked it already; then it is compiled on this thread's xgrammar instance, which the
 * matchers use. Results are kept in an LRU keyed by {@link specKey}; concurrent requests for
 * one spec share one compile.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { bitmaskWords } from "./bitmask.ts";
import { compileSpec } from "./grammar_source.ts";
import { GrammarMatcher } from "./matcher.ts";
import { type CheckedSpec, SpecChecker, type SpecCheckOptions, staticCheck } from "./spec_check.ts";
import type { GrammarSpec } from "./spec.ts";
import { Utf8Guard } from "./utf8_guard.ts";
import type { Vocabulary } from "./vocabulary.ts";
import { compilerOf, loadXGrammar, type XGrammarInstance } from "./xgrammar.ts";

/** Options of {@link GrammarCompiler.create}. */
export interface GrammarCompilerOptions extends SpecCheckOptions {
  /**
   * Specs were checked by a {@link SpecChecker} for the same vocabulary (the engine's side):
   * only the static check runs here. A spec that would make xgrammar abort must never reach a
   * trusted compiler, because an abort leaves its instance unusable.
   */
  trusted?: boolean;
}

/** A spec compiled for one vocabulary; makes a matcher per sequence. */
export class CompiledGrammar {
  /** The cache key (normalized spec JSON). */
  readonly key: string;
  /** The normalized spec. */
  readonly spec: GrammarSpec;
  /** Parts of the spec enforced more loosely than written (see schema_audit.ts). */
  readonly warnings: readonly string[];
  /** Milliseconds the compile on this thread took. */
  readonly compileMs: number;
  #xg: XGrammarInstance;
  #compiled: XG.CompiledGrammar;
  #vocabSize: number;
  #stopTokenIds: number[];
  #guard: Utf8Guard;

  /** @internal Made by {@link GrammarCompiler.compile}. */
  constructor(
    init: {
      key: string;
      spec: GrammarSpec;
      warnings: string[];
      compileMs: number;
      vocabSize: number;
      stopTokenIds: number[];
    },
    xg: XGrammarInstance,
    compiled: XG.CompiledGrammar,
    guard: Utf8Guard,
  ) {
    this.#guard = guard;
    this.key = init.key;
    this.spec = init.spec;
    this.warnings = init.warnings;
    this.compileMs = init.compileMs;
    this.#vocabSize = init.vocabSize;
    this.#stopTokenIds = init.stopTokenIds;
    this.#xg = xg;
    this.#compiled = compiled;
  }

  /** A fresh matcher at the start of the grammar, for one sequence. */
  async createMatcher(): Promise<GrammarMatcher> {
    const m = await this.#xg.GrammarMatcher.createGrammarMatcher(
      this.#compiled,
      this.#stopTokenIds,
    );
    return new GrammarMatcher(this.#xg, m, this.#vocabSize, this.#guard);
  }

  /** @internal Frees the native grammar (live matchers keep their own reference). */
  dispose(): void {
    this.#compiled.dispose();
  }
}

/** Compiles and caches grammar specs for one vocabulary. */
export class GrammarCompiler {
  /** The vocabulary grammars are compiled for. */
  readonly vocabulary: Vocabulary;
  /** u32 words of one row's mask. */
  readonly maskWords: number;
  #xg: XGrammarInstance;
  #compiler: XG.GrammarCompiler;
  #guard: Utf8Guard;
  #checker: SpecChecker | null;
  #options: GrammarCompilerOptions;
  #cacheSize: number;
  #cache = new Map<string, CompiledGrammar>();
  #inflight = new Map<string, Promise<CompiledGrammar>>();
  #hits = 0;
  #misses = 0;

  private constructor(
    vocabulary: Vocabulary,
    xg: XGrammarInstance,
    compiler: XG.GrammarCompiler,
    options: GrammarCompilerOptions,
  ) {
    this.vocabulary = vocabulary;
    this.maskWords = bitmaskWords(vocabulary.vocabSize);
    this.#xg = xg;
    this.#compiler = compiler;
    this.#guard = new Utf8Guard(vocabulary);
    this.#checker = options.trusted ? null : new SpecChecker(vocabulary, options);
    this.#options = options;
    this.#cacheSize = options.cacheSize ?? 64;
  }

  /** Loads xgrammar and prepares the vocabulary (tens of ms for a 50k vocabulary). */
  static async create(
    vocabulary: Vocabulary,
    options: GrammarCompilerOptions = {},
  ): Promise<GrammarCompiler> {
    const xg = await loadXGrammar();
    const compiler = await compilerOf(xg, vocabulary);
    return new GrammarCompiler(vocabulary, xg, compiler, options);
  }

  /** Cache counters. */
  get cacheStats(): { hits: number; misses: number; size: number } {
    return { hits: this.#hits, misses: this.#misses, size: this.#cache.size };
  }

  /**
   * The compiled grammar of a spec (normalized first, so any object may be passed). Throws
   * {@link GrammarError} for specs that cannot be compiled.
   */
  compile(spec: unknown): Promise<CompiledGrammar> {
    let checked: CheckedSpec;
    try {
      checked = staticCheck(spec, this.#options);
    } catch (e) {
      return Promise.reject(e);
    }
    const key = checked.key;
    const hit = this.#cache.get(key);
    if (hit) {
      this.#hits++;
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return Promise.resolve(hit);
    }
    const running = this.#inflight.get(key);
    if (running) return running;
    this.#misses++;
    const p = this.#compileNew(checked).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #compileNew(checked: CheckedSpec): Promise<CompiledGrammar> {
    if (this.#checker) await this.#checker.check(checked.spec);
    const t0 = performance.now();
    const compiled = await compileSpec(this.#xg, this.#compiler, checked.spec);
    const entry = new CompiledGrammar(
      {
        key: checked.key,
        spec: checked.spec,
        warnings: checked.warnings,
        compileMs: performance.now() - t0,
        vocabSize: this.vocabulary.vocabSize,
        stopTokenIds: this.vocabulary.stopTokenIds,
      },
      this.#xg,
      compiled,
      this.#guard,
    );
    this.#cache.set(checked.key, entry);
    while (this.#cache.size > this.#cacheSize) {
      const [oldest, old] = this.#cache.entries().next().value!;
      this.#cache.delete(oldest);
      old.dispose();
    }
    return entry;
  }

  /** Stops the probe Worker. Compiled grammars and matchers stay usable. */
  close(): void {
    this.#checker?.close();
  }
}
