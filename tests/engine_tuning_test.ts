/**
 * The engine's tuning options reach it from every entry point: `--kernel-family`, `--kv-dtype`
 * and `--quantized-activations` in serve.ts and the CLI (bad values are usage errors naming the
 * flag), `kernelFamily` / `kvDtype` in `createEngine`; the engine reports what it runs
 * (`info`, serve.ts's `vllm:cache_config_info`).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { testServer } from "./helpers/server.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { createEngine } from "../mod.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const env = () => undefined;

test("serve args: --kernel-family, --kv-dtype, --quantized-activations; bad values name the flag", () => {
  assertEquals(parseServeArgs([], env)!.tuning, {
    kernelFamily: undefined,
    kvDtype: undefined,
    quantizedActivations: undefined,
    allowFallbackAdapter: undefined,
    pooling: undefined,
    speculative: undefined,
  });
  const o = parseServeArgs([
    "--kernel-family",
    "gpu",
    "--kv-dtype=f32",
    "--quantized-activations",
    "--quantization",
    "q8_0",
  ], env)!;
  assertEquals(o.tuning, {
    kernelFamily: "gpu",
    kvDtype: "f32",
    quantizedActivations: true,
    allowFallbackAdapter: undefined,
    pooling: undefined,
    speculative: undefined,
  });
  assertEquals(o.quantization, "q8_0");
  let e = assertThrows(() => parseServeArgs(["--kernel-family", "npu"], env), UsageError);
  assert(e.message.includes("--kernel-family must be one of cpu, gpu, got npu"), e.message);
  e = assertThrows(() => parseServeArgs(["--kv-dtype", "f8"], env), UsageError);
  assert(e.message.includes("--kv-dtype must be one of f16, f32"), e.message);
});

test("createEngine: info reports the kernel family and KV type asked for", async () => {
  for (const [kernelFamily, kvDtype] of [["gpu", "f32"], ["cpu", "f16"]] as const) {
    const engine = await createEngine({
      model: modelDir("stories260K"),
      maxSeqs: 2,
      kernelFamily,
      kvDtype,
    });
    try {
      assertEquals([engine.info.kernelFamily, engine.info.kvDtype], [kernelFamily, kvDtype]);
      const r = await engine.generate({ prompt: "Once upon a time", maxTokens: 4, temperature: 0 });
      assertEquals(r.ids.length, 4);
    } finally {
      await engine.close();
    }
  }
});

test("serve.ts: tuning options reach the engine (cache_dtype in vllm:cache_config_info)", async () => {
  const s = await testServer("stories260K", { tuning: { kernelFamily: "gpu", kvDtype: "f32" } });
  try {
    const text = await (await fetch(`${s.base}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith("vllm:cache_config_info{"));
    assert(line?.includes('cache_dtype="f32"'), line ?? text.slice(0, 500));
  } finally {
    await s.close();
  }
});

test("cli generate: --kernel-family, --kv-dtype and --quantized-activations run; a bad value is a usage error", async () => {
  const model = modelDir("stories260K");
  const run = await sys.runScript(MAIN, [
    "generate",
    "--model",
    model,
    "--prompt",
    "Once upon a time",
    "--max-tokens",
    "4",
    "--temperature",
    "0",
    "--json",
    "--kernel-family",
    "gpu",
    "--kv-dtype",
    "f32",
    "--quantization",
    "q8_0",
    "--quantized-activations",
  ]);
  assertEquals(run.code, 0, run.stderr);
  assertEquals(JSON.parse(run.stdout).ids.length, 4);
  const bad = await sys.runScript(MAIN, [
    "generate",
    "--model",
    model,
    "--prompt",
    "x",
    "--kv-dtype",
    "bf16",
  ]);
  assertEquals(bad.code, 2);
  assert(bad.stderr.includes("--kv-dtype must be one of f16, f32, got bf16"), bad.stderr);
});
