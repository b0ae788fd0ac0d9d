/**
 * Offline batch generation: `cli batch` on a file of requests against the same requests sent
 * to serve.ts by 8 concurrent clients (greedy, same lengths), and the CLI's peak resident
 * memory over a short and a 10x longer input (flat means the input is streamed, not held).
 * @module
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { scriptCommand, writeFile } from "../src/runtime/runtime.ts";
import { startServe } from "./serving.ts";
import type { BenchRequest } from "./workload.ts";

/** Options of {@link benchBatch}. */
export interface BatchBenchOptions {
  model: string;
  requests: BenchRequest[];
  /** Concurrent serve.ts clients. */
  clients: number;
  /** Line counts of the memory runs (short requests). */
  memoryLines: number[];
  tmp: string;
  root: string;
  log?: (line: string) => void;
}

/** One way of running the requests. */
export interface BatchRun {
  seconds: number;
  outputTokens: number;
  tokPerS: number;
  failed: number;
}

/** The batch section's results. */
export interface BatchBenchResult {
  model: string;
  requests: number;
  clients: number;
  cli: BatchRun;
  serve: BatchRun;
  /** cli tok/s / serve tok/s. */
  ratio: number;
  /** Peak resident memory of `cli batch` per input size. */
  memory: { lines: number; peakRssMiB: number; seconds: number }[];
}

function body(r: BenchRequest) {
  return { model: "bench", prompt: r.promptIds, max_tokens: r.maxTokens, temperature: 0, ignore_eos: true };
}

async function writeInput(path: string, requests: BenchRequest[]): Promise<void> {
  const lines = requests.map((r, i) => JSON.stringify({ custom_id: `r${i}`, method: "POST", url: "/v1/completions", body: body(r) }));
  await writeFile(path, lines.join("\n") + "\n");
}

/** Runs `cli batch`; returns its summary line's figures and its peak RSS (from /proc). */
async function runCli(root: string, model: string, input: string, output: string): Promise<BatchRun & { peakRssMiB: number }> {
  const cmd = scriptCommand(`${root}src/cli/main.ts`, ["batch", "--model", model, "--served-model-name", "bench", "--input", input, "--output", output]);
  const child = spawn(cmd.cmd, cmd.args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (b: Uint8Array) => (stderr = (stderr + new TextDecoder().decode(b)).slice(-8000)));
  const exited = new Promise<number>((resolve) => child.on("close", (code: number | null) => resolve(code ?? -1)));
  let peakKiB = 0;
  let running = true;
  exited.then(() => (running = false));
  while (running) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
    } catch { /* exited */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const code = await exited;
  const m = /batch: (\d+) lines \((\d+) failed\) in ([\d.]+) s: (\d+) tokens, ([\d.]+) tok\/s/.exec(stderr);
  if (code !== 0 || !m) throw new Error(`cli batch exited ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return {
    seconds: Number(m[3]),
    outputTokens: Number(m[4]),
    tokPerS: Number(m[5]),
    failed: Number(m[2]),
    peakRssMiB: peakKiB / 1024,
  };
}

/** The same requests through serve.ts by `clients` closed-loop clients. */
async function runServe(root: string, model: string, requests: BenchRequest[], clients: number): Promise<BatchRun> {
  const serve = await startServe(`${root}serve.ts`, model, ["--served-model-name", "bench"]);
  if (serve.notReady) throw new Error(serve.notReady);
  try {
    const post = async (r: BenchRequest) => {
      const res = await fetch(`${serve.base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body(r)) });
      const json = await res.json();
      return res.ok ? json.usage.completion_tokens as number : null;
    };
    await post({ index: -1, promptIds: [1, 5, 6], maxTokens: 4, long: false }); // warm-up
    let next = 0;
    let tokens = 0;
    let failed = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      while (next < requests.length) {
        const n = await post(requests[next++]);
        if (n === null) failed++;
        else tokens += n;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, outputTokens: tokens, tokPerS: tokens / seconds, failed };
  } finally {
    await serve.stop();
  }
}

/** Runs the batch section. */
export async function benchBatch(o: BatchBenchOptions): Promise<BatchBenchResult> {
  const input = `${o.tmp}/batch_in.jsonl`;
  await writeInput(input, o.requests);
  const cli = await runCli(o.root, o.model, input, `${o.tmp}/batch_out.jsonl`);
  o.log?.(`  cli batch: ${cli.tokPerS.toFixed(1)} tok/s (${o.requests.length} requests, ${cli.seconds.toFixed(1)} s)`);
  const serve = await runServe(o.root, o.model, o.requests, o.clients);
  o.log?.(`  serve.ts x${o.clients} clients: ${serve.tokPerS.toFixed(1)} tok/s`);
  const memory: BatchBenchResult["memory"] = [];
  for (const lines of o.memoryLines) {
    const short = Array.from({ length: lines }, (_, i) => ({ ...o.requests[i % o.requests.length], maxTokens: 2 }));
    await writeInput(input, short);
    const run = await runCli(o.root, o.model, input, `${o.tmp}/batch_out.jsonl`);
    memory.push({ lines, peakRssMiB: run.peakRssMiB, seconds: run.seconds });
    o.log?.(`  ${lines} lines: peak RSS ${run.peakRssMiB.toFixed(0)} MiB in ${run.seconds.toFixed(1)} s`);
  }
  fs.rmSync(`${o.tmp}/batch_out.jsonl`, { force: true });
  const { peakRssMiB: _, ...cliRun } = cli;
  return { model: o.model, requests: o.requests.length, clients: o.clients, cli: cliRun, serve, ratio: cli.tokPerS / serve.tokPerS, memory };
}
