/**
 * Online serving benchmark against `serve.ts` (like `vllm bench serve`): starts the server
 * on a free loopback port, sends the workload's requests at Poisson arrival times as
 * streaming `POST /v1/completions`, and measures request throughput, output tokens/s, TTFT
 * and inter-token latency from the client's side. Skips with a reason when serve.ts is
 * absent or does not become healthy. serve.ts runs under the same runtime as the bench.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { scriptCommand, stat } from "../src/runtime/runtime.ts";
import type { BenchRequest } from "./workload.ts";
import { RequestClock, type RequestTiming } from "./request_timing.ts";
import { type Percentiles, scalePercentiles, summarize } from "./stats.ts";
import { freePort } from "./free_port.ts";

/** Options of {@link benchServing}. */
export interface ServingOptions {
  /** Path of serve.ts. */
  serveScript: string;
  model: string;
  requests: BenchRequest[];
  /** Seconds after the start at which each request is sent. */
  arrivals: number[];
  ratePerSecond: number;
  maxSeqs: number;
  /** How long to wait for /health (s). */
  startTimeoutS?: number;
  /** Give up on the run after this long (s); unfinished requests count as failed. */
  runTimeoutS?: number;
}

/** The serving section's results; latencies in ms. */
export type ServingResult =
  | { skipped: string }
  | {
    skipped?: undefined;
    model: string;
    requests: number;
    completed: number;
    failed: number;
    ratePerSecond: number;
    durationS: number;
    requestThroughput: number;
    outputTokPerS: number;
    outputTokens: number;
    ttftMs: Percentiles;
    itlMs: Percentiles;
    e2eMs: Percentiles;
    errors: string[];
  };

async function waitHealthy(
  base: string,
  status: Promise<number>,
  timeoutS: number,
): Promise<string | null> {
  let exited = false;
  status.then(() => (exited = true));
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutS * 1000) {
    if (exited) return "serve.ts exited before becoming healthy";
    try {
      const r = await fetch(`${base}/health`);
      await r.body?.cancel();
      if (r.status === 200) return null;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  return `serve.ts not healthy after ${timeoutS} s`;
}

/** Sends one streaming completion and times its token chunks. */
async function streamCompletion(
  base: string,
  r: BenchRequest,
  signal: AbortSignal,
): Promise<RequestTiming> {
  const clock = new RequestClock(performance.now());
  const res = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      prompt: r.promptIds,
      max_tokens: r.maxTokens,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    }),
    signal,
  });
  if (!res.ok || !res.body) {
    throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
  }
  let usageTokens = -1;
  let chunks = 0;
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffered += decoder.decode(bytes, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const event = JSON.parse(data);
      if (event.usage?.completion_tokens !== undefined) usageTokens = event.usage.completion_tokens;
      const text = event.choices?.[0]?.text;
      // One SSE chunk per delivered delta: count it as one token arrival unless it is empty.
      if (typeof text === "string" && text.length > 0) {
        chunks++;
        clock.tokens(1, performance.now());
      }
    }
  }
  const t = clock.finish(performance.now());
  // Chunk-level ITL as vllm reports it; the token count comes from usage when present.
  return { ...t, outputTokens: usageTokens >= 0 ? usageTokens : chunks };
}

/** A serve.ts process started for a benchmark. */
export interface ServeProcess {
  base: string;
  /** Why it did not become healthy (then it is already stopped), or null. */
  notReady: string | null;
  /** SIGTERM, then SIGKILL after 15 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/** Starts serve.ts on a free loopback port (under the bench's runtime) and waits for /health. */
export async function startServe(
  serveScript: string,
  model: string,
  flags: string[] = [],
  startTimeoutS = 120,
): Promise<ServeProcess> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const cmd = scriptCommand(serveScript, ["--model", model, "--port", String(port), "--host", "127.0.0.1", ...flags]);
  const child: ChildProcess = spawn(cmd.cmd, cmd.args, { stdio: ["ignore", "ignore", "pipe"] });
  let exited = false;
  const status = new Promise<number>((resolve) => {
    const done = (code: number | null) => {
      exited = true;
      resolve(code ?? -1);
    };
    child.on("close", done);
    child.on("error", () => done(-1));
  });
  let stderr = "";
  const decoder = new TextDecoder();
  child.stderr!.on("data", (b: Uint8Array) => {
    stderr = (stderr + decoder.decode(b, { stream: true })).slice(-4000);
  });
  // process.kill, not child.kill: Deno's child_process misreports a child.kill()ed child.
  const kill = (signal: "SIGTERM" | "SIGKILL") => {
    try {
      if (child.pid !== undefined && !exited) process.kill(child.pid, signal);
    } catch { /* already gone */ }
  };
  const stop = async () => {
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 15000);
    await status;
    clearTimeout(timer);
  };
  const notReady = await waitHealthy(base, status, startTimeoutS);
  if (notReady) {
    await stop();
    return { base, notReady: `${notReady}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`, stop };
  }
  return { base, notReady: null, stop };
}

/** Runs the serving benchmark, or returns `{ skipped }` with the reason. */
export async function benchServing(options: ServingOptions): Promise<ServingResult> {
  if (!(await stat(options.serveScript))?.isFile) return { skipped: "serve.ts not available" };
  const serve = await startServe(options.serveScript, options.model, ["--max-seqs", String(options.maxSeqs)], options.startTimeoutS);
  if (serve.notReady) return { skipped: serve.notReady };
  const base = serve.base;
  try {
    // Warm-up request (pipeline compilation) before the clock starts.
    await streamCompletion(
      base,
      { index: -1, promptIds: [1, 5, 6], maxTokens: 4, long: false },
      AbortSignal.timeout(60000),
    );
    const abort = AbortSignal.timeout((options.runTimeoutS ?? 600) * 1000);
    const t0 = performance.now();
    const errors: string[] = [];
    const timings = await Promise.all(options.requests.map(async (r, i) => {
      const wait = t0 + options.arrivals[i] * 1000 - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      try {
        return await streamCompletion(base, r, abort);
      } catch (e) {
        errors.push(`request ${r.index}: ${(e as Error).message}`);
        return null;
      }
    }));
    const durationS = (performance.now() - t0) / 1000;
    const done = timings.filter((t): t is RequestTiming => t !== null);
    const outputTokens = done.reduce((n, t) => n + t.outputTokens, 0);
    return {
      model: options.model,
      requests: options.requests.length,
      completed: done.length,
      failed: options.requests.length - done.length,
      ratePerSecond: options.ratePerSecond,
      durationS,
      requestThroughput: done.length / durationS,
      outputTokPerS: outputTokens / durationS,
      outputTokens,
      ttftMs: scalePercentiles(summarize(done.map((t) => t.ttft)), 1000),
      itlMs: scalePercentiles(summarize(done.flatMap((t) => t.itl)), 1000),
      e2eMs: scalePercentiles(summarize(done.map((t) => t.e2e)), 1000),
      errors: errors.slice(0, 5),
    };
  } finally {
    await serve.stop();
  }
}
