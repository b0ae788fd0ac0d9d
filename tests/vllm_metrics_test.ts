/**
 * The vLLM-named series that autoscalers and inference gateways scrape, read from a live
 * server's /metrics: every name present with its model_name, values that agree with our own
 * series and the engine's configuration, and promtool accepting the text.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { testServer } from "./helpers/server.ts";
import { promtoolProblems } from "./helpers/promtool.ts";
import { VLLM_METRICS } from "../src/server/vllm_metrics.ts";

/** `name{labels} value` samples of one metric name (labels as an object). */
function samples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const m = /^([^{ ]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

test("vllm metrics: the names KEDA, the inference gateway and llm-d read, with model_name, from a live server", async () => {
  const s = await testServer("stories260K", { servedModelName: "tiny-stories" });
  try {
    const res = await fetch(`${s.base}/v1/completions`, { method: "POST", body: JSON.stringify({ model: "tiny-stories", prompt: "Once upon a time", max_tokens: 8, temperature: 0 }) });
    assertEquals(res.status, 200);
    await res.json();
    const text = await (await fetch(`${s.base}/metrics`)).text();
    const histograms: string[] = [VLLM_METRICS.ttft, VLLM_METRICS.interToken, VLLM_METRICS.timePerOutputToken, VLLM_METRICS.e2e, VLLM_METRICS.queueTime];
    for (const name of Object.values(VLLM_METRICS)) {
      const series = histograms.includes(name) ? `${name}_count` : name;
      const found = samples(text, series);
      assert(found.length > 0, `missing ${series}`);
      for (const f of found) assertEquals(f.labels.model_name, "tiny-stories", `${series} model_name`);
    }
    const one = (name: string) => samples(text, name)[0].value;
    const usage = one(VLLM_METRICS.kvUsage);
    assert(usage >= 0 && usage <= 1, `kv_cache_usage_perc ${usage} outside 0-1`);
    const config = samples(text, VLLM_METRICS.cacheConfig)[0];
    assertEquals(config.value, 1);
    assertEquals(Number(config.labels.num_gpu_blocks), one("webgpu_llm_kv_blocks_capacity"));
    assert(Number(config.labels.block_size) > 0, "block_size");
    assertEquals(one(VLLM_METRICS.generationTokens), 8);
    assertEquals(one(VLLM_METRICS.generationTokens), one("webgpu_llm_generation_tokens_total"));
    assertEquals(one(VLLM_METRICS.promptTokens), one("webgpu_llm_prompt_tokens_total"));
    assertEquals(one(VLLM_METRICS.running), one("webgpu_llm_requests_running"));
    assertEquals(one(VLLM_METRICS.waiting), one("webgpu_llm_requests_waiting"));
    const success = samples(text, VLLM_METRICS.requestSuccess);
    assertEquals(success.find((x) => x.labels.finished_reason === "length")?.value, 1);
    assertEquals(one(`${VLLM_METRICS.ttft}_count`), 1);
    assertEquals(one(`${VLLM_METRICS.interToken}_count`), one(`${VLLM_METRICS.timePerOutputToken}_count`));
    const check = await promtoolProblems(text);
    assertEquals(check.problems, [], `promtool (exit ${check.code})`);
  } finally {
    await s.close();
  }
});
