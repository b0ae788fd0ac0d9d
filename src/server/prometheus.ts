/**
 * The engine's stats and the server's own counters in Prometheus' text exposition format
 * (version 0.0.4).
 * @module
 */
import type { EngineStats, HistogramSnapshot } from "../../mod.ts";

/** Counters the HTTP layer keeps. */
export class ServerCounters {
  /** Responses by route and status. */
  readonly responses: Map<string, number> = new Map<string, number>();
  /** Requests rejected because the queue was full. */
  rejectedQueueFull = 0;
  /** Streams whose client went away before the end. */
  clientDisconnects = 0;

  /** Counts one response. */
  count(route: string, status: number): void {
    const key = `${route}\u0000${status}`;
    this.responses.set(key, (this.responses.get(key) ?? 0) + 1);
  }

  /** Responses by route, all statuses together (the dashboard's requests by API). */
  byRoute(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, n] of this.responses) {
      const route = key.slice(0, key.indexOf("\u0000"));
      out[route] = (out[route] ?? 0) + n;
    }
    return out;
  }
}

const PREFIX = "webgpu_llm_";

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Builds the exposition text. */
export class PrometheusWriter {
  #lines: string[] = [];

  #head(name: string, type: string, help: string): void {
    this.#lines.push(`# HELP ${PREFIX}${name} ${help}`, `# TYPE ${PREFIX}${name} ${type}`);
  }

  gauge(name: string, help: string, value: number, labels = ""): this {
    this.#head(name, "gauge", help);
    this.#lines.push(`${PREFIX}${name}${labels} ${num(value)}`);
    return this;
  }

  counter(name: string, help: string, value: number): this {
    this.#head(`${name}_total`, "counter", help);
    this.#lines.push(`${PREFIX}${name}_total ${num(value)}`);
    return this;
  }

  labelledCounter(name: string, help: string, samples: { labels: Record<string, string>; value: number }[]): this {
    this.#head(`${name}_total`, "counter", help);
    for (const s of samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
      this.#lines.push(`${PREFIX}${name}_total{${labels}} ${num(s.value)}`);
    }
    return this;
  }

  histogram(name: string, help: string, h: HistogramSnapshot): this {
    this.#head(name, "histogram", help);
    h.buckets.forEach((le, i) => this.#lines.push(`${PREFIX}${name}_bucket{le="${le}"} ${h.cumulativeCounts[i]}`));
    this.#lines.push(`${PREFIX}${name}_bucket{le="+Inf"} ${h.count}`);
    this.#lines.push(`${PREFIX}${name}_sum ${num(h.sum)}`, `${PREFIX}${name}_count ${h.count}`);
    return this;
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** Everything the engine and the server record, as exposition text. */
export function renderMetrics(stats: EngineStats, server: ServerCounters, modelName: string): string {
  const w = new PrometheusWriter();
  w.gauge("model_info", "The served model (value is always 1).", 1, `{model="${escapeLabel(modelName)}"}`)
    .gauge("kv_blocks_used", "KV-cache blocks held by live requests.", stats.kvBlocksUsed)
    .gauge("kv_blocks_capacity", "KV-cache blocks in all.", stats.kvBlocksTotal)
    .gauge("kv_blocks_cached", "Unreferenced KV blocks kept for prefix caching.", stats.kvBlocksCached)
    .gauge("state_slots_used", "Recurrent-state slots held by live requests (hybrid models).", stats.stateSlotsUsed)
    .gauge("state_slots_capacity", "Recurrent-state slots in all (hybrid models; 0 otherwise).", stats.stateSlotsTotal)
    .gauge("kv_bytes_used", "Bytes of KV cache held by live requests.", stats.kvBytesUsed)
    .gauge("kv_bytes_capacity", "Bytes of KV cache in all.", stats.kvBytesTotal)
    .gauge("kv_usage_ratio", "KV blocks used / total.", stats.kvUsage)
    .gauge("requests_running", "Sequences in the running batch.", stats.running)
    .gauge("requests_waiting", "Sequences waiting to be admitted.", stats.waiting)
    .gauge("decode_prefill_ratio", "Decode tokens / prefill tokens computed so far.", stats.decodePrefillRatio)
    .gauge("generation_tokens_per_second", "Generated tokens per second, recent window.", stats.tokensPerSecond)
    .gauge("steps_per_sync", "Decode steps per GPU->CPU wait.", stats.stepsPerSync)
    .gauge("batch_fill_p50", "Median of scheduled tokens / token budget, recent steps.", stats.batchFill.p50)
    .gauge("batch_fill_p95", "P95 of scheduled tokens / token budget, recent steps.", stats.batchFill.p95)
    .gauge("batch_fill_p99", "P99 of scheduled tokens / token budget, recent steps.", stats.batchFill.p99)
    .gauge("engine_healthy", "1 while the step loop runs, 0 once it has failed.", stats.error ? 0 : 1)
    .gauge("uptime_seconds", "Seconds since the engine started.", stats.uptimeSeconds)
    .counter("steps", "Engine steps run.", stats.steps)
    .counter("syncs", "GPU->CPU readbacks.", stats.syncs)
    .counter("prefill_tokens", "Prompt tokens computed (prefill, including recomputation).", stats.prefillTokens)
    .counter("decode_tokens", "Decode tokens computed.", stats.decodeTokens)
    .counter("prompt_tokens", "Prompt tokens of admitted requests.", stats.promptTokens)
    .counter("generation_tokens", "Tokens generated.", stats.generationTokens)
    .counter("preemptions", "Sequences preempted for lack of KV blocks.", stats.preemptions)
    .counter("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", stats.prefixCacheQueries)
    .counter("prefix_cache_hits", "Prompt tokens found in the prefix cache.", stats.prefixCacheHits)
    .labelledCounter(
      "requests_finished",
      "Completions finished, by reason.",
      Object.entries(stats.requestsFinished).map(([reason, value]) => ({ labels: { reason }, value })),
    )
    .counter("embeddings", "Inputs embedded (/v1/embeddings, engine.embed).", stats.embeddingsFinished)
    .counter("requests_rejected_queue_full", "Requests answered 429 because the queue was full.", server.rejectedQueueFull)
    .counter("client_disconnects", "Requests whose client went away before the end.", server.clientDisconnects)
    .labelledCounter(
      "http_responses",
      "HTTP responses by route and status.",
      [...server.responses].map(([key, value]) => {
        const [route, status] = key.split("\u0000");
        return { labels: { route, status }, value };
      }),
    )
    .histogram("batch_fill_ratio", "Scheduled tokens / token budget per step.", stats.batchFill)
    .histogram("step_tokens", "Tokens per step.", stats.stepTokens)
    .histogram("time_to_first_token_seconds", "Time from arrival to the first token.", stats.ttft)
    .histogram("inter_token_latency_seconds", "Time between tokens of a request.", stats.interTokenLatency)
    .histogram("e2e_request_latency_seconds", "Time from arrival to the end of a request.", stats.e2eLatency)
    .histogram("queue_time_seconds", "Time from arrival to admission.", stats.queueTime);
  return w.toString();
}
