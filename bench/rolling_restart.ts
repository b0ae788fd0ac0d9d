/**
 * Replicas behind a real load balancer, on this machine: three serve.ts processes on loopback
 * behind HAProxy (health checks on /health, leastconn), a bounded streaming load from the
 * official `openai` client, then a rolling restart (each replica in turn: SIGTERM, drain,
 * exit 0, start again, healthy) and an unannounced SIGKILL of one replica, all while the
 * load runs. Counts requests sent / succeeded / failed and client-side TTFT per phase.
 *
 * `deno run -A bench/rolling_restart.ts [--json PATH]` (or `bun run ...`) writes
 * `bench/results/rolling-restart-<runtime>-<timestamp>.json` and prints a table;
 * tests/rolling_restart_test.ts runs the same scenario and asserts on it.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import OpenAI from "openai";
import { makeTempDir, remove, RUNTIME, runtimeInfo, scriptCommand, writeFile } from "../src/runtime/runtime.ts";
import { percentile } from "./stats.ts";
import { freePort } from "./free_port.ts";

/** Options of {@link runRollingRestart}. */
export interface RollingRestartOptions {
  /** Checkpoint directory the replicas serve. */
  model: string;
  replicas?: number;
  /** Concurrent client loops. */
  concurrency?: number;
  /** Tokens per request (streamed). */
  maxTokens?: number;
  /** Seconds of load before the restart begins. */
  warmupS?: number;
  /** Seconds of load after the SIGKILL. */
  afterKillS?: number;
  /** serve.ts --drain-delay and --shutdown-timeout (seconds). */
  drainDelayS?: number;
  shutdownTimeoutS?: number;
  /** HAProxy's health-check interval (ms; fall 1, rise 1). */
  checkIntervalMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One phase's request figures (requests counted by the phase they started in). */
export interface PhaseFigures {
  sent: number;
  succeeded: number;
  failed: number;
  ttftMsP50: number;
  ttftMsP95: number;
  /** The first few failures. */
  errors: string[];
}

/** What a run measured. */
export interface RollingRestartResult {
  environment: { runtime: string; engine: string; os: string; haproxy: string; at: string };
  config: Required<Omit<RollingRestartOptions, "log">>;
  /** Before the restart, during the rolling restart, from the SIGKILL on. */
  phases: { before: PhaseFigures; restart: PhaseFigures; kill: PhaseFigures };
  restarts: { replica: number; exitCode: number; drainMs: number; downInHaproxyMs: number; backUpMs: number }[];
  kill: {
    replica: number;
    /** Requests HAProxy had open on that replica just before the kill. */
    inFlightAtKill: number;
    /** Requests that failed, and of those started after the kill. */
    failed: number;
    failedStartedAfterKill: number;
    /** From the SIGKILL until HAProxy reported the replica DOWN. */
    markedDownMs: number;
  };
  durationS: number;
}

interface Sample {
  start: number;
  ttft: number | null;
  end: number;
  ok: boolean;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Replica {
  child: ChildProcess | null = null;
  exited: Promise<number> = Promise.resolve(0);
  log = "";
  constructor(readonly index: number, readonly port: number, readonly args: string[]) {}

  start(): void {
    const c = scriptCommand(new URL("../serve.ts", import.meta.url).pathname, [...this.args, "--port", String(this.port)]);
    const child = spawn(c.cmd, c.args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    child.stderr!.on("data", (d: Uint8Array) => (this.log = (this.log + new TextDecoder().decode(d)).slice(-4000)));
    this.exited = new Promise((resolve) => child.on("close", (code: number | null) => resolve(code ?? 128)));
    this.child = child;
  }

  signal(sig: "SIGTERM" | "SIGKILL"): void {
    try {
      if (this.child?.pid !== undefined && this.child.exitCode === null) process.kill(this.child.pid, sig);
    } catch { /* gone */ }
  }

  async warm(maxTokens: number): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${this.port}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: "Once upon a time", max_tokens: maxTokens, ignore_eos: true }),
    });
    await res.text();
  }

  async healthy(timeoutMs: number): Promise<void> {
    const t0 = performance.now();
    while (performance.now() - t0 < timeoutMs) {
      try {
        const r = await fetch(`http://127.0.0.1:${this.port}/health`, { signal: AbortSignal.timeout(1000) });
        await r.body?.cancel();
        if (r.status === 200) return;
      } catch { /* starting */ }
      await sleep(50);
    }
    throw new Error(`replica ${this.index} not healthy after ${timeoutMs} ms:\n${this.log}`);
  }
}

/** HAProxy's view of the backend servers (from its CSV stats page). */
async function haproxyServers(statsPort: number): Promise<Map<string, { status: string; scur: number }>> {
  const text = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`, { signal: AbortSignal.timeout(1000) })).text();
  const lines = text.trim().split("\n");
  const header = lines[0].replace(/^# /, "").split(",");
  const col = (name: string) => header.indexOf(name);
  const out = new Map<string, { status: string; scur: number }>();
  for (const line of lines.slice(1)) {
    const f = line.split(",");
    if (f[col("pxname")] === "replicas" && f[col("svname")].startsWith("r")) {
      out.set(f[col("svname")], { status: f[col("status")], scur: Number(f[col("scur")]) });
    }
  }
  return out;
}

async function waitStatus(statsPort: number, server: string, want: (s: string) => boolean, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const s = (await haproxyServers(statsPort).catch(() => null))?.get(server);
    if (s && want(s.status)) return performance.now() - t0;
    await sleep(10);
  }
  throw new Error(`HAProxy did not report ${server} as wanted within ${timeoutMs} ms`);
}

function haproxyConfig(frontPort: number, statsPort: number, replicas: Replica[], checkMs: number): string {
  return `global
  maxconn 1024
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  # A connection refused by a replica that has just closed its listener is retried on another.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response 503
  # One request per backend connection: no reuse of a connection a draining replica closes.
  option http-server-close
frontend api
  bind 127.0.0.1:${frontPort}
  default_backend replicas
backend replicas
  balance leastconn
  option httpchk GET /health
  http-check expect status 200
  default-server check inter ${checkMs} fastinter ${checkMs} downinter ${checkMs} fall 1 rise 1
${replicas.map((r) => `  server r${r.index} 127.0.0.1:${r.port}`).join("\n")}
listen stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats
`;
}

function figures(samples: Sample[]): PhaseFigures {
  const ttfts = samples.filter((s) => s.ok && s.ttft !== null).map((s) => s.ttft! - s.start);
  return {
    sent: samples.length,
    succeeded: samples.filter((s) => s.ok).length,
    failed: samples.filter((s) => !s.ok).length,
    ttftMsP50: ttfts.length ? Math.round(percentile(ttfts, 50)) : 0,
    ttftMsP95: ttfts.length ? Math.round(percentile(ttfts, 95)) : 0,
    errors: samples.filter((s) => !s.ok).slice(0, 5).map((s) => s.error ?? "?"),
  };
}

/** Runs the scenario; always stops every process it started. */
export async function runRollingRestart(options: RollingRestartOptions): Promise<RollingRestartResult> {
  const config = {
    model: options.model,
    replicas: options.replicas ?? 3,
    concurrency: options.concurrency ?? 4,
    maxTokens: options.maxTokens ?? 16,
    warmupS: options.warmupS ?? 3,
    afterKillS: options.afterKillS ?? 3,
    drainDelayS: options.drainDelayS ?? 1,
    shutdownTimeoutS: options.shutdownTimeoutS ?? 10,
    checkIntervalMs: options.checkIntervalMs ?? 200,
  };
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const dir = await makeTempDir("rolling-restart-");
  const args = ["--model", config.model, "--served-model-name", "m", "--max-batch-tokens", "64",
    "--drain-delay", String(config.drainDelayS), "--shutdown-timeout", String(config.shutdownTimeoutS)];
  const replicas: Replica[] = [];
  for (let i = 0; i < config.replicas; i++) replicas.push(new Replica(i, await freePort(), args));
  const frontPort = await freePort();
  const statsPort = await freePort();
  let haproxy: ChildProcess | null = null;
  let haproxyLog = "";
  const samples: Sample[] = [];
  let loading = true;
  try {
    const version = await new Promise<string>((resolve, reject) => {
      const p = spawn("haproxy", ["-v"], { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      p.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
      p.on("error", reject);
      p.on("close", () => resolve(out.split("\n")[0]));
    });
    for (const r of replicas) r.start();
    await Promise.all(replicas.map((r) => r.healthy(120_000)));
    // One request per replica first: the first one pays the GPU pipelines' compilation.
    await Promise.all(replicas.map((r) => r.warm(config.maxTokens)));
    await writeFile(`${dir}/haproxy.cfg`, haproxyConfig(frontPort, statsPort, replicas, config.checkIntervalMs));
    haproxy = spawn("haproxy", ["-db", "-f", `${dir}/haproxy.cfg`], { stdio: ["ignore", "ignore", "pipe"] });
    haproxy.stderr!.on("data", (d: Uint8Array) => (haproxyLog = (haproxyLog + new TextDecoder().decode(d)).slice(-4000)));
    for (const r of replicas) await waitStatus(statsPort, `r${r.index}`, (s) => s === "UP", 10_000);
    log(`${config.replicas} replicas up behind ${version}`);

    // The load: concurrent loops of streaming completions through HAProxy, no client retries.
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${frontPort}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
    const worker = async (w: number) => {
      for (let k = 0; loading; k++) {
        const s: Sample = { start: performance.now(), ttft: null, end: 0, ok: false };
        samples.push(s);
        try {
          const stream = await client.completions.create({
            model: "m",
            prompt: `Once upon a time ${w} ${k}`,
            max_tokens: config.maxTokens,
            ignore_eos: true,
            stream: true,
          } as OpenAI.CompletionCreateParamsStreaming);
          let tokens = 0;
          for await (const chunk of stream) {
            if (chunk.choices[0]?.text) {
              s.ttft ??= performance.now();
              tokens++;
            }
          }
          s.ok = tokens > 0;
          if (!s.ok) s.error = "no tokens";
        } catch (e) {
          s.error = `${(e as Error).name}: ${(e as Error).message}`.slice(0, 200);
        }
        s.end = performance.now();
      }
    };
    const workers = Array.from({ length: config.concurrency }, (_, w) => worker(w));
    await sleep(config.warmupS * 1000);

    // Rolling restart: each replica in turn drains, exits 0, comes back, and is UP again.
    const restartAt = performance.now();
    const restarts: RollingRestartResult["restarts"] = [];
    for (const r of replicas) {
      const t = performance.now();
      r.signal("SIGTERM");
      const down = waitStatus(statsPort, `r${r.index}`, (s) => s.startsWith("DOWN"), 30_000);
      const exitCode = await r.exited;
      const drainMs = performance.now() - t;
      const downInHaproxyMs = await down;
      r.start();
      await r.healthy(120_000);
      await r.warm(config.maxTokens);
      await waitStatus(statsPort, `r${r.index}`, (s) => s === "UP", 30_000);
      restarts.push({ replica: r.index, exitCode, drainMs: Math.round(drainMs), downInHaproxyMs: Math.round(downInHaproxyMs), backUpMs: Math.round(performance.now() - t) });
      log(`replica ${r.index}: exit ${exitCode} after ${Math.round(drainMs)} ms, back after ${Math.round(performance.now() - t)} ms`);
    }
    await sleep(1000);

    // An unannounced kill: only that replica's requests in flight may fail.
    const victim = replicas[0];
    // Kill while it holds requests (up to 5 s of waiting for HAProxy to report one).
    let inFlightAtKill = 0;
    for (let i = 0; i < 500 && inFlightAtKill === 0; i++) {
      inFlightAtKill = (await haproxyServers(statsPort)).get(`r${victim.index}`)?.scur ?? 0;
      if (inFlightAtKill === 0) await sleep(10);
    }
    const killAt = performance.now();
    victim.signal("SIGKILL");
    const markedDownMs = await waitStatus(statsPort, `r${victim.index}`, (s) => s.startsWith("DOWN"), 30_000);
    await sleep(config.afterKillS * 1000);
    loading = false;
    await Promise.all(workers);
    const done = samples.filter((s) => s.end > 0);
    // By start time; a failure still in flight at the kill belongs to the kill.
    const phaseOf = (s: Sample) => s.start >= killAt || (!s.ok && s.end >= killAt) ? "kill" : s.start >= restartAt ? "restart" : "before";
    const phase = (name: string) => done.filter((s) => phaseOf(s) === name);
    const kill = phase("kill");
    const result: RollingRestartResult = {
      environment: { ...runtimeInfo(), haproxy: version, at: new Date().toISOString() },
      config,
      phases: { before: figures(phase("before")), restart: figures(phase("restart")), kill: figures(kill) },
      restarts,
      kill: {
        replica: victim.index,
        inFlightAtKill,
        failed: kill.filter((s) => !s.ok).length,
        failedStartedAfterKill: kill.filter((s) => !s.ok && s.start >= killAt).length,
        markedDownMs: Math.round(markedDownMs),
      },
      durationS: Math.round((performance.now() - t0) / 100) / 10,
    };
    return result;
  } catch (e) {
    throw new Error(`${(e as Error).message}\nhaproxy:\n${haproxyLog}\n${replicas.map((r) => `replica ${r.index}:\n${r.log}`).join("\n")}`);
  } finally {
    loading = false;
    for (const r of replicas) r.signal("SIGKILL");
    try {
      haproxy?.kill("SIGKILL");
    } catch { /* gone */ }
    await Promise.all(replicas.map((r) => r.exited));
    await remove(dir);
  }
}

/** The run as a markdown table. */
export function renderRollingRestart(r: RollingRestartResult): string {
  const row = (name: string, p: PhaseFigures) => `| ${name} | ${p.sent} | ${p.succeeded} | ${p.failed} | ${p.ttftMsP50} | ${p.ttftMsP95} |`;
  return [
    `${r.environment.runtime}, ${r.environment.haproxy}, ${r.config.replicas} replicas, ${r.config.concurrency} concurrent streams of ${r.config.maxTokens} tokens, drain delay ${r.config.drainDelayS} s, checks every ${r.config.checkIntervalMs} ms`,
    "",
    "| phase | sent | succeeded | failed | TTFT p50 ms | TTFT p95 ms |",
    "| --- | --- | --- | --- | --- | --- |",
    row("before the restart", r.phases.before),
    row("rolling restart (SIGTERM each replica in turn)", r.phases.restart),
    row(`SIGKILL of replica ${r.kill.replica}`, r.phases.kill),
    "",
    `Restarts: ${r.restarts.map((x) => `r${x.replica} exit ${x.exitCode}, drained in ${x.drainMs} ms (DOWN in HAProxy after ${x.downInHaproxyMs} ms), back UP after ${x.backUpMs} ms`).join("; ")}.`,
    `SIGKILL: ${r.kill.inFlightAtKill} requests in flight on the replica, ${r.kill.failed} failed (${r.kill.failedStartedAfterKill} of them started after the kill); HAProxy marked it DOWN ${r.kill.markedDownMs} ms after the kill (check interval ${r.config.checkIntervalMs} ms, fall 1).`,
  ].join("\n");
}

if (import.meta.main) {
  const argv = RUNTIME === "deno" ? [...(globalThis as any).Deno.args] : process.argv.slice(2);
  const jsonAt = argv.indexOf("--json");
  const model = new URL("../tests/fixtures/models/stories260K", import.meta.url).pathname;
  const result = await runRollingRestart({ model, log: (l) => console.error(`[rolling-restart] ${l}`) });
  const path = jsonAt >= 0 ? argv[jsonAt + 1] : new URL(`./results/rolling-restart-${RUNTIME}-${result.environment.at.replace(/[:.]/g, "-")}.json`, import.meta.url).pathname;
  await writeFile(path, JSON.stringify(result, null, 2) + "\n");
  console.log(renderRollingRestart(result));
  console.log(`\nwritten to ${path}`);
  process.exit(0);
}
