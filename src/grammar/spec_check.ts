/**
 * The check of a grammar spec before anything that must not fail compiles it: shape
 * ({@link normalizeSpec}) and size limit; the schema audit (schema_audit.ts: unsupported
 * keywords are errors, loosely enforced ones warnings); a compile in a probe Worker with a
 * deadline (compile_pool.ts: a fast and a slow lane; the bound on compile time, and where
 * xgrammar's aborts on bad input land), or on a disposable instance on this thread without
 * the probe.
 *
 * Runs on the caller's thread (a bad spec is refused before the engine sees it); the engine
 * then compiles the checked spec on its own instance ({@link GrammarCompiler} with
 * `trusted`). Results are kept by {@link specKey}, failures too (a bounded LRU each), so a
 * spec is probed once and a repeated bad one is answered at once.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { CompilePool } from "./compile_pool.ts";
import type { CompileProbeStats } from "./compile_probe.ts";
import { GrammarError, type GrammarErrorCode } from "./errors.ts";
import { compileSpec } from "./grammar_source.ts";
import { auditSchema, DEFAULT_SCHEMA_LIMITS, type SchemaLimits } from "./schema_audit.ts";
import { type GrammarSpec, normalizeSpec, specKey } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";
import { loadXGrammar, type XGrammarInstance } from "./xgrammar.ts";

/** Options of {@link SpecChecker}. */
export interface SpecCheckOptions {
  /** Checked specs remembered, and failed ones (least recently used dropped first). Default 64. */
  cacheSize?: number;
  /** Deadline of one compile in the probe Worker, in ms. Default 10 000. */
  compileTimeoutMs?: number;
  /**
   * Budget of a compile in the fast lane, in ms (default 500): a spec that passes it is
   * compiled again in the slow lane, so small specs never wait a whole deadline behind it.
   */
  fastLaneMs?: number;
  /**
   * Compile new specs in a Worker (default true). Without it there is no deadline, and input
   * errors are caught on a disposable instance on this thread instead.
   */
  probe?: boolean;
  /** Largest spec (its JSON), in bytes. Default 64 KiB. */
  maxSpecBytes?: number;
  /** Schema size limits. */
  schemaLimits?: SchemaLimits;
}

/** A spec that passed the check. */
export interface CheckedSpec {
  /** The normalized spec. */
  spec: GrammarSpec;
  /** Its cache key ({@link specKey}). */
  key: string;
  /** Parts of the spec enforced more loosely than written (see schema_audit.ts). */
  warnings: string[];
  /** What the check's compile took, in ms (absent from a static check). */
  compileMs?: number;
}

const DEFAULTS = { cacheSize: 64, compileTimeoutMs: 10_000, fastLaneMs: 500, maxSpecBytes: 64 * 1024 };

/** Counters of a {@link SpecChecker}. */
export interface SpecCheckStats {
  /** Checks answered from the cache of failures. */
  failureHits: number;
  /** Failed specs remembered. */
  failures: number;
  /** The compile lanes' counters (null without the probe). */
  lanes: { fast: CompileProbeStats; slow: CompileProbeStats; liveWorkers: number } | null;
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

/**
 * What can be checked without compiling: shape, size and the schema audit. Returns the
 * normalized spec with its key and warnings; throws {@link GrammarError}.
 */
export function staticCheck(
  spec: unknown,
  limits: { maxSpecBytes?: number; schemaLimits?: SchemaLimits } = {},
): CheckedSpec {
  const normalized = normalizeSpec(spec);
  const key = specKey(normalized);
  const max = limits.maxSpecBytes ?? DEFAULTS.maxSpecBytes;
  const bytes = new TextEncoder().encode(key).length;
  if (bytes > max) {
    throw new GrammarError(
      "spec_too_large",
      `the grammar spec is ${bytes} bytes, over the limit of ${max}`,
    );
  }
  const schemaLimits = limits.schemaLimits ?? DEFAULT_SCHEMA_LIMITS;
  const warnings: string[] = [];
  if (normalized.type === "json_schema") {
    warnings.push(...auditSchema(normalized.schema, schemaLimits));
  }
  if (normalized.type === "tool_calls") {
    for (const t of normalized.tools) {
      if (!t.parameters) continue;
      try {
        warnings.push(...auditSchema(t.parameters, schemaLimits).map((w) => `${t.name}: ${w}`));
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
  return { spec: normalized, key, warnings };
}

/** Sets `key` in an LRU map, dropping the least recently used past `size`. */
function remember<V>(map: Map<string, V>, key: string, value: V, size: number): void {
  map.set(key, value);
  while (map.size > size) map.delete(map.keys().next().value!);
}

/** Checks specs for one vocabulary: statically, then by compiling them where failure is safe. */
export class SpecChecker {
  #vocabulary: Vocabulary;
  #probe: CompilePool | null;
  #options: Required<Omit<SpecCheckOptions, "probe">>;
  #checked = new Map<string, CheckedSpec>();
  /** Specs whose compile failed or passed the deadline, with their error (compiles are deterministic). */
  #failed = new Map<string, GrammarError>();
  #failureHits = 0;
  #inflight = new Map<string, Promise<CheckedSpec>>();
  #scratch: Promise<{ xg: XGrammarInstance; compiler: XG.GrammarCompiler }> | null = null;

  constructor(vocabulary: Vocabulary, options: SpecCheckOptions = {}) {
    this.#vocabulary = vocabulary;
    this.#options = {
      cacheSize: options.cacheSize ?? DEFAULTS.cacheSize,
      compileTimeoutMs: options.compileTimeoutMs ?? DEFAULTS.compileTimeoutMs,
      fastLaneMs: options.fastLaneMs ?? DEFAULTS.fastLaneMs,
      maxSpecBytes: options.maxSpecBytes ?? DEFAULTS.maxSpecBytes,
      schemaLimits: options.schemaLimits ?? DEFAULT_SCHEMA_LIMITS,
    };
    this.#probe = options.probe === false ? null : new CompilePool(vocabulary, {
      timeoutMs: this.#options.compileTimeoutMs,
      fastLaneMs: this.#options.fastLaneMs,
      rememberSlow: this.#options.cacheSize,
    });
  }

  /** Counters: the failure cache and the compile lanes. */
  get stats(): SpecCheckStats {
    return { failureHits: this.#failureHits, failures: this.#failed.size, lanes: this.#probe?.stats ?? null };
  }

  /** The vocabulary specs are checked against. */
  get vocabulary(): Vocabulary {
    return this.#vocabulary;
  }

  /**
   * Checks a spec (any object; it is normalized first). Resolves to the checked spec, or
   * rejects with {@link GrammarError} naming the problem.
   */
  check(spec: unknown): Promise<CheckedSpec> {
    let checked: CheckedSpec;
    try {
      checked = staticCheck(spec, this.#options);
    } catch (e) {
      return Promise.reject(e);
    }
    const hit = this.#checked.get(checked.key);
    if (hit) {
      this.#checked.delete(checked.key);
      this.#checked.set(checked.key, hit);
      return Promise.resolve(hit);
    }
    const failed = this.#failed.get(checked.key);
    if (failed) {
      this.#failureHits++;
      this.#failed.delete(checked.key);
      this.#failed.set(checked.key, failed);
      return Promise.reject(failed);
    }
    const running = this.#inflight.get(checked.key);
    if (running) return running;
    const p = this.#compileCheck(checked.spec, checked.key).then((compileMs) => {
      checked.compileMs = compileMs;
      remember(this.#checked, checked.key, checked, this.#options.cacheSize);
      return checked;
    }, (e) => {
      if (e instanceof GrammarError) remember(this.#failed, checked.key, e, this.#options.cacheSize);
      throw e;
    }).finally(() => this.#inflight.delete(checked.key));
    this.#inflight.set(checked.key, p);
    return p;
  }

  /** Compiles the spec somewhere it may fail or take too long: the probe, or a scratch instance. */
  /** Resolves to the compile's milliseconds. */
  async #compileCheck(spec: GrammarSpec, key: string): Promise<number> {
    if (this.#probe) {
      const r = await this.#probe.check(spec, key);
      // A reply can beat a timer that a busy event loop delayed: a compile that took longer
      // than the deadline is over it however its reply came in.
      if (r.kind === "timeout" || (r.kind === "ok" && r.ms > this.#options.compileTimeoutMs)) {
        throw new GrammarError(
          "spec_too_large",
          `compiling the grammar took longer than ${this.#options.compileTimeoutMs} ms; simplify it (string length bounds and many optional properties are the costly parts)`,
        );
      }
      if (r.kind === "failed") {
        const reason = reasonOf(r.message, r.log);
        throw new GrammarError(codeFor(spec, reason), reason);
      }
      return r.ms;
    }
    this.#scratch ??= (async () => {
      const xg = await loadXGrammar();
      const info = await xg.TokenizerInfo.createTokenizerInfo([]);
      return { xg, compiler: await xg.GrammarCompiler.createGrammarCompiler(info, false) };
    })();
    const { xg, compiler } = await this.#scratch;
    const t0 = performance.now();
    try {
      (await compileSpec(xg, compiler, spec)).dispose();
      xg.takeLog();
      return performance.now() - t0;
    } catch (e) {
      // An abort leaves the instance unusable: the next check gets a fresh one.
      this.#scratch = null;
      const reason = reasonOf(String((e as Error)?.message ?? e), xg.takeLog());
      throw new GrammarError(codeFor(spec, reason), reason, { cause: e });
    }
  }

  /** Stops the probe Workers. */
  close(): void {
    this.#probe?.close();
  }
}
