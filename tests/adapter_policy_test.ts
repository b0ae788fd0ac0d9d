/**
 * Which adapters are used: GPUs and CPU Vulkan drivers (lavapipe, also a "fallback adapter"
 * to WebGPU) by default, OpenGL and other software fallbacks only with allowFallbackAdapter;
 * the decision over adapter-info cases, and for real in a subprocess whose Vulkan loader
 * finds no driver (wgpu's OpenGL fallback).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { type AdapterFacts, judgeAdapter } from "../src/gpu/adapter_policy.ts";
import { modelDir } from "./helpers/reference.ts";
import { createGpu, FallbackAdapterError } from "../src/gpu/device.ts";

const PROBE = new URL("./helpers/adapter_probe.ts", import.meta.url).pathname;
const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
/** A Vulkan loader that finds no driver: wgpu falls back to OpenGL, Dawn finds nothing. */
const NO_VULKAN = { VK_ICD_FILENAMES: "/nonexistent/icd.json" };

const LLVMPIPE = "llvmpipe (LLVM 15.0.6, 256 bits)";
const facts = (f: Partial<AdapterFacts>): AdapterFacts => ({ description: "", vendor: "", architecture: "", device: "", isFallbackAdapter: false, backend: "vulkan", ...f });

test("adapter policy: lavapipe and GPUs are used; OpenGL and software fallbacks only when allowed", () => {
  const cases: [string, AdapterFacts, string][] = [
    // Deno (wgpu) on lavapipe: a fallback adapter by WebGPU's definition, the CPU Vulkan driver here.
    ["wgpu lavapipe", facts({ description: LLVMPIPE, vendor: "65541", device: "0", isFallbackAdapter: true }), "cpu-vulkan"],
    // Bun (Dawn) on lavapipe.
    ["dawn lavapipe", facts({ description: "llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1", vendor: "mesa", architecture: "software", device: "llvmpipe-llvm-15-0-6-256-bits-", isFallbackAdapter: true }), "cpu-vulkan"],
    ["swiftshader", facts({ description: "SwiftShader Device (Subzero)", vendor: "google", isFallbackAdapter: true }), "cpu-vulkan"],
    ["gpu", facts({ description: "NVIDIA H100 80GB HBM3", vendor: "nvidia" }), "gpu"],
    ["metal gpu", facts({ description: "Apple M2", backend: "metal" }), "gpu"],
    // wgpu's fallback without a Vulkan driver: Mesa's llvmpipe again, but through OpenGL.
    ["wgpu gl", facts({ description: LLVMPIPE, vendor: "65541", device: "0", isFallbackAdapter: true, backend: "gl" }), "gl"],
    ["angle", facts({ description: "ANGLE (Intel, Vulkan 1.3)", backend: "unknown" }), "gl"],
    // The llvmpipe name on an unknown backend may be the GL renderer: not trusted as Vulkan.
    ["llvmpipe, backend unknown", facts({ description: LLVMPIPE, isFallbackAdapter: true, backend: "unknown" }), "software"],
    ["warp", facts({ description: "Microsoft Basic Render Driver", isFallbackAdapter: true, backend: "d3d12" }), "software"],
  ];
  for (const [name, f, kind] of cases) {
    const strict = judgeAdapter(f, false);
    const allowed = judgeAdapter(f, true);
    assertEquals(strict.kind, kind, name);
    assertEquals(allowed.refusal, null, name);
    assert(strict.label.startsWith(f.description), `${name}: ${strict.label}`);
    if (kind === "gpu" || kind === "cpu-vulkan") {
      assertEquals(strict.refusal, null, name);
    } else {
      assert(strict.refusal?.includes("mesa-vulkan-drivers") && strict.refusal.includes("--allow-fallback-adapter"), `${name}: ${strict.refusal}`);
    }
  }
  assertEquals(judgeAdapter(cases[0][1], false).label, `${LLVMPIPE} (Vulkan, CPU Vulkan driver)`);
  assertEquals(judgeAdapter(cases[5][1], true).label, `${LLVMPIPE} (OpenGL, OpenGL fallback adapter)`);
});

test("adapter: createGpu refuses a simulated OpenGL or software adapter with FallbackAdapterError", async () => {
  const fake = (info: Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean }) =>
    ({ requestAdapter: () => Promise.resolve({ info, limits: {}, features: new Set(), requestDevice: () => Promise.reject(new Error("no device expected")) }) }) as unknown as GPU;
  for (const info of [{ description: "ANGLE (Mesa, llvmpipe, OpenGL 4.5)", vendor: "mesa" }, { description: "Microsoft Basic Render Driver", isFallbackAdapter: true }]) {
    const e = await assertRejects(() => createGpu({ gpu: fake(info) }), FallbackAdapterError);
    assertEquals(e.code, "fallback_adapter");
    assert(e.message.includes(info.description) && e.message.includes("--allow-fallback-adapter"), e.message);
    // Allowed, it goes on to request the device.
    const allowed = await assertRejects(() => createGpu({ gpu: fake(info), allowFallbackAdapter: true }), Error);
    assertEquals(allowed.message, "no device expected");
  }
});

test("adapter: the CPU Vulkan driver here is used and named", async () => {
  const r = await sys.runScript(PROBE, []);
  const out = JSON.parse(r.stdout);
  assert(out.ok, r.stdout);
  assertEquals(out.kind, "cpu-vulkan");
  assert(out.description.includes("(Vulkan, CPU Vulkan driver)"), out.description);
});

test("adapter: with no Vulkan driver the CLI fails at once with the hint, not on OpenGL", async () => {
  // Deno: wgpu would take its OpenGL fallback; it is never requested. Bun: Dawn finds none.
  const r = await sys.runScript(PROBE, [], { env: NO_VULKAN });
  const out = JSON.parse(r.stdout);
  assertEquals(out.ok, false, r.stdout);
  assertEquals(out.code, "no_gpu_adapter");
  assert(out.message.includes("mesa-vulkan-drivers") && out.message.includes("--allow-fallback-adapter"), out.message);
  const t0 = performance.now();
  const gen = await sys.runScript(MAIN, ["generate", "--model", modelDir("stories260K"), "--prompt", "Once", "--max-tokens", "3"], { env: NO_VULKAN });
  assertEquals(gen.code, 1, gen.stderr);
  assert(gen.stderr.includes("NoGpuAdapterError") && gen.stderr.includes("mesa-vulkan-drivers"), gen.stderr);
  assert(performance.now() - t0 < 60_000, "the CLI took a minute to refuse");
});

if (sys.RUNTIME === "deno") {
  test("adapter (Deno): an OpenGL adapter is refused with a named error unless allowed", async () => {
    const gl = { ...NO_VULKAN, DENO_WEBGPU_BACKEND: "gl" };
    const refused = JSON.parse((await sys.runScript(PROBE, [], { env: gl })).stdout);
    assertEquals([refused.ok, refused.name, refused.code], [false, "FallbackAdapterError", "fallback_adapter"]);
    assert(refused.message.includes("OpenGL fallback adapter") && refused.message.includes("mesa-vulkan-drivers"), refused.message);
    const allowed = JSON.parse((await sys.runScript(PROBE, ["--allow-fallback-adapter"], { env: gl })).stdout);
    assertEquals([allowed.ok, allowed.kind], [true, "gl"]);
    // Allowed without a backend list: wgpu may pick OpenGL, so the adapter is a fallback of unknown backend.
    const any = JSON.parse((await sys.runScript(PROBE, ["--allow-fallback-adapter"], { env: NO_VULKAN })).stdout);
    assertEquals([any.ok, any.kind], [true, "software"]);
  });
}
