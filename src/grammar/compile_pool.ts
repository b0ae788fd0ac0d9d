/**
 * Two compile lanes, so one queue does not serve everyone. A spec whose estimated cost
 * (compile_cost.ts) is high, or that was slow before, goes to the slow lane, where it has the
 * full deadline; hostile specs queue behind each other there. Every other spec is compiled in
 * the fast lane with a short budget (`fastLaneMs`); one that runs past it (a wrong estimate)
 * is abandoned there (its Worker terminated, a spare taking over) and compiled again in the
 * slow lane. A small spec therefore never waits a whole deadline behind a hostile one.
 * @module
 */
import { compileCost, SLOW_COST } from "./compile_cost.ts";
import { CompileProbe, type CompileProbeStats, type ProbeOutcome } from "./compile_probe.ts";
import type { GrammarSpec } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** Options of {@link CompilePool}. */
export interface CompilePoolOptions {
  /** The deadline of one compile, in ms. */
  timeoutMs: number;
  /** The fast lane's budget, in ms; not above `timeoutMs` (one lane then). */
  fastLaneMs: number;
  /** Slow specs remembered, so that a repeat skips the fast lane. */
  rememberSlow: number;
}

/** The fast and slow compile lanes of one vocabulary. */
export class CompilePool {
  #fast: CompileProbe;
  #slow: CompileProbe;
  #options: CompilePoolOptions;
  #slowKeys = new Set<string>();

  constructor(vocabulary: Vocabulary, options: CompilePoolOptions) {
    this.#options = options;
    // Only the fast lane keeps a spare: the slow one may wait for a restart.
    this.#fast = new CompileProbe(vocabulary, { spare: true });
    this.#slow = new CompileProbe(vocabulary, { spare: false });
  }

  /** Each lane's counters. */
  get stats(): { fast: CompileProbeStats; slow: CompileProbeStats; liveWorkers: number } {
    return {
      fast: this.#fast.stats,
      slow: this.#slow.stats,
      liveWorkers: this.#fast.liveWorkers + this.#slow.liveWorkers,
    };
  }

  /** Compiles `spec` (cache key `key`): in the fast lane if it looks cheap, else (or past its budget) in the slow lane. */
  async check(spec: GrammarSpec, key: string): Promise<ProbeOutcome> {
    const { timeoutMs, fastLaneMs } = this.#options;
    if (fastLaneMs < timeoutMs && !this.#slowKeys.has(key) && compileCost(spec) <= SLOW_COST) {
      const fast = await this.#fast.check(spec, fastLaneMs);
      if (fast.kind !== "timeout") return fast;
      this.#slowKeys.add(key);
      if (this.#slowKeys.size > this.#options.rememberSlow) {
        this.#slowKeys.delete(this.#slowKeys.values().next().value!);
      }
    }
    return this.#slow.check(spec, timeoutMs);
  }

  /** Terminates the Workers. */
  close(): void {
    this.#fast.close();
    this.#slow.close();
  }
}
