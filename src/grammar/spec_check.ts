/**
 * The check of a grammar spec before anything that must not fail compiles it: shape
 * ({@link normalizeSpec}) and size limit; the schema audit (schema_audit.ts: unsupported
 * keywords are errors, loosely enforced ones warnings); a compile in the probe Worker with a
 * deadline (compile_probe.ts: the bound on compile time, and where xgrammar's aborts on bad
 * input land), or on a disposable instance on this thread without the probe.
 *
 * Runs on the caller's thread (a bad spec is refused before the engine sees it); the engine
 * then compiles the checked spec on its own instance ({@link GrammarCompiler} with
 * `trusted`). Results are kept by {@link specKey}, so a spec is probed once.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { CompileProbe } from "./compile_probe.ts";
import { GrammarError, type GrammarErrorCode } from "./errors.ts";
import { compileSpec } from "./grammar_source.ts";
import { auditSchema, DEFAULT_SCHEMA_LIMITS, type SchemaLimits } from "./schema_audit.ts";
import { type GrammarSpec, normalizeSpec, specKey } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";
import { loadXGrammar, type XGrammarInstance } from "./xgrammar.ts";

/** Options of {@link SpecChecker}. */
export interface SpecCheckOptions {
  /** Checked specs remembered (least recently used dropped first). Default 64. */
  cacheSize?: number;
  /** Deadline of one compile in the probe Worker, in ms. Default 10 000. */
  compileTimeoutMs?: number;
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
}

const DEFAULTS = { cacheSize: 64, compileTimeoutMs: 10_000, maxSpecBytes: 64 * 1024 };

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

/** Checks specs for one vocabulary: statically, then by compiling them where failure is safe. */
export class SpecChecker {
  #vocabulary: Vocabulary;
  #probe: CompileProbe | null;
  #options: Required<Omit<SpecCheckOptions, "probe">>;
  #checked = new Map<string, CheckedSpec>();
  #inflight = new Map<string, Promise<CheckedSpec>>();
  #scratch: Promise<{ xg: XGrammarInstance; compiler: XG.GrammarCompiler }> | null = null;

  constructor(vocabulary: Vocabulary, options: SpecCheckOptions = {}) {
    this.#vocabulary = vocabulary;
    this.#probe = options.probe === false ? null : new CompileProbe(vocabulary);
    this.#options = {
      cacheSize: options.cacheSize ?? DEFAULTS.cacheSize,
      compileTimeoutMs: options.compileTimeoutMs ?? DEFAULTS.compileTimeoutMs,
      maxSpecBytes: options.maxSpecBytes ?? DEFAULTS.maxSpecBytes,
      schemaLimits: options.schemaLimits ?? DEFAULT_SCHEMA_LIMITS,
    };
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
    const running = this.#inflight.get(checked.key);
    if (running) return running;
    const p = this.#compileCheck(checked.spec).then(() => {
      this.#checked.set(checked.key, checked);
      while (this.#checked.size > this.#options.cacheSize) {
        this.#checked.delete(this.#checked.keys().next().value!);
      }
      return checked;
    }).finally(() => this.#inflight.delete(checked.key));
    this.#inflight.set(checked.key, p);
    return p;
  }

  /** Compiles the spec somewhere it may fail or take too long: the probe, or a scratch instance. */
  async #compileCheck(spec: GrammarSpec): Promise<void> {
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
    this.#scratch ??= (async () => {
      const xg = await loadXGrammar();
      const info = await xg.TokenizerInfo.createTokenizerInfo([]);
      return { xg, compiler: await xg.GrammarCompiler.createGrammarCompiler(info, false) };
    })();
    const { xg, compiler } = await this.#scratch;
    try {
      (await compileSpec(xg, compiler, spec)).dispose();
      xg.takeLog();
    } catch (e) {
      // An abort leaves the instance unusable: the next check gets a fresh one.
      this.#scratch = null;
      const reason = reasonOf(String((e as Error)?.message ?? e), xg.takeLog());
      throw new GrammarError(codeFor(spec, reason), reason, { cause: e });
    }
  }

  /** Stops the probe Worker. */
  close(): void {
    this.#probe?.close();
  }
}
