/**
 * Grammar specs to compiled grammars for one tokenizer, cached per spec.
 *
 * A new spec goes through: shape check ({@link normalizeSpec}) and size limit; the schema
 * audit (schema_audit.ts: unsupported keywords are errors, loosely enforced ones warnings);
 * a compile in the probe Worker with a deadline (compile_probe.ts: the bound on compile time,
 * and where xgrammar's aborts on bad input land); then the compile on this thread's xgrammar
 * instance, which the engine's matchers use. Results are kept in an LRU keyed by
 * {@link specKey}; concurrent requests for one spec share one compile.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { bitmaskWords } from "./bitmask.ts";
import { CompileProbe } from "./compile_probe.ts";
import { GrammarError, type GrammarErrorCode } from "./errors.ts";
import { compileSpec } from "./grammar_source.ts";
import { GrammarMatcher } from "./matcher.ts";
import { auditSchema, DEFAULT_SCHEMA_LIMITS, type SchemaLimits } from "./schema_audit.ts";
import { type GrammarSpec, normalizeSpec, specKey } from "./spec.ts";
import { Utf8Guard } from "./utf8_guard.ts";
import type { Vocabulary } from "./vocabulary.ts";
import { loadXGrammar, type XGrammarInstance } from "./xgrammar.ts";

/** Options of {@link GrammarCompiler.create}. */
export interface GrammarCompilerOptions {
  /** Compiled grammars kept (least recently used dropped first). Default 64. */
  cacheSize?: number;
  /** Deadline of one compile in the probe Worker, in ms. Default 10 000. */
  compileTimeoutMs?: number;
  /**
   * Compile new specs in a Worker first (default true). Without it there is no deadline, and
   * input errors are caught on a disposable instance on this thread instead.
   */
  probe?: boolean;
  /** Largest spec (its JSON), in bytes. Default 64 KiB. */
  maxSpecBytes?: number;
  /** Schema size limits. */
  schemaLimits?: SchemaLimits;
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

/** xgrammar's `[FATAL] file:line: Check failed: (...) is false: reason` to the reason. */
function reasonOf(message: string, log: readonly string[]): string {
  const fatal = log.find((l) => l.startsWith("[FATAL]"));
  if (!fatal) {
    return /^\d+$/.test(message) || /Aborted/.test(message)
      ? "rejected by the grammar engine"
      : message;
  }
  return fatal.replace(/^\[FATAL\] [^ ]*:\d+: /, "").replace(
    /^Check failed: \(.*?\) is false: /,
    "",
  );
}

function codeFor(spec: GrammarSpec, reason: string): GrammarErrorCode {
  switch (spec.type) {
    case "regex":
      return "invalid_regex";
    case "ebnf":
      return "invalid_grammar";
    case "json_schema":
    case "tool_calls":
      return /regex/i.test(reason) ? "invalid_regex" : "invalid_schema";
    default:
      return "invalid_spec";
  }
}

const DEFAULTS = { cacheSize: 64, compileTimeoutMs: 10_000, maxSpecBytes: 64 * 1024 };

/** Compiles and caches grammar specs for one vocabulary. */
export class GrammarCompiler {
  /** The vocabulary grammars are compiled for. */
  readonly vocabulary: Vocabulary;
  /** u32 words of one row's mask. */
  readonly maskWords: number;
  #xg: XGrammarInstance;
  #compiler: XG.GrammarCompiler;
  #guard: Utf8Guard;
  #probe: CompileProbe | null;
  #options: Required<Omit<GrammarCompilerOptions, "probe">>;
  #cache = new Map<string, CompiledGrammar>();
  #inflight = new Map<string, Promise<CompiledGrammar>>();
  #validator: Promise<{ xg: XGrammarInstance; compiler: XG.GrammarCompiler }> | null = null;
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
    this.#probe = options.probe === false ? null : new CompileProbe(vocabulary);
    this.#options = {
      cacheSize: options.cacheSize ?? DEFAULTS.cacheSize,
      compileTimeoutMs: options.compileTimeoutMs ?? DEFAULTS.compileTimeoutMs,
      maxSpecBytes: options.maxSpecBytes ?? DEFAULTS.maxSpecBytes,
      schemaLimits: options.schemaLimits ?? DEFAULT_SCHEMA_LIMITS,
    };
  }

  /** Loads xgrammar and prepares the vocabulary (tens of ms for a 50k vocabulary). */
  static async create(
    vocabulary: Vocabulary,
    options: GrammarCompilerOptions = {},
  ): Promise<GrammarCompiler> {
    const xg = await loadXGrammar();
    const v = vocabulary;
    const info = await xg.TokenizerInfo.createTokenizerInfo(
      v.encoded,
      v.vocabType,
      v.addPrefixSpace,
      v.vocabSize,
      v.stopTokenIds,
    );
    // xgrammar's own cache is off: this class caches, with a bound.
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
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
    let normalized: GrammarSpec;
    try {
      normalized = normalizeSpec(spec);
    } catch (e) {
      return Promise.reject(e);
    }
    const key = specKey(normalized);
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
    const p = this.#compileNew(key, normalized).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #compileNew(key: string, spec: GrammarSpec): Promise<CompiledGrammar> {
    const bytes = new TextEncoder().encode(key).length;
    if (bytes > this.#options.maxSpecBytes) {
      throw new GrammarError(
        "spec_too_large",
        `the grammar spec is ${bytes} bytes, over the limit of ${this.#options.maxSpecBytes}`,
      );
    }
    const warnings: string[] = [];
    if (spec.type === "json_schema") {
      warnings.push(...auditSchema(spec.schema, this.#options.schemaLimits));
    }
    if (spec.type === "tool_calls") {
      for (const t of spec.tools) {
        if (!t.parameters) continue;
        try {
          warnings.push(
            ...auditSchema(t.parameters, this.#options.schemaLimits).map((w) => `${t.name}: ${w}`),
          );
        } catch (e) {
          if (e instanceof GrammarError) {
            throw new GrammarError(e.code, `tool ${t.name} parameters: ${e.message}`, {
              path: e.path,
            });
          }
          throw e;
        }
      }
    }
    await this.#validate(spec);
    const t0 = performance.now();
    const compiled = await compileSpec(this.#xg, this.#compiler, spec);
    const entry = new CompiledGrammar(
      {
        key,
        spec,
        warnings,
        compileMs: performance.now() - t0,
        vocabSize: this.vocabulary.vocabSize,
        stopTokenIds: this.vocabulary.stopTokenIds,
      },
      this.#xg,
      compiled,
      this.#guard,
    );
    this.#cache.set(key, entry);
    while (this.#cache.size > this.#options.cacheSize) {
      const [oldest, old] = this.#cache.entries().next().value!;
      this.#cache.delete(oldest);
      old.dispose();
    }
    return entry;
  }

  /** Compiles the spec somewhere it may fail or take too long: the probe, or a scratch instance. */
  async #validate(spec: GrammarSpec): Promise<void> {
    if (this.#probe) {
      const r = await this.#probe.check(spec, this.#options.compileTimeoutMs);
      if (r.kind === "timeout") {
        throw new GrammarError(
          "spec_too_large",
          `compiling the grammar took longer than ${this.#options.compileTimeoutMs} ms; simplify it (string length bounds and many optional properties are the costly parts)`,
        );
      }
      if (r.kind === "failed") {
        const reason = reasonOf(r.message, r.log);
        throw new GrammarError(codeFor(spec, reason), reason);
      }
      return;
    }
    this.#validator ??= (async () => {
      const xg = await loadXGrammar();
      const info = await xg.TokenizerInfo.createTokenizerInfo([]);
      return { xg, compiler: await xg.GrammarCompiler.createGrammarCompiler(info, false) };
    })();
    const { xg, compiler } = await this.#validator;
    try {
      (await compileSpec(xg, compiler, spec)).dispose();
      xg.takeLog();
    } catch (e) {
      this.#validator = null;
      const reason = reasonOf(String((e as Error)?.message ?? e), xg.takeLog());
      throw new GrammarError(codeFor(spec, reason), reason, { cause: e });
    }
  }

  /** Stops the probe Worker. Compiled grammars and matchers stay usable. */
  close(): void {
    this.#probe?.close();
  }
}
