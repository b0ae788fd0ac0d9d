/**
 * The live dashboard at `GET /`: one self-contained page (no external assets) that polls
 * `/dashboard/stats` and redraws KV-cache usage, batch fill, the decode/prefill ratio,
 * running and waiting requests, speculative decoding's acceptance rate, requests by API
 * route, throughput and latencies.
 * @module
 */

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** The page for a served model. */
export function dashboardHtml(modelName: string, pollMs = 500): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webgpu-llm · ${escapeHtml(modelName)}</title>
<style>
  :root { --bg: #0f1419; --card: #182028; --fg: #e6e6e6; --dim: #8b98a5; --accent: #4fb3ff; --warn: #ffb454; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
  header { padding: 16px 24px; display: flex; gap: 16px; align-items: baseline; border-bottom: 1px solid #2a3540; }
  header h1 { font-size: 18px; margin: 0; }
  header .dim { color: var(--dim); }
  #status.ok { color: #7fd962; } #status.bad { color: #ff6b6b; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; padding: 16px 24px; }
  .card { background: var(--card); border-radius: 8px; padding: 12px 14px; }
  .card h2 { font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; color: var(--dim); margin: 0 0 6px; }
  .big { font-size: 28px; font-variant-numeric: tabular-nums; }
  .row { display: flex; justify-content: space-between; font-variant-numeric: tabular-nums; }
  .bar { height: 10px; background: #2a3540; border-radius: 5px; overflow: hidden; margin: 8px 0 4px; }
  .bar > div { height: 100%; background: var(--accent); width: 0; transition: width .3s; }
  canvas { width: 100%; height: 60px; display: block; margin-top: 6px; }
  .wide { grid-column: span 2; }
</style>
</head>
<body>
<header>
  <h1>webgpu-llm</h1>
  <span class="dim">${escapeHtml(modelName)}</span>
  <span id="status" class="dim">connecting…</span>
  <span class="dim" style="margin-left:auto">updates: <span id="updates">0</span></span>
</header>
<main>
  <section class="card"><h2>KV cache</h2>
    <div class="big"><span id="kv-usage">0</span>%</div>
    <div class="bar"><div id="kv-bar"></div></div>
    <div class="row"><span>blocks</span><span><span id="kv-blocks-used">0</span> / <span id="kv-blocks-total">0</span></span></div>
    <div class="row"><span>bytes</span><span id="kv-bytes">0</span></div>
    <div class="row"><span>prefix-cached blocks</span><span id="kv-blocks-cached">0</span></div>
    <div class="row"><span>state slots (hybrid)</span><span><span id="state-slots-used">0</span> / <span id="state-slots-total">0</span></span></div>
  </section>
  <section class="card"><h2>Batch fill (tokens / budget)</h2>
    <div class="row"><span>P50</span><span id="batch-fill-p50">0</span></div>
    <div class="row"><span>P95</span><span id="batch-fill-p95">0</span></div>
    <div class="row"><span>P99</span><span id="batch-fill-p99">0</span></div>
    <div class="row"><span>steps</span><span id="steps">0</span></div>
    <div class="row"><span>steps / GPU wait</span><span id="steps-per-sync">0</span></div>
  </section>
  <section class="card"><h2>Requests</h2>
    <div class="row"><span>running</span><span class="big" id="running">0</span></div>
    <div class="row"><span>waiting</span><span class="big" id="waiting">0</span></div>
    <div class="row"><span>finished</span><span id="finished">0</span></div>
    <div class="row"><span>preemptions</span><span id="preemptions">0</span></div>
    <div class="row"><span>embeddings</span><span id="embeddings">0</span></div>
  </section>
  <section class="card"><h2>Tokens</h2>
    <div class="row"><span>decode / prefill</span><span id="decode-prefill-ratio">0</span></div>
    <div class="row"><span>prefill tokens</span><span id="prefill-tokens">0</span></div>
    <div class="row"><span>decode tokens</span><span id="decode-tokens">0</span></div>
    <div class="row"><span>prefix-cache hit rate</span><span id="prefix-hit-rate">0</span></div>
  </section>
  <section class="card"><h2>Speculative decoding</h2>
    <div class="row"><span>acceptance rate</span><span class="big" id="spec-acceptance">–</span></div>
    <div class="row"><span>tokens / verify step</span><span id="spec-tokens-per-step">–</span></div>
    <div class="row"><span>drafted tokens</span><span id="spec-draft-tokens">0</span></div>
    <div class="row"><span>accepted tokens</span><span id="spec-accepted-tokens">0</span></div>
    <div class="row"><span>accepted by position</span><span id="spec-per-position">–</span></div>
  </section>
  <section class="card"><h2>Requests by API</h2>
    <div id="routes"></div>
  </section>
  <section class="card wide"><h2>Throughput (generated tokens/s)</h2>
    <div class="big" id="tokens-per-second">0</div>
    <canvas id="tps-chart" width="600" height="60"></canvas>
  </section>
  <section class="card wide"><h2>Latency (seconds)</h2>
    <div class="row"><span></span><span>P50 · P95 · P99</span></div>
    <div class="row"><span>time to first token</span><span id="ttft">0</span></div>
    <div class="row"><span>inter-token</span><span id="itl">0</span></div>
    <div class="row"><span>end to end</span><span id="e2e">0</span></div>
    <canvas id="kv-chart" width="600" height="60"></canvas>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const history = { tps: [], kv: [] };
let updates = 0;
function fmt(v, digits = 2) { return Number.isFinite(v) ? v.toFixed(digits) : "–"; }
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function pct(h) { return fmt(h.p50, 3) + " · " + fmt(h.p95, 3) + " · " + fmt(h.p99, 3); }
function chart(canvas, values, max, color) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (values.length < 2) return;
  const top = Math.max(max, ...values, 1e-9);
  ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * w, y = h - (v / top) * (h - 4) - 2;
    i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
  });
  ctx.stroke();
}
function render(s) {
  // Blocks and (hybrid models) recurrent-state slots together, as vllm:kv_cache_usage_perc.
  const kv = s.kvUsage;
  $("kv-usage").textContent = fmt(kv * 100, 1);
  $("kv-bar").style.width = (kv * 100).toFixed(1) + "%";
  $("kv-blocks-used").textContent = s.kvBlocksUsed;
  $("kv-blocks-total").textContent = s.kvBlocksTotal;
  $("kv-blocks-cached").textContent = s.kvBlocksCached;
  $("state-slots-used").textContent = s.stateSlotsUsed;
  $("state-slots-total").textContent = s.stateSlotsTotal;
  $("kv-bytes").textContent = bytes(s.kvBytesUsed) + " / " + bytes(s.kvBytesTotal);
  $("batch-fill-p50").textContent = fmt(s.batchFill.p50, 3);
  $("batch-fill-p95").textContent = fmt(s.batchFill.p95, 3);
  $("batch-fill-p99").textContent = fmt(s.batchFill.p99, 3);
  $("steps").textContent = s.steps;
  $("steps-per-sync").textContent = fmt(s.stepsPerSync, 1);
  $("running").textContent = s.running;
  $("waiting").textContent = s.waiting;
  const f = s.requestsFinished;
  $("finished").textContent = f.stop + f.length + f.cancelled;
  $("preemptions").textContent = s.preemptions;
  $("embeddings").textContent = s.embeddingsFinished;
  $("decode-prefill-ratio").textContent = fmt(s.decodePrefillRatio, 2);
  $("prefill-tokens").textContent = s.prefillTokens;
  $("decode-tokens").textContent = s.decodeTokens;
  $("prefix-hit-rate").textContent = s.prefixCacheQueries ? fmt(100 * s.prefixCacheHits / s.prefixCacheQueries, 1) + "%" : "–";
  // Acceptance: accepted / drafted tokens; a verification step makes its accepted drafts
  // plus the token sampled after them.
  const drafted = s.specDraftTokens ?? 0, accepted = s.specAcceptedTokens ?? 0, verifies = s.specDrafts ?? 0;
  $("spec-acceptance").textContent = drafted ? fmt(100 * accepted / drafted, 1) + "%" : "–";
  $("spec-tokens-per-step").textContent = verifies ? fmt((accepted + verifies) / verifies, 2) : "–";
  $("spec-draft-tokens").textContent = drafted;
  $("spec-accepted-tokens").textContent = accepted;
  $("spec-per-position").textContent = verifies ? (s.specAcceptedPerPosition ?? []).map((n) => fmt(100 * n / verifies, 0) + "%").join(" · ") : "–";
  $("tokens-per-second").textContent = fmt(s.tokensPerSecond, 1);
  $("ttft").textContent = pct(s.ttft);
  $("itl").textContent = pct(s.interTokenLatency);
  $("e2e").textContent = pct(s.e2eLatency);
  history.tps.push(s.tokensPerSecond); history.kv.push(kv);
  if (history.tps.length > 120) { history.tps.shift(); history.kv.shift(); }
  chart($("tps-chart"), history.tps, 0, "#4fb3ff");
  chart($("kv-chart"), history.kv, 1, "#ffb454");
  const routes = $("routes");
  routes.replaceChildren(...Object.entries(s.routes ?? {})
    .filter(([route]) => route.startsWith("/v1/") || route === "/tokenize" || route === "/detokenize")
    .map(([route, n]) => {
      const row = document.createElement("div");
      row.className = "row";
      const name = document.createElement("span");
      name.textContent = route;
      const count = document.createElement("span");
      count.textContent = n;
      row.append(name, count);
      return row;
    }));
  const st = $("status");
  st.textContent = s.error ? "engine failed: " + s.error : "live";
  st.className = s.error ? "bad" : "ok";
  $("updates").textContent = ++updates;
}
async function poll() {
  try {
    const r = await fetch("/dashboard/stats", { cache: "no-store" });
    if (r.ok) render(await r.json());
    else { $("status").textContent = "HTTP " + r.status; $("status").className = "bad"; }
  } catch (e) {
    $("status").textContent = "disconnected"; $("status").className = "bad";
  }
  setTimeout(poll, ${pollMs});
}
poll();
</script>
</body>
</html>
`;
}
