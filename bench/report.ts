/**
 * The results file's shape, the targets of issue 5 evaluated from it, and its markdown
 * rendering.
 * @module
 */
import type { KernelSection } from "./kernels.ts";
import type { StepProfile } from "./step_profile.ts";
import type { OfflineResult, SingleStreamResult } from "./offline.ts";
import type { ServingResult } from "./serving.ts";
import type { ConstrainedResult } from "./constrained.ts";
import type { PeerResult } from "./peer_llama_cpp.ts";
import type { BatchBenchResult } from "./batch.ts";
import type { Percentiles } from "./stats.ts";

/** Thrown by a section that cannot run here; the suite records it as skipped with the message. */
export class SectionSkipped extends Error {
  override name = "SectionSkipped";
}

/** A section that ran, was skipped (with why) or failed (with the error). */
export type Section<T> = { status: "ok"; data: T } | {
  status: "skipped" | "failed";
  reason: string;
};

/** Everything one run of the suite writes. */
export interface BenchResults {
  startedAt: string;
  quick: boolean;
  /** `runtime` is "deno 2.9.6" or "bun 1.3.14": which runtime produced the file. */
  environment: { runtime: string; engine: string; os: string; cpus: number; adapter: string };
  notes: string[];
  kernels: Section<KernelSection>;
  stepProfiles: Section<StepProfile[]>;
  offline: Section<OfflineResult[]>;
  singleStream: Section<SingleStreamResult[]>;
  /** Constrained decoding: 1 of 8 sequences constrained vs none (absent in older files). */
  constrained?: Section<ConstrainedResult>;
  serving: Section<ServingResult>;
  peer: Section<PeerResult[]>;
  /** Absent in files written before the batch section existed. */
  batch?: Section<BatchBenchResult>;
  targets: Target[];
  durationS: number;
}

/** One of the targets, as measured. */
export interface Target {
  name: string;
  goal: string;
  measured: string;
  met: boolean | null;
  /** What limits it, when not met (or why it could not be measured). */
  limit?: string;
}

const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "n/a");
const pct = (p: Percentiles, d = 1) => `${f(p.p50, d)} / ${f(p.p95, d)} / ${f(p.p99, d)}`;

/** Evaluates the targets from the sections that ran. */
export function evaluateTargets(r: Omit<BenchResults, "targets" | "durationS">): Target[] {
  const out: Target[] = [];
  const off = r.offline.status === "ok" ? r.offline.data[0] : null;
  if (off) {
    const c = off.continuous;
    const s = off.static;
    const msPerStep = (m: typeof c) => (m.wallS * 1000) / Math.max(1, m.steps);
    const stepNote =
      `a continuous step costs ${f(msPerStep(c), 1)} ms vs static's ${f(msPerStep(s), 1)} ms ` +
      `(sequence fill ${f(c.seqFill)} vs ${f(s.seqFill)}): ` +
      (msPerStep(c) < msPerStep(s)
        ? "static's tail steps with 1-2 running sequences are slower than full ones on this adapter (see the 1- vs 8-sequence step profiles)"
        : "steps with more running sequences are slower on this adapter");
    out.push({
      name: "continuous vs static output tok/s",
      goal: ">= 2x",
      measured: `${f(off.ratio)}x (${f(c.outputTokPerS, 1)} vs ${f(s.outputTokPerS, 1)} tok/s)`,
      met: off.ratio >= 2,
      limit: off.ratio >= 2
        ? undefined
        : off.idealRatio < 2
        ? `the lengths allow only ${f(off.idealRatio)}x; ${stepNote}`
        : stepNote,
    });
    out.push({
      name: "continuous/static vs the ideal ratio",
      goal: ">= 85%",
      measured: `${f(100 * off.ofIdeal, 0)}% of ${
        f(off.idealRatio)
      }x (${off.idealStaticSteps} / ${off.idealContinuousSteps} decode steps)`,
      met: off.ofIdeal >= 0.85,
      limit: off.ofIdeal > 1
        ? `above the ideal because the ideal assumes a step costs the same whatever runs in it; here ${stepNote}`
        : off.ofIdeal >= 0.85
        ? undefined
        : `${stepNote}; steps: continuous ${c.steps}, static ${s.steps}`,
    });
    out.push({
      name: "decode steps per GPU->CPU wait (continuous)",
      goal: ">= 5",
      measured: f(c.stepsPerSync),
      met: c.stepsPerSync >= 5,
      limit: c.stepsPerSync >= 5
        ? undefined
        : "readbacks are forced early when the scheduler runs out of work (joins/leaves)",
    });
  } else {
    const reason = r.offline.status === "ok" ? "no offline result" : r.offline.reason;
    out.push({
      name: "continuous vs static",
      goal: ">= 2x, >= 85% of ideal",
      measured: "n/a",
      met: null,
      limit: reason,
    });
  }
  const single = r.singleStream.status === "ok"
    ? r.singleStream.data.find((s) => s.model.includes("stories260K"))
    : undefined;
  if (single) {
    const met = single.tokPerS > single.waitCapTokPerS;
    const prof = r.stepProfiles.status === "ok"
      ? r.stepProfiles.data.find((p) => p.model.includes("stories260K") && p.seqs === 1)
      : undefined;
    const top = prof?.ops[0];
    out.push({
      name: "single-stream stories260K decode beats the ~11 ms wait cap",
      goal: `> ${f(single.waitCapTokPerS, 1)} tok/s`,
      measured: `${f(single.tokPerS, 1)} tok/s (${f(single.stepsPerSync, 1)} steps per wait)`,
      met,
      limit: met
        ? undefined
        : prof
        ? `GPU-bound, not wait-bound: one decode step is ${
          f(prof.onePassMs, 1)
        } ms of GPU time on this adapter` +
          (top
            ? `, ${f(100 * top.share, 0)}% of it in '${top.op}' (${
              f(top.ms, 1)
            } ms over ${top.dispatches} dispatches)`
            : "")
        : "no step profile to attribute it",
    });
  }
  if (r.kernels.status === "ok") {
    const g = r.kernels.data.gemvVsBest.find((x) => x.m === 1);
    if (g) {
      out.push({
        name: "decode GEMV bandwidth vs the best simple GEMV",
        goal: ">= 80%",
        measured: `${f(100 * g.ratio, 0)}% (${f(g.projectGbps)} vs ${g.bestReference} ${
          f(g.bestReferenceGbps)
        } GB/s, SmolLM2 shapes, m=1)`,
        met: g.ratio >= 0.8,
        limit: g.ratio >= 0.8 ? undefined : "see the kernel table",
      });
    }
  }
  if (r.batch?.status === "ok") {
    const b = r.batch.data;
    out.push({
      name: "cli batch vs serve.ts (8 clients), output tok/s",
      goal: ">= 1x",
      measured: `${f(b.ratio)}x (${f(b.cli.tokPerS, 1)} vs ${f(b.serve.tokPerS, 1)} tok/s, ${b.requests} requests)`,
      met: b.ratio >= 1,
      limit: b.ratio >= 1 ? undefined : "the batch's engine loop or its in-process HTTP handling costs more than the server's",
    });
    const [small, large] = [b.memory[0], b.memory.at(-1)];
    if (small && large && large.lines > small.lines) {
      const growth = large.peakRssMiB / small.peakRssMiB;
      out.push({
        name: "cli batch peak memory flat over the input length",
        goal: "<= 1.2x peak RSS for 10x the lines",
        measured: `${f(growth)}x (${f(small.peakRssMiB, 0)} MiB at ${small.lines} lines, ${f(large.peakRssMiB, 0)} MiB at ${large.lines})`,
        met: growth <= 1.2,
        limit: growth <= 1.2 ? undefined : "something grows with the number of lines",
      });
    }
  }
  return out;
}

function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

function sectionNote<T>(name: string, s: Section<T>): string | null {
  return s.status === "ok" ? null : `_${name} ${s.status}: ${s.reason}_`;
}

/** Renders the results as markdown tables. */
export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  out.push(`# bench ${r.startedAt}${r.quick ? " (--quick)" : ""}`);
  out.push(
    `${r.environment.adapter}; ${r.environment.runtime} (${r.environment.engine}); ${r.environment.cpus} CPUs; ${
      f(r.durationS, 0)
    } s`,
  );
  for (const n of r.notes) out.push(`- ${n}`);
  out.push("\n## Targets");
  out.push(table(
    ["target", "goal", "measured", "met", "what limits it"],
    r.targets.map((t) => [
      t.name,
      t.goal,
      t.measured,
      t.met === null ? "n/a" : t.met ? "yes" : "no",
      t.limit ?? "",
    ]),
  ));

  out.push("\n## Kernels (GPU timestamps, median)");
  if (r.kernels.status === "ok") {
    out.push(table(
      ["kernel", "impl", "shape", "m", "GPU ms", "GB/s", "GFLOP/s"],
      r.kernels.data.results.map((
        k,
      ) => [k.kernel, k.impl, k.shape, k.m, f(k.gpuMs, 3), f(k.gbps), f(k.gflops)]),
    ));
    out.push("");
    out.push(table(
      ["m", "matmul.wgsl GB/s (all shapes)", "best reference", "GB/s", "ratio"],
      r.kernels.data.gemvVsBest.map((
        g,
      ) => [g.m, f(g.projectGbps), g.bestReference, f(g.bestReferenceGbps), f(g.ratio)]),
    ));
  } else out.push(sectionNote("kernels", r.kernels)!);

  out.push("\n## Decode step: where the time goes (one timed pass per op)");
  if (r.stepProfiles.status === "ok") {
    for (const p of r.stepProfiles.data) {
      out.push(
        `\n**${
          p.model.split("/").at(-1)
        }**, ${p.seqs} seq(s) at context ${p.context}: ${p.dispatches} dispatches; ` +
          `one-pass GPU ${f(p.onePassMs)} ms, per-op sum ${f(p.perOpTotalMs)} ms; wall/step ${
            f(p.wallSyncEveryStepMs)
          } ms ` +
          `with a wait every step, ${f(p.wallSync8Ms)} ms with 8 steps per wait`,
      );
      out.push(
        table(
          ["op", "dispatches", "ms", "share"],
          p.ops.slice(0, 8).map((o) => [o.op, o.dispatches, f(o.ms, 3), `${f(100 * o.share, 1)}%`]),
        ),
      );
    }
  } else out.push(sectionNote("step profile", r.stepProfiles)!);

  out.push("\n## Offline: continuous vs static batching");
  if (r.offline.status === "ok") {
    for (const o of r.offline.data) {
      out.push(
        `\n**${
          o.model.split("/").at(-1)
        }**, concurrency ${o.concurrency}: ${o.workload.requests} requests, ` +
          `${o.workload.promptTokens} prompt / ${o.workload.outputTokens} output tokens. ${o.workload.note}`,
      );
      out.push(table(
        [
          "mode",
          "out tok/s",
          "req/s",
          "TTFT ms p50/p95/p99",
          "ITL ms p50/p95/p99",
          "E2E ms p50/p95/p99",
          "batch fill p50/p95/p99",
          "seq fill",
          "steps",
          "steps/wait",
        ],
        [o.continuous, o.static].map((m) => [
          m.mode,
          f(m.outputTokPerS, 1),
          f(m.requestsPerS),
          pct(m.ttftMs, 0),
          pct(m.itlMs, 1),
          pct(m.e2eMs, 0),
          `${f(m.batchFill.p50)} / ${f(m.batchFill.p95)} / ${f(m.batchFill.p99)}`,
          f(m.seqFill),
          m.steps,
          f(m.stepsPerSync, 1),
        ]),
      ));
      out.push(
        `ratio ${f(o.ratio)}x; ideal ${
          f(o.idealRatio)
        }x (${o.idealStaticSteps} / ${o.idealContinuousSteps} decode steps); ${
          f(100 * o.ofIdeal, 0)
        }% of ideal`,
      );
    }
  } else out.push(sectionNote("offline", r.offline)!);
  if (r.singleStream.status === "ok") {
    out.push("");
    out.push(table(
      [
        "single stream",
        "prompt",
        "tokens",
        "tok/s",
        "ITL ms p50/p95/p99",
        "steps/wait",
        "11 ms wait cap tok/s",
      ],
      r.singleStream.data.map((
        s,
      ) => [
        s.model.split("/").at(-1)!,
        s.promptTokens,
        s.outputTokens,
        f(s.tokPerS, 1),
        pct(s.itlMs, 1),
        f(s.stepsPerSync, 1),
        f(s.waitCapTokPerS, 1),
      ]),
    ));
  } else out.push(sectionNote("single stream", r.singleStream)!);

  out.push("\n## Constrained decoding: 1 of 8 sequences constrained vs none");
  const con = r.constrained ?? { status: "skipped" as const, reason: "not in this file" };
  if (con.status === "ok") {
    const c = con.data;
    out.push(
      `${c.model.split("/").at(-1)}, ${c.sequences} sequences x ${c.outputTokens} tokens (greedy, same prompts), ` +
        `${c.repeats} interleaved repetitions, medians; the constraint: a JSON schema (an array of 64 objects).`,
    );
    out.push(table(
      ["variant", "batch out tok/s", "7 unconstrained tok/s", "constrained tok/s", "forced tokens", "wall s"],
      c.variants.map((v) => [
        v.variant,
        f(v.batchTokPerS, 1),
        f(v.othersTokPerS, 1),
        v.constrainedTokPerS === null ? "-" : f(v.constrainedTokPerS, 1),
        v.forcedTokens === null ? "-" : f(v.forcedTokens, 0),
        f(v.wallS, 2),
      ]),
    ));
    out.push(
      `cost to the others: ${f(100 * c.othersCost, 1)}% of their tok/s; their outputs ${
        c.othersIdentical ? "identical" : "DIFFERED"
      } in every run; first constrained request on a warm engine (grammar cold start) ${f(c.coldStartMs, 0)} ms`,
    );
  } else out.push(sectionNote("constrained", con)!);

  out.push("\n## Serving (serve.ts, Poisson arrivals)");
  if (r.serving.status === "ok") {
    const s = r.serving.data;
    if (s.skipped !== undefined) out.push(`_skipped: ${s.skipped}_`);
    else {
      out.push(table(
        [
          "model",
          "rate req/s",
          "done/sent",
          "req/s",
          "out tok/s",
          "TTFT ms p50/p95/p99",
          "ITL ms p50/p95/p99",
          "E2E ms p50/p95/p99",
        ],
        [[
          s.model.split("/").at(-1)!,
          f(s.ratePerSecond, 1),
          `${s.completed}/${s.requests}`,
          f(s.requestThroughput),
          f(s.outputTokPerS, 1),
          pct(s.ttftMs, 0),
          pct(s.itlMs, 1),
          pct(s.e2eMs, 0),
        ]],
      ));
      if (s.errors.length) out.push(`errors: ${s.errors.join("; ")}`);
    }
  } else out.push(sectionNote("serving", r.serving)!);

  out.push("\n## Peer: llama.cpp (node-llama-cpp) on the same weights");
  if (r.peer.status === "ok") {
    out.push(table(
      [
        "model",
        "tokens",
        "llama.cpp 1x tok/s",
        "ours 1x tok/s",
        "ours/llama.cpp",
        `llama.cpp ${r.peer.data[0]?.parallel}x tok/s`,
        "ours Nx tok/s",
        "ours/llama.cpp",
        "same greedy tokens",
      ],
      r.peer.data.map((p) => [
        p.model.split("/").at(-1)!,
        p.outputTokens,
        f(p.llamaCpp.singleTokPerS, 1),
        f(p.ours.singleTokPerS, 1),
        f(p.singleRatio),
        f(p.llamaCpp.parallelTokPerS, 1),
        f(p.ours.parallelTokPerS, 1),
        f(p.parallelRatio),
        p.sameGreedyTokens ? "yes" : `first ${p.matchingPrefix}`,
      ]),
    ));
    if (r.peer.data[0]) {
      out.push(`runtime: ${r.peer.data[0].runtime}; ${r.peer.data[0].threads} threads`);
    }
  } else out.push(sectionNote("peer", r.peer)!);

  if (r.batch) {
    out.push("\n## Offline batch: `cli batch` vs serve.ts");
    if (r.batch.status === "ok") {
      const b = r.batch.data;
      out.push(table(
        ["run", "requests", "s", "output tokens", "tok/s", "failed"],
        [
          ["cli batch", b.requests, f(b.cli.seconds, 1), b.cli.outputTokens, f(b.cli.tokPerS, 1), b.cli.failed],
          [`serve.ts, ${b.clients} clients`, b.requests, f(b.serve.seconds, 1), b.serve.outputTokens, f(b.serve.tokPerS, 1), b.serve.failed],
        ],
      ));
      out.push("");
      out.push(table(["input lines", "peak RSS MiB", "s"], b.memory.map((m) => [m.lines, f(m.peakRssMiB, 0), f(m.seconds, 1)])));
    } else out.push(sectionNote("batch", r.batch)!);
  }
  return out.join("\n") + "\n";
}
