/**
 * `deno run -A bench/compare.ts A.json B.json ...` (or `bun run bench/compare.ts ...`): the
 * key figures of several bench results files side by side, one column per file headed by
 * the runtime that produced it (e.g. a `deno task bench --quick` run and a
 * `bun run bench/main.ts --quick` run), as a markdown table. With two files a last column
 * gives the second over the first.
 * @module
 */
import { args, exit, readTextFile } from "../src/runtime/runtime.ts";
import type { BenchResults } from "./report.ts";

/** One row: its label and how to read it from a results file (undefined when not measured). */
const FIGURES: [string, (r: BenchResults) => number | undefined, number][] = [
  ["offline continuous out tok/s", (r) => offline(r)?.continuous.outputTokPerS, 1],
  ["offline static out tok/s", (r) => offline(r)?.static.outputTokPerS, 1],
  ["continuous / static", (r) => offline(r)?.ratio, 2],
  ["decode steps per GPU->CPU wait (continuous)", (r) => offline(r)?.continuous.stepsPerSync, 2],
  ["single-stream stories260K tok/s", (r) => single(r)?.tokPerS, 1],
  ["decode GEMV (project family) GB/s (m=1)", (r) => gemv(r, 1)?.projectGbps, 2],
  ["decode GEMV / best simple GEMV (m=1)", (r) => gemv(r, 1)?.ratio, 2],
  ["decode GEMV / streaming-read roof (m=1)", (r) => gemv(r, 1)?.projectOfRoof, 2],
  ["serving req/s", (r) => serving(r)?.requestThroughput, 2],
  ["serving out tok/s", (r) => serving(r)?.outputTokPerS, 1],
  ["serving TTFT p50 ms", (r) => serving(r)?.ttftMs.p50, 0],
  ["serving ITL p50 ms", (r) => serving(r)?.itlMs.p50, 1],
  ["peer llama.cpp stories260K 1x tok/s", (r) => peer(r)?.llamaCpp.singleTokPerS, 1],
  ["peer llama.cpp stories260K 8x tok/s", (r) => peer(r)?.llamaCpp.parallelTokPerS, 1],
  ["peer ours / llama.cpp stories260K 1x", (r) => peer(r)?.singleRatio, 2],
  ["peer ours / llama.cpp SmolLM2-shaped 1x", (r) => peer(r, "smollm2")?.singleRatio, 2],
  ["peer ours / llama.cpp SmolLM2-shaped 8x", (r) => peer(r, "smollm2")?.parallelRatio, 2],
  ["suite wall time s", (r) => r.durationS, 0],
];

const offline = (r: BenchResults) => (r.offline.status === "ok" ? r.offline.data[0] : undefined);
const single = (r: BenchResults) =>
  r.singleStream.status === "ok"
    ? r.singleStream.data.find((s) => s.model.includes("stories260K"))
    : undefined;
const gemv = (r: BenchResults, m: number) =>
  r.kernels.status === "ok" ? r.kernels.data.gemvVsBest.find((g) => g.m === m) : undefined;
const serving = (r: BenchResults) =>
  r.serving.status === "ok" && r.serving.data.skipped === undefined ? r.serving.data : undefined;
const peer = (r: BenchResults, model = "stories260K") =>
  r.peer.status === "ok" ? r.peer.data.find((p) => p.model.includes(model)) : undefined;

/** The runtime that produced a file (files from before it was recorded were Deno's). */
export function runtimeOf(r: BenchResults): string {
  const env = r.environment as BenchResults["environment"] & { deno?: string };
  return env.runtime ?? `deno ${env.deno}`;
}

/** The markdown comparison of `results` (one column each). */
export function compareMarkdown(results: BenchResults[]): string {
  const f = (x: number | undefined, d: number) =>
    x === undefined || !Number.isFinite(x) ? "n/a" : x.toFixed(d);
  const both = results.length === 2;
  const head = [
    "figure",
    ...results.map((r) => `${runtimeOf(r)}${r.quick ? " --quick" : ""}`),
    ...(both
      ? [`${runtimeOf(results[1]).split(" ")[0]} / ${runtimeOf(results[0]).split(" ")[0]}`]
      : []),
  ];
  const rows = FIGURES.map(([label, get, d]) => {
    const xs = results.map(get);
    const ratio = both && xs[0] && xs[1] !== undefined ? f(xs[1] / xs[0], 2) : "n/a";
    return [label, ...xs.map((x) => f(x, d)), ...(both ? [ratio] : [])];
  });
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const out = [line(head), line(head.map(() => "---")), ...rows.map(line)];
  const notes = results.map((r) =>
    `- ${runtimeOf(r)} (${
      r.environment.engine ?? "V8"
    }): ${r.startedAt}, ${r.environment.adapter}, ` +
    `${r.environment.cpus} CPUs` + skippedNote(r)
  );
  return [...out, "", ...notes].join("\n") + "\n";
}

function skippedNote(r: BenchResults): string {
  const off = (["kernels", "offline", "singleStream", "serving", "peer"] as const)
    .filter((k) => r[k].status !== "ok")
    .map((k) => {
      const s = r[k];
      return `${k} ${s.status}${s.status === "ok" ? "" : `: ${s.reason}`}`;
    });
  return off.length ? `; ${off.join("; ")}` : "";
}

if (import.meta.main) {
  const files = args();
  if (files.length < 1 || files.some((a) => a.startsWith("-"))) {
    console.error("usage: bench/compare.ts RESULTS.json [RESULTS.json ...]");
    exit(2);
  }
  const results = await Promise.all(
    files.map(async (p) => JSON.parse(await readTextFile(p)) as BenchResults),
  );
  console.log(compareMarkdown(results));
}
