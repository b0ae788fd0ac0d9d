/**
 * KV-cache sizing: with a memory budget for the whole engine (`gpuMemoryBytes`,
 * `--gpu-memory-bytes`) the cache gets what the weights (every expert of a mixture, not only
 * the k a token reads) and the step's buffers leave; `kvCacheBytes` caps it; a budget the
 * weights already fill is a `device_limit` error; engine info reports where memory went.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { DEFAULT_KV_CACHE_BYTES, kvCacheBudget, KvBudgetError, stepScratchBytes } from "../src/runner/kv_budget.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { Engine } from "../src/engine/engine.ts";
import { KvCache } from "../src/gpu/kv_cache.ts";
import { createGpu } from "../src/gpu/device.ts";
import { attentionLayers } from "../src/model/config.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { LlmError } from "../src/types/api.ts";

const MiB = 1 << 20;

test("kv budget: default, kv_cache_bytes, and what the weights and scratch leave of gpu_memory_bytes", () => {
  const base = { weightBytes: 100 * MiB, scratchBytes: 20 * MiB };
  assertEquals(kvCacheBudget(base), { bytes: DEFAULT_KV_CACHE_BYTES, source: "default" });
  assertEquals(kvCacheBudget({ ...base, kvCacheBytes: 8 * MiB }), { bytes: 8 * MiB, source: "kv_cache_bytes" });
  assertEquals(kvCacheBudget({ ...base, gpuMemoryBytes: 1024 * MiB }), { bytes: 904 * MiB, source: "gpu_memory_bytes" });
  // kvCacheBytes within what is left wins; beyond it, what is left.
  assertEquals(kvCacheBudget({ ...base, gpuMemoryBytes: 1024 * MiB, kvCacheBytes: 64 * MiB }), { bytes: 64 * MiB, source: "kv_cache_bytes" });
  assertEquals(kvCacheBudget({ ...base, gpuMemoryBytes: 200 * MiB, kvCacheBytes: 512 * MiB }), { bytes: 80 * MiB, source: "gpu_memory_bytes" });
  const e = assertThrows(() => kvCacheBudget({ ...base, gpuMemoryBytes: 110 * MiB }), KvBudgetError);
  assert(e instanceof LlmError && e.code === "device_limit", String(e));
  // An MTP head loaded after the cache is sized: left out of the budget too.
  assertEquals(kvCacheBudget({ ...base, gpuMemoryBytes: 1024 * MiB, headBytes: 4 * MiB }), { bytes: 900 * MiB, source: "gpu_memory_bytes" });
  const head = assertThrows(() => kvCacheBudget({ ...base, gpuMemoryBytes: 122 * MiB, headBytes: 2 * MiB }), KvBudgetError);
  assert(/MTP head's 2\.0 MiB/.test(head.message), head.message);
});

const parse = (...argv: string[]) => parseServeArgs(argv, () => undefined)!;

test("kv budget: --gpu-memory-bytes and --kv-cache-bytes take byte counts with binary suffixes", () => {
  const o = parse("--gpu-memory-bytes", "8G", "--kv-cache-bytes", "512MiB");
  assertEquals([o.gpuMemoryBytes, o.kvCacheBytes], [8 * 1024 * MiB, 512 * MiB]);
  assertEquals(parse("--kv-cache-bytes=1048576").kvCacheBytes, MiB);
  assertEquals(parse().gpuMemoryBytes, undefined);
  for (const bad of ["0", "1.5G", "8T", "-1", "lots"]) assertThrows(() => parse("--gpu-memory-bytes", bad), UsageError);
});

test("kv budget: on gpt-oss-tiny the cache gets what all the experts' weights leave; engine info says so", async () => {
  const gpu = await createGpu();
  try {
    const dir = modelDir("gpt-oss-tiny");
    const options = { gpu, maxTokens: 32, maxSeqs: 4, blockSize: 16 };
    const probe = await ModelRunner.load(dir, options);
    const spec = probe.spec;
    const moe = spec.moe!;
    const mem = probe.memory!;
    const blockBytes = KvCache.blockBytes({ ...probe.cache.options, numLayers: attentionLayers(spec).length });
    probe.close();
    // Every expert of every sparse layer, f16: gate|up [2I x H] and down [H x I] each.
    const sparse = moe.sparseLayers.filter((s) => s).length;
    const I = moe.expertIntermediateSize;
    assertEquals(mem.expertBytes, sparse * moe.numExperts * (2 * I * spec.hiddenSize + spec.hiddenSize * I) * 2);
    assert(mem.weightBytes > mem.expertBytes, "dense tensors come on top of the experts");
    assertEquals(mem.kvBudget?.source, "default");

    // A budget that leaves 40 blocks after the weights and the step's buffers.
    const scratch = stepScratchBytes(spec, { maxTokens: 32, maxLogitRows: 4 });
    const gpuMemoryBytes = mem.weightBytes + scratch + 40 * blockBytes + blockBytes / 2;
    const runner = await ModelRunner.load(dir, { ...options, gpuMemoryBytes });
    assertEquals(runner.cache.options.numBlocks, 40);
    assertEquals(runner.memory!.kvCacheBytes, 40 * blockBytes);
    const engine = Engine.start(runner);
    try {
      assertEquals(engine.info.memory, {
        weightBytes: mem.weightBytes,
        expertBytes: mem.expertBytes,
        kvCacheBytes: 40 * blockBytes,
        kvBudget: "gpu_memory_bytes",
        gpuMemoryBytes,
      });
      assertEquals(engine.info.kvBlocksTotal, 40);
    } finally {
      await engine.close();
    }
    // A budget that only the experts overflow: the dense weights would fit, all of them do not.
    const tooSmall = mem.weightBytes - mem.expertBytes + scratch + 40 * blockBytes;
    const err = await ModelRunner.load(dir, { ...options, gpuMemoryBytes: tooSmall }).then(() => null, (e) => e);
    assert(err instanceof KvBudgetError && err.code === "device_limit", String(err));
  } finally {
    gpu.device.destroy();
  }
});
