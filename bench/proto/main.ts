/**
 * `deno run -A --no-check=remote bench/proto/main.ts [--quick] [--only roofs,matmul,attention,step,peer] [--json PATH]`
 * (or `bun run bench/proto/main.ts ...`): the issue-10 kernel prototypes measured in one run
 * against the current kernels, simple references, the adapter's streaming-read roof and
 * llama.cpp, on SmolLM2-135M shapes. Writes JSON (default `bench/proto/results/<time>.json`)
 * and prints markdown tables. Variants are interleaved round by round; medians are reported.
 * @module
 */
import { GpuKit } from "./gpu_kit.ts";
import { benchMatmuls, SMOLLM2_SHAPES } from "./bench_matmul.ts";
import { benchAttention } from "./bench_attention.ts";
import { benchSteps } from "./bench_step.ts";
import { LlamaCppPeer } from "./bench_peer.ts";
import { kernelFamilyFor } from "../../src/gpu/kernel_families.ts";
import { SMOLLM2_135M_CONFIG, writeSyntheticModel } from "../synthetic_model.ts";
import { renderProtoMarkdown } from "./report.ts";
import * as rt from "../../src/runtime/runtime.ts";

const SECTIONS = ["matmul", "attention", "step", "peer"] as const;
type SectionName = typeof SECTIONS[number];

function parse(argv: string[]) {
  const out = { quick: false, only: new Set<SectionName>(SECTIONS), json: "" };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--quick") out.quick = true;
    else if (argv[i] === "--json") out.json = argv[++i];
    else if (argv[i] === "--only") out.only = new Set(argv[++i].split(",") as SectionName[]);
    else throw new Error(`unknown flag ${argv[i]}`);
  }
  return out;
}

const ROOT = new URL("../../", import.meta.url).pathname;

async function loadAverage(): Promise<string> {
  try {
    return (await rt.readTextFile("/proc/loadavg")).trim();
  } catch {
    return "n/a";
  }
}

async function main() {
  const args = parse(rt.args());
  const q = args.quick;
  const log = (s: string) => console.error(s);
  const started = new Date();
  const kit = await GpuKit.create();
  const adapter = {
    description: kit.gpu.description,
    isFallbackAdapter: kit.gpu.isFallbackAdapter,
    subgroups: kit.gpu.hasSubgroups,
    shaderF16: kit.gpu.hasF16,
    family: kernelFamilyFor(kit.gpu),
  };
  const results: Record<string, unknown> = {
    startedAt: started.toISOString(),
    runtime: rt.runtimeInfo(),
    cpus: navigator.hardwareConcurrency,
    loadAverageStart: await loadAverage(),
    adapter,
    quick: q,
  };
  log(
    `[proto] adapter ${adapter.description} (family ${adapter.family}, subgroups ${adapter.subgroups})`,
  );
  const tmp = await rt.makeTempDir("proto_bench_");
  try {
    if (args.only.has("matmul")) {
      log("[proto] roofs and matmuls...");
      results.matmul = await benchMatmuls(kit, {
        shapes: Deno.env.get("PROTO_SHAPES")
          ? SMOLLM2_SHAPES.filter((s) => Deno.env.get("PROTO_SHAPES")!.split(",").includes(s.name))
          : SMOLLM2_SHAPES,
        ms: q ? [1, 8] : [1, 2, 4, 8, 16],
        prefillMs: q ? [] : [64],
        rounds: q ? 3 : 7,
        targetPassMs: q ? 10 : 25,
        log,
      });
      kit.destroy();
    }
    if (args.only.has("attention")) {
      log("[proto] attention...");
      results.attention = await benchAttention(kit, {
        contexts: q ? [128, 2048] : [128, 512, 1024, 2048, 4096],
        seqs: [1, 8],
        prefill: q ? 0 : 256,
        splitLen: 256,
        rounds: q ? 3 : 7,
        targetPassMs: q ? 10 : 25,
        log,
      });
      kit.destroy();
    }
    const smol = `${tmp}/smollm2-135m-synthetic`;
    if (args.only.has("step") || args.only.has("peer")) {
      await writeSyntheticModel(smol, { tokenizerDir: `${ROOT}tests/fixtures/models/stories260K` });
    }
    let peer: LlamaCppPeer | undefined;
    if (args.only.has("peer")) {
      log("[proto] loading llama.cpp (node-llama-cpp) on the same checkpoint...");
      try {
        peer = await LlamaCppPeer.open(smol, `${tmp}/smol.gguf`, 8, 64);
      } catch (e) {
        results.peer = { skipped: (e as Error).message };
      }
    }
    try {
      if (args.only.has("step")) {
        log("[proto] whole steps (decode loops alternate with llama.cpp)...");
        const step = await benchSteps(kit, {
          modelDir: smol,
          contexts: q ? [128, 2048] : [128, 512, 1024, 2048, 4096],
          seqs: [1, 8],
          rounds: q ? 3 : 5,
          loopSteps: q ? 16 : 32,
          log,
          peer,
          peerRounds: q ? 2 : 3,
        });
        results.step = step;
        if (step.peer) results.peer = step.peer;
        kit.destroy();
      }
    } finally {
      await peer?.dispose();
    }
  } finally {
    await rt.remove(tmp).catch(() => {});
  }
  results.loadAverageEnd = await loadAverage();
  results.durationS = (Date.now() - started.getTime()) / 1000;
  results.model = { name: "SmolLM2-135M-shaped synthetic f16", config: SMOLLM2_135M_CONFIG };
  const path = args.json ||
    `${ROOT}bench/proto/results/${started.toISOString().replace(/[:.]/g, "-")}.json`;
  await rt.mkdir(path.replace(/\/[^/]*$/, ""));
  await rt.writeFile(path, JSON.stringify(results, null, 2) + "\n");
  console.log(renderProtoMarkdown(results));
  console.log(`results: ${path}`);
  kit.gpu.device.destroy();
}

if (import.meta.main) await main();
