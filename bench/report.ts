/**
 * The results file's shape, the targets (issue 5's, and issue 10's speed targets) evaluated
 * from it, and its markdown rendering.
 * @module
 */
import type { KernelSection } from "./kernels.ts";
import type { StepProfile } from "./step_profile.ts";
import type { StepSweep } from "./step_sweep.ts";
import type { OfflineResult, SingleStreamResult } from "./offline.ts";
import type { ServingResult } from "./serving.ts";
import type { ConstrainedResult } from "./constrained.ts";
import type { PeerResult } from "./peer_llama_cpp.ts";
import type { BatchBenchResult } from "./batch.ts";
import type { QuantSectionResult } from "./quant_section.ts";
import type { SpecResult } from "./spec.ts";
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
  /** Absent in files written before issue 10. */
  stepSweeps?: Section<StepSweep[]>;
  offline: Section<OfflineResult[]>;
  singleStream: Section<SingleStreamResult[]>;
  /** Constrained decoding: 1 of 8 sequences constrained vs none (absent in older files). */
  constrained?: Section<ConstrainedResult>;
  serving: Section<ServingResult>;
  peer: Section<PeerResult[]>;
  /** Absent in files written before the batch section existed. */
  batch?: Section<BatchBenchResult>;
  /** Quantized weights (issue 11; absent in older files). */
  quant?: Section<QuantSectionResult>;
  /** Speculative decoding (issue 23; absent in older files). */
  spec?: Section<SpecResult>;
  targets: Target[];
  durationS: number;
}

/** One of the issue's targets, as measured. */
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

/** Evaluates the issue's targets from the sections that ran. */
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
      measured: `${f(off.ratio)}x (${f(c.outputTokPerS, 1)} vs ${
        f(s.outputTokPerS, 1)
      } tok/s; batch fill p50 ${f(c.batchFill.p50)} vs ${f(s.batchFill.p50)}, sequence fill ${
        f(c.seqFill)
      } vs ${f(s.seqFill)})`,
      met: off.ratio >= 2,
      limit: off.ratio >= 2
        ? undefined
        : (off.costModel?.idealRatio ?? off.idealRatio) < 2
        ? `the lengths and the measured step cost per batch size allow only ${
          f(off.costModel?.idealRatio ?? off.idealRatio)
        }x; ${stepNote}`
        : stepNote,
    });
    const cm = off.costModel;
    out.push({
      name: "continuous/static vs the ideal from the measured step cost per batch size",
      goal: ">= 85%",
      measured: cm
        ? `${f(100 * cm.ofIdeal, 0)}% of ${f(cm.idealRatio)}x (step ms at batch ${
          cm.stepMs.map((p) => `${p.seqs}: ${f(p.ms, 1)}`).join(", ")
        }); constant-cost ideal ${
          f(off.idealRatio)
        }x (${off.idealStaticSteps} / ${off.idealContinuousSteps} steps)`
        : `${f(100 * off.ofIdeal, 0)}% of the constant-cost ideal ${
          f(off.idealRatio)
        }x (no step cost measured)`,
      met: (cm?.ofIdeal ?? off.ofIdeal) >= 0.85,
      limit: (cm?.ofIdeal ?? off.ofIdeal) >= 0.85
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
  out.push(...issue10Targets(r));
  if (r.quant?.status === "ok") out.push(...quantTargets(r.quant.data));
  if (r.kernels.status === "ok") {
    const g = r.kernels.data.gemvVsBest.find((x) => x.m === 1);
    if (g) {
      out.push({
        name: "decode GEMV bandwidth vs the best simple GEMV",
        goal: ">= 80%",
        measured: `${f(100 * g.ratio, 0)}% (${g.projectKernel} ${
          f(g.projectGbps)
        } vs ${g.bestReference} ${f(g.bestReferenceGbps)} GB/s, SmolLM2 shapes, m=1)`,
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
      measured: `${f(b.ratio)}x (${f(b.cli.tokPerS, 1)} vs ${
        f(b.serve.tokPerS, 1)
      } tok/s, ${b.requests} requests)`,
      met: b.ratio >= 1,
      limit: b.ratio >= 1
        ? undefined
        : "the batch's engine loop or its in-process HTTP handling costs more than the server's",
    });
    const [small, large] = [b.memory[0], b.memory.at(-1)];
    if (small && large && large.lines > small.lines) {
      const growth = large.peakRssMiB / small.peakRssMiB;
      out.push({
        name: "cli batch peak memory flat over the input length",
        goal: "<= 1.2x peak RSS for 10x the lines",
        measured: `${f(growth)}x (${f(small.peakRssMiB, 0)} MiB at ${small.lines} lines, ${
          f(large.peakRssMiB, 0)
        } MiB at ${large.lines})`,
        met: growth <= 1.2,
        limit: growth <= 1.2 ? undefined : "something grows with the number of lines",
      });
    }
  }
  return out;
}

/** Issue 11's targets: bytes, decode speed against our f16 and llama.cpp's same type, load memory. */
export function quantTargets(q: QuantSectionResult): Target[] {
  const out: Target[] = [];
  const f16 = q.rows.find((r) => r.type === "f16");
  const mib = (b: number) => `${f(b / 2 ** 20, 1)} MiB`;
  const q4 = q.rows.find((r) => r.type === "q4_0");
  if (f16 && q4) {
    const ratio = q4.load.weightBytes / f16.load.weightBytes;
    out.push({
      name: "Q4_0 weight bytes vs f16 (whole model)",
      goal: "<= 0.3x",
      measured: `${f(ratio)}x (${mib(q4.load.weightBytes)} vs ${mib(f16.load.weightBytes)})`,
      met: ratio <= 0.3,
      limit: ratio <= 0.3
        ? undefined
        : "the embedding / LM head stays 16-bit (a fixed share of a 135M model)",
    });
  }
  const decodeLimit =
    "lavapipe is compute-bound on the inner loop: unpacking blocks costs about what the bytes save";
  for (const row of q.rows) {
    if (row.type !== "f16" && f16) {
      for (const [streams, key] of [["single-stream", "singleTokPerS"], [`${q.parallel}-stream`, "parallelTokPerS"]] as const) {
        const ratio = row.ours[key] / f16.ours[key];
        out.push({
          name: `${row.type} ${streams} decode vs our f16`,
          goal: ">= 1.3x",
          measured: `${f(ratio)}x (${f(row.ours[key], 1)} vs ${f(f16.ours[key], 1)} tok/s)`,
          met: ratio >= 1.3,
          limit: ratio >= 1.3 ? undefined : decodeLimit,
        });
      }
    }
    if (row.llamaCpp) {
      const ratio = row.ours.singleTokPerS / row.llamaCpp.singleTokPerS;
      out.push({
        name: `${row.type} single stream vs llama.cpp ${row.type.toUpperCase()}`,
        goal: ">= 0.6x",
        measured: `${f(ratio)}x (${f(row.ours.singleTokPerS, 1)} vs ${
          f(row.llamaCpp.singleTokPerS, 1)
        } tok/s)`,
        met: ratio >= 0.6,
        limit: ratio >= 0.6 ? undefined : "as for f16: lavapipe's matmul throughput",
      });
    }
    if (row.type !== "f16") {
      for (const [from, probe] of [["load-time", row.load], [".gguf", row.ggufLoad]] as const) {
        const within = probe.peakHwmBytes <= row.load.boundBytes;
        out.push({
          name: `${row.type} ${from} load peak host memory`,
          goal: "<= largest tensor's f32 + baseline + weights",
          measured: `${mib(probe.peakHwmBytes)} (bound ${mib(row.load.boundBytes)})`,
          met: within,
          limit: within ? undefined : "something beyond one tensor is held while loading",
        });
      }
    }
  }
  return out;
}

const SMOL = "smollm2-135m-synthetic";

/** Issue 10's targets: llama.cpp ratios, dispatches, step growth with context, GEMV vs the roof. */
function issue10Targets(r: Omit<BenchResults, "targets" | "durationS">): Target[] {
  const out: Target[] = [];
  const peer = r.peer.status === "ok" ? r.peer.data.find((p) => p.model.endsWith(SMOL)) : undefined;
  const peerLimit =
    "one token reads all 269 MB of f16 weights; the matmuls stream them at a fraction of lavapipe's read-reduce roof, and llama.cpp's own F16 kernels run at ~24 ms/token";
  if (peer) {
    const when = `same-minute alternating rounds (${peer.rounds}), ${peer.threads} threads`;
    out.push({
      name: "SmolLM2-shaped single stream vs llama.cpp F16",
      goal: ">= 0.6x",
      measured: `${f(peer.singleRatio)}x (${f(peer.ours.singleTokPerS, 1)} vs ${
        f(peer.llamaCpp.singleTokPerS, 1)
      } tok/s; ${when})`,
      met: peer.singleRatio >= 0.6,
      limit: peer.singleRatio >= 0.6 ? undefined : peerLimit,
    });
    out.push({
      name: `SmolLM2-shaped ${peer.parallel} parallel streams vs llama.cpp F16`,
      goal: ">= 1.0x",
      measured: `${f(peer.parallelRatio)}x (${f(peer.ours.parallelTokPerS, 1)} vs ${
        f(peer.llamaCpp.parallelTokPerS, 1)
      } tok/s)`,
      met: peer.parallelRatio >= 1,
      limit: peer.parallelRatio >= 1
        ? undefined
        : "matmuls with 8 rows and attention over 8 sequences on lavapipe (see the step profile)",
    });
  } else {
    out.push({
      name: "SmolLM2-shaped vs llama.cpp",
      goal: ">= 0.6x single, >= 1.0x 8 streams",
      measured: "n/a",
      met: null,
      limit: r.peer.status === "ok" ? "no SmolLM2-shaped peer result" : r.peer.reason,
    });
  }
  const sweep = r.stepSweeps?.status === "ok"
    ? r.stepSweeps.data.find((s) => s.model.endsWith(SMOL))
    : undefined;
  if (sweep) {
    const at = (ctx: number) => sweep.byContext.find((p) => p.context === ctx);
    const first = sweep.byContext[0];
    const last = sweep.byContext.at(-1)!;
    const bound = 5 * sweep.layers + 4;
    const worst = Math.max(
      ...sweep.byContext.map((p) => p.dispatches),
      ...sweep.byBatch.map((p) => p.dispatches),
    );
    out.push({
      name: "dispatches per decode step (SmolLM2-shaped)",
      goal: `<= 5 per layer + 4 = ${bound}`,
      measured:
        `${first.dispatches} at context ${first.context}, ${last.dispatches} at ${last.context} (${sweep.layers} layers)`,
      met: worst <= bound,
      limit: worst <= bound
        ? undefined
        : "a step whose longest context spans several attention splits adds one combine dispatch per layer",
    });
    const a = at(128);
    const b = at(2048);
    if (a && b) {
      const ratio = b.gpuMs / a.gpuMs;
      out.push({
        name: "single-stream step at context 2048 / at 128 (SmolLM2-shaped)",
        goal: "<= 1.5x",
        measured: `${f(ratio)}x (${f(b.gpuMs, 1)} vs ${f(a.gpuMs, 1)} ms GPU; ${
          sweep.byContext.map((p) => `${p.context}: ${f(p.gpuMs, 1)}`).join(", ")
        } ms)`,
        met: ratio <= 1.5,
        limit: ratio <= 1.5
          ? undefined
          : "attention reads K/V at a few GB/s on lavapipe (see the attention rows of the kernel table)",
      });
    }
  }
  if (r.kernels.status === "ok") {
    const k = r.kernels.data;
    const g = k.gemvVsBest.find((x) => x.m === 1);
    if (g) {
      out.push({
        name: "decode GEMV vs the streaming-read roof (the GPU target, measured on this adapter)",
        goal: ">= 60%",
        measured: `${f(100 * g.projectOfRoof, 0)}% (${g.projectKernel} ${
          f(g.projectGbps)
        } GB/s over the 5 SmolLM2 shapes, m=1; roof ${k.roofKernel} ${
          f(k.roofGbps)
        } GB/s; ${k.adapter})`,
        met: g.projectOfRoof >= 0.6,
        limit: g.projectOfRoof >= 0.6
          ? undefined
          : "narrow shapes (o, down, qkv) are dispatch- and balance-bound on 2 threads; see the kernel table",
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

  out.push("\n## Kernels (GPU timestamps, median; weights in rotating copies of >= 64 MiB)");
  if (r.kernels.status === "ok") {
    const k = r.kernels.data;
    if (k.roofKernel) {
      out.push(
        `Streaming-read roof: ${k.roofKernel} ${
          f(k.roofGbps)
        } GB/s; project matmul family: ${k.family}.`,
      );
    }
    out.push(table(
      ["kernel", "impl", "shape", "m", "GPU ms", "GB/s", "of roof", "GFLOP/s"],
      k.results.map((x) => [
        x.kernel,
        x.impl,
        x.shape,
        x.m,
        f(x.gpuMs, 3),
        f(x.gbps),
        x.ofRoof === undefined ? "" : `${f(100 * x.ofRoof, 0)}%`,
        f(x.gflops),
      ]),
    ));
    out.push("");
    out.push(table(
      [
        "m",
        "project GEMV (all shapes) GB/s",
        "of roof",
        "best reference",
        "GB/s",
        "project / reference",
      ],
      k.gemvVsBest.map((g) => [
        g.m,
        `${g.projectKernel ?? "matmul.wgsl"} ${f(g.projectGbps)}`,
        g.projectOfRoof === undefined ? "" : `${f(100 * g.projectOfRoof, 0)}%`,
        g.bestReference,
        f(g.bestReferenceGbps),
        f(g.ratio),
      ]),
    ));
  } else out.push(sectionNote("kernels", r.kernels)!);

  if (r.stepSweeps) {
    out.push("\n## Decode steps against context length and batch size (whole step + sampler)");
    if (r.stepSweeps.status === "ok") {
      for (const sw of r.stepSweeps.data) {
        out.push(
          `\n**${
            sw.model.split("/").at(-1)
          }** (${sw.layers} layers, medians of ${sw.rounds} interleaved rounds)`,
        );
        const base = sw.byContext[0]?.gpuMs;
        out.push(table(
          [
            "seqs",
            "context",
            "dispatches",
            "GPU ms",
            "wall ms/step (8 per wait)",
            "GPU ms / 1 seq at first context",
          ],
          [...sw.byContext, ...sw.byBatch].map((
            p,
          ) => [p.seqs, p.context, p.dispatches, f(p.gpuMs, 1), f(p.wallMs, 1), f(p.gpuMs / base)]),
        ));
      }
    } else out.push(sectionNote("step sweep", r.stepSweeps)!);
  }

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
        `ratio ${f(o.ratio)}x; constant-cost ideal ${
          f(o.idealRatio)
        }x (${o.idealStaticSteps} / ${o.idealContinuousSteps} decode steps), ${
          f(100 * o.ofIdeal, 0)
        }% of it` +
          (o.costModel
            ? `; ideal from the measured step cost per batch size ${f(o.costModel.idealRatio)}x, ${
              f(100 * o.costModel.ofIdeal, 0)
            }% of it`
            : ""),
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
      `${
        c.model.split("/").at(-1)
      }, ${c.sequences} sequences x ${c.outputTokens} tokens (greedy, same prompts), ` +
        `${c.repeats} interleaved repetitions, medians; the constraint: a JSON schema (an array of 64 objects).`,
    );
    out.push(table(
      [
        "variant",
        "batch out tok/s",
        "7 unconstrained tok/s",
        "constrained tok/s",
        "forced tokens",
        "wall s",
      ],
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
      } in every run; first constrained request on a warm engine (grammar cold start) ${
        f(c.coldStartMs, 0)
      } ms`,
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
      out.push(
        `runtime: ${r.peer.data[0].runtime}; ${r.peer.data[0].threads} threads; medians of ${
          r.peer.data[0].rounds ?? 1
        } alternating rounds`,
      );
    }
  } else out.push(sectionNote("peer", r.peer)!);

  if (r.batch) {
    out.push("\n## Offline batch: `cli batch` vs serve.ts");
    if (r.batch.status === "ok") {
      const b = r.batch.data;
      out.push(table(
        ["run", "requests", "s", "output tokens", "tok/s", "failed"],
        [
          [
            "cli batch",
            b.requests,
            f(b.cli.seconds, 1),
            b.cli.outputTokens,
            f(b.cli.tokPerS, 1),
            b.cli.failed,
          ],
          [
            `serve.ts, ${b.clients} clients`,
            b.requests,
            f(b.serve.seconds, 1),
            b.serve.outputTokens,
            f(b.serve.tokPerS, 1),
            b.serve.failed,
          ],
        ],
      ));
      out.push("");
      out.push(
        table(
          ["input lines", "peak RSS MiB", "s"],
          b.memory.map((m) => [m.lines, f(m.peakRssMiB, 0), f(m.seconds, 1)]),
        ),
      );
    } else out.push(sectionNote("batch", r.batch)!);
  }

  if (r.quant) {
    out.push(
      "\n## Quantized weights (SmolLM2-shaped, load-time quantization; llama.cpp on the GGUF of the same type)",
    );
    if (r.quant.status === "ok") {
      const q = r.quant.data;
      const mib = (b: number) => f(b / 2 ** 20, 1);
      const pair = (p: { singleTokPerS: number; parallelTokPerS: number } | null | undefined) =>
        p ? `${f(p.singleTokPerS, 1)} / ${f(p.parallelTokPerS, 1)}` : "-";
      out.push(table(
        [
          "type",
          "weights MiB",
          "load s (.gguf)",
          "peak RSS MiB: load-time / .gguf (bound)",
          `ours 1 / ${q.parallel} tok/s`,
          "fast path",
          `llama.cpp 1 / ${q.parallel}`,
        ],
        q.rows.map((r) => [
          r.type,
          mib(r.load.weightBytes),
          `${f(r.load.loadS)} (${f(r.ggufLoad.loadS)})`,
          `${mib(r.load.peakHwmBytes)} / ${mib(r.ggufLoad.peakHwmBytes)} (${mib(r.load.boundBytes)})`,
          pair(r.ours),
          pair(r.oursFast),
          pair(r.llamaCpp),
        ]),
      ));
      for (const n of q.notes) out.push(`- ${n}`);
    } else out.push(sectionNote("quant", r.quant)!);
  }

  if (r.spec) {
    out.push("\n## Speculative decoding (n-gram drafts, speculation off vs on)");
    if (r.spec.status === "ok") out.push(...renderSpec(r.spec.data));
    else out.push(sectionNote("spec", r.spec)!);
  }
  return out.join("\n") + "\n";
}

/** The section's markdown tables. */
export function renderSpec(r: SpecResult): string[] {
  const c = r.config;
  const out = [
    `${
      c.method === "draft"
        ? `draft model ${c.model.split("/").at(-1)} (k = ${c.numSpeculativeTokens})`
        : c.method === "mtp"
        ? `MTP head (k = ${c.numSpeculativeTokens})`
        : `n-gram drafts (k = ${c.numSpeculativeTokens}, n ${c.promptLookupMax}..${c.promptLookupMin})`
    } on ${r.model}, greedy, ${r.kernelFamily} kernels, best of ${r.runs}:`,
    "",
    "| workload | off tok/s | on tok/s | on/off | tokens per verify step | acceptance |",
    "|---|---|---|---|---|---|",
  ];
  for (const w of r.rows) {
    out.push(
      `| ${w.workload} | ${w.plainTokPerS.toFixed(1)} | ${w.specTokPerS.toFixed(1)} | ${w.speedup.toFixed(2)} | ${
        w.tokensPerVerifyStep ? w.tokensPerVerifyStep.toFixed(2) : "-"
      } | ${w.tokensPerVerifyStep ? (w.acceptance * 100).toFixed(0) + "%" : "-"} |`,
    );
  }
  const limited = r.rows.filter((w) => w.limited);
  if (limited.length) {
    out.push("", `With \`disable_by_batch_size\` ${r.disableByBatchSize} (a third engine, timed alternately with the two above):`, "");
    out.push("| workload | limited tok/s | limited/off | on/off | verify steps limited / on |", "|---|---|---|---|---|");
    for (const w of limited) {
      out.push(`| ${w.workload} | ${w.limited!.tokPerS.toFixed(1)} | ${w.limited!.speedup.toFixed(2)} | ${w.speedup.toFixed(2)} | ${w.limited!.verifySteps} / ${w.verifySteps} |`);
    }
  }
  out.push("", `Verify-step cost on ${r.costModel} (one sequence at context ${r.context}, k + 1 sampled rows, 8 steps per wait):`, "");
  out.push("| k | ms per step | vs plain step |", "|---|---|---|");
  for (const c of r.verifyCost) out.push(`| ${c.k} | ${c.wallMs.toFixed(2)} | ${c.ratio.toFixed(2)} |`);
  if (r.llamaCpp && c.method === "ngram") {
    out.push(
      "",
      `Peer: llama.cpp (node-llama-cpp's InputLookupTokenPredictor, pattern ${c.promptLookupMin}..${c.promptLookupMax}, up to ${c.numSpeculativeTokens} tokens) on the GGUF conversion, same workloads, best of ${r.runs}:`,
      "",
      "| workload | off tok/s | on tok/s | on/off | predictions validated / refuted | same tokens |",
      "|---|---|---|---|---|---|",
    );
    for (const w of r.llamaCpp) {
      out.push(`| ${w.workload} | ${w.offTokPerS.toFixed(1)} | ${w.onTokPerS.toFixed(1)} | ${w.speedup.toFixed(2)} | ${w.validated} / ${w.refuted} | ${w.sameTokens ? "yes" : "no"} |`);
    }
  } else if (r.llamaCppNote) {
    out.push("", `Peer llama.cpp: ${r.llamaCppNote}.`);
  }
  return out;
}
