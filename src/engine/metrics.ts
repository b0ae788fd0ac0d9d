/**
 * What the engine records for the server and the dashboard: cumulative counters, and
 * histograms that keep Prometheus-style buckets plus a window of recent samples for
 * percentiles.
 * @module
 */

import type { FinishReason, HistogramSnapshot } from "../types/api.ts";

/** Bucketed counts plus a ring of recent samples. */
export class Histogram {
  readonly buckets: number[];
  #counts: number[];
  #count = 0;
  #sum = 0;
  #recent: number[] = [];
  #window: number;
  #next = 0;

  constructor(buckets: number[], window = 2048) {
    this.buckets = buckets;
    this.#counts = new Array(buckets.length).fill(0);
    this.#window = window;
  }

  observe(v: number): void {
    this.#count++;
    this.#sum += v;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.#counts[i]++;
    if (this.#recent.length < this.#window) this.#recent.push(v);
    else this.#recent[this.#next++ % this.#window] = v;
  }

  snapshot(): HistogramSnapshot {
    const sorted = [...this.#recent].sort((a, b) => a - b);
    const q = (p: number) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0;
    return {
      buckets: this.buckets,
      cumulativeCounts: [...this.#counts],
      count: this.#count,
      sum: this.#sum,
      p50: q(0.5),
      p95: q(0.95),
      p99: q(0.99),
    };
  }
}

const LATENCY_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const FILL = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];
const STEP_TOKENS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/** Live counters and histograms of one engine. */
export class EngineMetrics {
  steps = 0;
  syncs = 0;
  decodeSteps = 0;
  prefillTokens = 0;
  decodeTokens = 0;
  promptTokens = 0;
  generationTokens = 0;
  finished: Record<FinishReason, number> = { stop: 0, length: 0, cancelled: 0 };
  /** Embedding inputs finished. */
  embeddingsFinished = 0;
  lastStepAt = 0;
  readonly batchFill = new Histogram(FILL);
  readonly stepTokens = new Histogram(STEP_TOKENS);
  readonly ttft = new Histogram(LATENCY_S);
  readonly itl = new Histogram(LATENCY_S);
  readonly e2e = new Histogram(LATENCY_S);
  readonly queueTime = new Histogram(LATENCY_S);
  #started = performance.now();
  #rate: { t: number; tokens: number }[] = [];

  /** Records one submitted step. */
  step(tokens: number, budget: number, prefill: number, decode: number, now: number): void {
    this.steps++;
    if (decode > 0) this.decodeSteps++;
    this.prefillTokens += prefill;
    this.decodeTokens += decode;
    this.batchFill.observe(tokens / budget);
    this.stepTokens.observe(tokens);
    this.lastStepAt = now;
  }

  /** Records tokens delivered to requests at a readback. */
  delivered(tokens: number, now: number): void {
    this.generationTokens += tokens;
    this.#rate.push({ t: now, tokens });
    while (this.#rate.length && now - this.#rate[0].t > 5000) this.#rate.shift();
  }

  tokensPerSecond(now: number): number {
    if (this.#rate.length === 0) return 0;
    const span = Math.max(1000, now - this.#rate[0].t);
    return (this.#rate.reduce((n, r) => n + r.tokens, 0) * 1000) / span;
  }

  get uptimeSeconds(): number {
    return (performance.now() - this.#started) / 1000;
  }
}
