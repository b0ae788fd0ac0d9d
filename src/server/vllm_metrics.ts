/**
 * The engine's numbers under vLLM's metric names, which autoscalers (KEDA / HPA recipes), the
 * Gateway API Inference Extension's endpoint picker and llm-d already scrape. Every series
 * carries `model_name`; our own `webgpu_llm_*` names stay beside them.
 * @module
 */
import type { EngineInfo, EngineStats, HistogramSnapshot } from "../../mod.ts";

/** The vLLM series this server exports (names as they appear in /metrics). */
export const VLLM_METRICS = {
  running: "vllm:num_requests_running",
  waiting: "vllm:num_requests_waiting",
  kvUsage: "vllm:kv_cache_usage_perc",
  cacheConfig: "vllm:cache_config_info",
  promptTokens: "vllm:prompt_tokens_total",
  generationTokens: "vllm:generation_tokens_total",
  preemptions: "vllm:num_preemptions_total",
  requestSuccess: "vllm:request_success_total",
  ttft: "vllm:time_to_first_token_seconds",
  interToken: "vllm:inter_token_latency_seconds",
  /** vLLM's name for inter-token latency before 0.10, still read by older dashboards. */
  timePerOutputToken: "vllm:time_per_output_token_seconds",
  e2e: "vllm:e2e_request_latency_seconds",
  queueTime: "vllm:request_queue_time_seconds",
  specDrafts: "vllm:spec_decode_num_drafts_total",
  specDraftTokens: "vllm:spec_decode_num_draft_tokens_total",
  specAcceptedTokens: "vllm:spec_decode_num_accepted_tokens_total",
} as const;

/** Accepted draft tokens per draft position: exported only with speculative decoding on. */
export const VLLM_SPEC_PER_POSITION = "vllm:spec_decode_num_accepted_tokens_per_pos_total";

function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labels(l: Record<string, string | number>): string {
  return `{${Object.entries(l).map(([k, v]) => `${k}="${label(String(v))}"`).join(",")}}`;
}

/** The vLLM-named series as Prometheus text (exposition format 0.0.4). */
export function renderVllmMetrics(stats: EngineStats, info: EngineInfo, modelName: string): string {
  const out: string[] = [];
  const model = { model_name: modelName };
  const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const single = (name: string, type: string, help: string, value: number, extra: Record<string, string | number> = {}) => {
    head(name, type, help);
    out.push(`${name}${labels({ ...model, ...extra })} ${value}`);
  };
  const histogram = (name: string, help: string, h: HistogramSnapshot) => {
    head(name, "histogram", help);
    h.buckets.forEach((le, i) => out.push(`${name}_bucket${labels({ ...model, le })} ${h.cumulativeCounts[i]}`));
    out.push(`${name}_bucket${labels({ ...model, le: "+Inf" })} ${h.count}`);
    out.push(`${name}_sum${labels(model)} ${h.sum}`, `${name}_count${labels(model)} ${h.count}`);
  };
  const m = VLLM_METRICS;
  single(m.running, "gauge", "Number of requests in model execution batches.", stats.running);
  single(m.waiting, "gauge", "Number of requests waiting to be processed.", stats.waiting);
  single(m.kvUsage, "gauge", "KV-cache usage. 1 means 100 percent usage.", stats.kvUsage);
  single(m.cacheConfig, "gauge", "Information of the KV cache configuration (value is always 1).", 1, {
    block_size: info.blockSize,
    num_gpu_blocks: info.kvBlocksTotal,
    cache_dtype: info.kvDtype,
    enable_prefix_caching: "True",
  });
  single(m.promptTokens, "counter", "Number of prefill tokens processed.", stats.promptTokens);
  single(m.generationTokens, "counter", "Number of generation tokens processed.", stats.generationTokens);
  single(m.preemptions, "counter", "Cumulative number of preemptions from the engine.", stats.preemptions);
  single(m.specDrafts, "counter", "Number of spec decoding drafts (verification steps).", stats.specDrafts);
  single(m.specDraftTokens, "counter", "Number of draft tokens (speculative decoding).", stats.specDraftTokens);
  single(m.specAcceptedTokens, "counter", "Number of accepted draft tokens (speculative decoding).", stats.specAcceptedTokens);
  if (stats.specAcceptedPerPosition.length > 0) {
    head(VLLM_SPEC_PER_POSITION, "counter", "Accepted draft tokens per draft position (speculative decoding).");
    stats.specAcceptedPerPosition.forEach((v, position) => out.push(`${VLLM_SPEC_PER_POSITION}${labels({ ...model, position })} ${v}`));
  }
  head(m.requestSuccess, "counter", "Count of successfully processed requests.");
  const reasons = stats.requestsFinished;
  for (const [reason, value] of [["stop", reasons.stop], ["length", reasons.length], ["abort", reasons.cancelled]] as const) {
    out.push(`${m.requestSuccess}${labels({ ...model, finished_reason: reason })} ${value}`);
  }
  histogram(m.ttft, "Histogram of time to first token in seconds.", stats.ttft);
  histogram(m.interToken, "Histogram of inter-token latency in seconds.", stats.interTokenLatency);
  histogram(m.timePerOutputToken, "Histogram of time per output token in seconds (deprecated name of inter-token latency).", stats.interTokenLatency);
  histogram(m.e2e, "Histogram of e2e request latency in seconds.", stats.e2eLatency);
  histogram(m.queueTime, "Histogram of time spent in WAITING phase for request.", stats.queueTime);
  return out.join("\n") + "\n";
}
