/**
 * `deno task bench [--quick] [--json PATH] [--only SECTIONS]`
 * (or `bun run bench/main.ts ...`, same flags): the throughput suite of issue 5. Runs kernel,
 * decode-step, offline batching, constrained decoding (issue 12), serving, llama.cpp-peer,
 * quantized-weight (issue 11) and speculative-decoding (issue 23)
 * benchmarks on stories260K and a synthetic SmolLM2-135M-shaped f16 model (built into a temp
 * dir), writes
 * `bench/results/<timestamp>.json` (or PATH) and prints a markdown table. `--quick` shrinks
 * every section so the whole run fits in 5 minutes: a section that would start past
 * {@link QUICK_BUDGET_S} is skipped, and the results say so. The file records which runtime
 * produced it; `bench/compare.ts` puts a Deno run and a Bun run side by side.
 * @module
 */
import { createGpu, type Gpu } from "../src/gpu/device.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { benchKernels, llamaGemvShapes } from "./kernels.ts";
import { profileDecodeStep, type StepProfile } from "./step_profile.ts";
import { type StepSweep, sweepBlocks, sweepSteps } from "./step_sweep.ts";
import {
  benchOffline,
  benchSingleStream,
  type OfflineResult,
  type SingleStreamResult,
} from "./offline.ts";
import { benchServing, type ServingResult } from "./serving.ts";
import { benchConstrained, type ConstrainedResult } from "./constrained.ts";
import { benchPeer, loadLlamaCpp, type PeerResult } from "./peer_llama_cpp.ts";
import { benchBatch } from "./batch.ts";
import { benchQuant } from "./quant_section.ts";
import { benchSpec } from "./spec.ts";
import {
  DEFAULT_WORKLOAD,
  makeWorkload,
  poissonArrivals,
  scaleWorkloadOptions,
} from "./workload.ts";
import {
  type BenchResults,
  evaluateTargets,
  renderMarkdown,
  type Section,
  SectionSkipped,
} from "./report.ts";
import { SMOLLM2_135M_CONFIG, writeSyntheticModel } from "./synthetic_model.ts";
import * as rt from "../src/runtime/runtime.ts";

/** Parsed command line. */
export interface BenchArgs {
  quick: boolean;
  json: string | null;
  only: Set<string> | null;
}

const SECTIONS = ["kernels", "offline", "constrained", "serving", "peer", "batch", "quant", "spec"];

/** Parses `--quick`, `--json PATH` and `--only a,b`. */
export function parseBenchArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { quick: false, json: null, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") args.quick = true;
    else if (a === "--json") args.json = argv[++i] ?? fail("--json needs a path");
    else if (a === "--only") {
      const names = (argv[++i] ?? fail("--only needs a list")).split(",");
      for (const n of names) {
        if (!SECTIONS.includes(n)) fail(`unknown section ${n} (${SECTIONS.join(", ")})`);
      }
      args.only = new Set(names);
    } else if (a === "--help" || a === "-h") {
      console.log(
        `deno task bench | bun run bench/main.ts [--quick] [--json PATH] [--only ${
          SECTIONS.join(",")
        }]\n  --quick  every section shrunk; the run ends within 5 minutes (a section that would start past ${QUICK_BUDGET_S} s is skipped and recorded)`,
      );
      rt.exit(0);
    } else fail(`unknown flag ${a}`);
  }
  return args;
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  rt.exit(2);
}

const ROOT = new URL("../", import.meta.url).pathname;
const STORIES = `${ROOT}tests/fixtures/models/stories260K`;

/**
 * With `--quick`, no section starts after this many seconds of the run, so that the run (its
 * last section included, the longest of which takes about a minute here) ends within the 5
 * minutes `--help` promises on a loaded machine too; what is skipped is recorded.
 */
export const QUICK_BUDGET_S = 240;
/** With `--quick`, sections that repeat rounds (peer) start no round they expect to end past this. */
export const QUICK_END_S = 280;

// When this run's sections must have started by, and its rounds ended by (set by main for --quick).
let quickStartBy = Infinity;
let quickEndBy = Infinity;

/**
 * Runs one section: skipped when not selected or when `startBy` (a `performance.now()` time)
 * has passed; a failure is recorded, not thrown.
 */
export async function section<T>(
  name: string,
  enabled: boolean,
  fn: () => Promise<T>,
  startBy = quickStartBy,
): Promise<Section<T>> {
  if (!enabled) return { status: "skipped", reason: "not selected (--only)" };
  if (performance.now() > startBy) {
    console.error(`[bench] ${name} skipped: --quick time budget spent`);
    return { status: "skipped", reason: `--quick: started past its ${QUICK_BUDGET_S} s budget (run it alone with --only)` };
  }
  const t0 = performance.now();
  console.error(`[bench] ${name}...`);
  try {
    const data = await fn();
    console.error(`[bench] ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return { status: "ok", data };
  } catch (e) {
    if (e instanceof SectionSkipped) {
      console.error(`[bench] ${name} skipped: ${e.message}`);
      return { status: "skipped", reason: e.message };
    }
    console.error(`[bench] ${name} failed:`, e);
    return { status: "failed", reason: `${(e as Error).name}: ${(e as Error).message}` };
  }
}

async function main(): Promise<void> {
  const args = parseBenchArgs(rt.args());
  const q = args.quick;
  const on = (s: string) => !args.only || args.only.has(s);
  const started = new Date();
  const t0 = performance.now();
  if (q) {
    quickStartBy = t0 + QUICK_BUDGET_S * 1000;
    quickEndBy = t0 + QUICK_END_S * 1000;
  }
  const log = (line: string) => console.error(line);
  const notes: string[] = [];
  const tmp = await rt.makeTempDir("bench_");
  try {
    const smol = `${tmp}/smollm2-135m-synthetic`;
    if (on("kernels") || on("peer") || (!q && on("offline")) || on("quant") || on("spec")) {
      const bytes = await writeSyntheticModel(smol, { tokenizerDir: STORIES });
      notes.push(
        `synthetic SmolLM2-135M-shaped model (random f16, ${
          (bytes / 2 ** 20).toFixed(0)
        } MiB) built in a temp dir`,
      );
    }
    const gpu: Gpu = await createGpu();
    const c = SMOLLM2_135M_CONFIG as Record<string, number>;

    const kernels = await section("kernels", on("kernels"), () =>
      benchKernels({
        gpu,
        gemvShapes: llamaGemvShapes({
          hidden: c.hidden_size,
          intermediate: c.intermediate_size,
          heads: c.num_attention_heads,
          kvHeads: c.num_key_value_heads,
          headDim: c.head_dim,
          vocab: c.vocab_size,
        }),
        attention:
          ([[1, 2048], [8, 256], ...(q ? [] : [[1, 4096], [8, 1024]])] as [number, number][]).map((
            [seqs, context],
          ) => ({
            name: `smollm2 ${seqs}x${context}`,
            heads: 9,
            kvHeads: 3,
            headDim: 64,
            blockSize: 16,
            seqs,
            context,
          })),
        ms: [1, 8],
        targetPassMs: q ? 15 : 60,
        benchTimeMs: q ? 30 : 300,
        iterations: q ? 3 : 10,
        log,
      }));

    const stepProfiles = await section("decode step profile", on("kernels"), async () => {
      const out: StepProfile[] = [];
      const cases: [string, number][] = [
        [STORIES, 1],
        [STORIES, 8],
        [smol, 1],
        ...(q ? [] : [[smol, 8]] as [string, number][]),
      ];
      for (const [model, seqs] of cases) {
        const runner = await ModelRunner.load(model, {
          gpu,
          maxTokens: 64,
          maxSeqs: 8,
          numBlocks: 8 * 8 + 8,
          maxContext: 512,
        });
        try {
          out.push(
            await profileDecodeStep(runner, {
              model,
              seqs,
              context: 128,
              iterations: q ? 3 : 10,
              benchTimeMs: q ? 50 : 300,
            }),
          );
        } finally {
          runner.close();
        }
      }
      return out;
    });

    // Whole steps: single stream against context length, and the step cost per batch size
    // (the continuous-vs-static cost model on stories260K, the offline model).
    const stepSweeps = await section(
      "decode steps by context and batch",
      on("kernels") || on("offline"),
      async () => {
        const out: StepSweep[] = [];
        const cases: [string, number[]][] = [
          ...(on("kernels") ? [[smol, [128, 512, 1024, 2048, 4096]]] as [string, number[]][] : []),
          [STORIES, [128]],
        ];
        const batches = [1, 2, 4, 8];
        for (const [model, contexts] of cases) {
          const blocks = sweepBlocks(contexts, batches, 128, 16);
          const runner = await ModelRunner.load(model, {
            gpu,
            maxTokens: 64,
            maxSeqs: 8,
            numBlocks: blocks + 8,
            maxContext: Math.max(...contexts) + 16,
          });
          try {
            out.push(
              await sweepSteps(runner, {
                model,
                contexts,
                batches,
                batchContext: 128,
                rounds: q ? 3 : 7,
              }),
            );
            const sw = out.at(-1)!;
            log(
              `  ${model.split("/").at(-1)}: ${
                sw.byContext.map((p) => `${p.context}: ${p.gpuMs.toFixed(1)} ms`).join(", ")
              }; batch ${sw.byBatch.map((p) => `${p.seqs}: ${p.wallMs.toFixed(1)} ms`).join(", ")}`,
            );
          } finally {
            runner.close();
          }
        }
        return out;
      },
    );
    const storiesStepMs = stepSweeps.status === "ok"
      ? stepSweeps.data.find((s) => s.model === STORIES)?.byBatch.map((p) => ({
        seqs: p.seqs,
        ms: p.wallMs,
      }))
      : undefined;

    const offlineEngine = { model: STORIES, maxSeqs: 8, maxBatchTokens: 256, maxContext: 1024 };
    const offline = await section("offline", on("offline"), async () => {
      const out: OfflineResult[] = [];
      const base = q ? scaleWorkloadOptions(DEFAULT_WORKLOAD, 24, 0.4) : DEFAULT_WORKLOAD;
      const note = q
        ? "--quick: shrunk to 24 requests, lengths x0.4 (prompts 6-102, outputs 6-26 / 77-154)."
        : "Full workload (seed 5): prompts 16-256, outputs 16-64 (3/4) / 192-384 (1/4).";
      out.push(
        await benchOffline(
          offlineEngine,
          makeWorkload({ ...base, vocab: 512, bosId: 1 }),
          note,
          log,
          storiesStepMs,
        ),
      );
      if (!q) {
        const small = scaleWorkloadOptions(DEFAULT_WORKLOAD, 16, 0.125);
        out.push(
          await benchOffline(
            { ...offlineEngine, model: smol },
            makeWorkload({ ...small, vocab: 49152, bosId: 1 }),
            "SmolLM2-shaped: shrunk to 16 requests, lengths x1/8 (a decode step takes ~0.25 s on lavapipe).",
            log,
          ),
        );
      } else {notes.push(
          "--quick: offline batching on the SmolLM2-shaped model skipped (~0.25 s per decode step on lavapipe)",
        );}
      return out;
    });
    const singleStream = await section("single stream", on("offline"), async () => {
      const out: SingleStreamResult[] = [];
      const prompt =
        makeWorkload({ vocab: 512, bosId: 1, requests: 1, promptLen: [16, 16] })[0].promptIds;
      out.push(await benchSingleStream(offlineEngine, prompt, q ? 96 : 256));
      return out;
    });

    const constrained = await section<ConstrainedResult>(
      "constrained",
      on("constrained"),
      () =>
        benchConstrained({ model: STORIES, outputTokens: q ? 128 : 256, repeats: q ? 2 : 4 }, log),
    );

    const serving = await section<ServingResult>("serving", on("serving"), async () => {
      const n = q ? 16 : 64;
      const rate = 4;
      const requests = makeWorkload({
        ...DEFAULT_WORKLOAD,
        seed: 11,
        requests: n,
        promptLen: [16, 128],
        shortOutput: [16, 64],
        longOutput: [96, 192],
        vocab: 512,
        bosId: 1,
      });
      return await benchServing({
        serveScript: `${ROOT}serve.ts`,
        model: STORIES,
        requests,
        arrivals: poissonArrivals(n, rate, 11),
        ratePerSecond: rate,
        maxSeqs: 8,
        runTimeoutS: q ? 120 : 600,
      });
    });

    const peer = await section("peer", on("peer"), async () => {
      const out: PeerResult[] = [];
      const llama = await loadLlamaCpp();
      const threads = navigator.hardwareConcurrency || 2;
      // The SmolLM2-shaped model is the number users care about: it runs in --quick too.
      const cases: [string, number, number][] = q
        ? [[smol, 49152, 32]]
        : [[STORIES, 512, 256], [smol, 49152, 64]];
      if (q) {
        notes.push(
          `--quick: peer on the SmolLM2-shaped model only, 32 tokens per stream, up to 3 alternating rounds (no round started that would end past ${QUICK_END_S} s)`,
        );
      }
      try {
        for (const [model, vocab, tokens] of cases) {
          const prompts = makeWorkload({
            vocab,
            bosId: 1,
            requests: 8,
            promptLen: [16, 32],
            seed: 3,
          })
            .map((r) => r.promptIds);
          out.push(
            await benchPeer({
              model,
              ggufPath: `${tmp}/${model.split("/").at(-1)}.gguf`,
              prompts,
              outputTokens: tokens,
              parallel: 8,
              threads,
              maxContext: 512,
              llama,
              rounds: q ? 3 : 5,
              ...(q ? { stopBy: quickEndBy } : {}),
            }),
          );
          log(
            `  ${model.split("/").at(-1)}: ours/llama.cpp ${
              out.at(-1)!.singleRatio.toFixed(2)
            } (1x), ${out.at(-1)!.parallelRatio.toFixed(2)} (8x)`,
          );
        }
      } finally {
        await llama.dispose();
      }
      return out;
    });
    const batch = await section("batch", on("batch"), () =>
      benchBatch({
        model: STORIES,
        requests: makeWorkload({
          ...DEFAULT_WORKLOAD,
          seed: 13,
          requests: 256,
          promptLen: [8, 64],
          shortOutput: [8, 32],
          longOutput: [48, 96],
          vocab: 512,
          bosId: 1,
        }),
        clients: 8,
        memoryLines: q ? [500, 5000] : [2000, 20000],
        tmp,
        root: ROOT,
        log,
      }));
    if (q) {
      notes.push("--quick: the batch memory runs use 500 and 5,000 lines (20,000 without --quick)");
    }
    // f16 / Q8_0 / Q4_0 on the SmolLM2-shaped model next to llama.cpp (bench/quant_section.ts).
    const quant = await section("quant", on("quant"), () =>
      benchQuant({
        model: smol,
        tmp,
        prompts: makeWorkload({ vocab: 49152, bosId: 1, requests: 8, promptLen: [16, 32], seed: 3 })
          .map((r) => r.promptIds),
        outputTokens: q ? 8 : 32,
        parallel: 8,
        threads: navigator.hardwareConcurrency || 2,
        baselineModel: STORIES,
        rounds: q ? 1 : 3,
        fastPath: !q, // two more SmolLM2-sized engines; the full run measures them
      }, log));
    if (q) notes.push("--quick: quant without the fast path (quantized activations)");
    // Speculative decoding (n-gram drafts) on stories260K, which copies; the verify-step cost
    // per k on the SmolLM2-shaped model; llama.cpp's prompt lookup as a peer (bench/spec.ts).
    const spec = await section("spec", on("spec"), () => benchSpec({ model: STORIES, costModel: smol, gpu, quick: q, tmp, log }));
    if (q) notes.push("--quick: spec with half-length outputs, best of 2 timed runs per engine, 2 rounds of step costs");
    gpu.device.destroy();

    const partial = {
      startedAt: started.toISOString(),
      quick: q,
      environment: {
        ...rt.runtimeInfo(),
        cpus: navigator.hardwareConcurrency,
        adapter: gpu.description,
      },
      notes,
      kernels,
      stepProfiles,
      stepSweeps,
      offline,
      singleStream,
      constrained,
      serving,
      peer,
      batch,
      quant,
      spec,
    };
    const results: BenchResults = {
      ...partial,
      targets: evaluateTargets(partial),
      durationS: (performance.now() - t0) / 1000,
    };
    const path = args.json ??
      `${ROOT}bench/results/${started.toISOString().replace(/[:.]/g, "-")}.json`;
    await rt.mkdir(path.replace(/\/[^/]*$/, "") || ".");
    await rt.writeFile(path, JSON.stringify(results, null, 2) + "\n");
    console.log(renderMarkdown(results));
    console.log(`results: ${path}`);
  } finally {
    await rt.remove(tmp).catch(() => {});
  }
}

if (import.meta.main) await main();
