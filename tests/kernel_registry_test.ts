/**
 * The kernel registry: bindings and parameters are read from the WGSL and used by name, every
 * descriptor matches its file, and the layout constants reach the kernels from TypeScript.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { createGpu } from "../src/gpu/device.ts";
import {
  KernelCompileError,
  type KernelDescriptor,
  loadKernelSources,
  parseBindings,
  parseParams,
  PipelineCache,
} from "../src/kernels/registry.ts";
import * as K from "../src/kernels/descriptors.ts";
import { layoutWgsl, SAMPLING_ROW, STEP_HEADER } from "../src/kernels/layout.ts";
import { preprocess } from "../src/kernels/preprocess.ts";

test("registry: bindings and Params fields are parsed from the source", () => {
  const code = `
@group(0) @binding(0) var<storage, read> step: array<u32>;
struct Params { n: u32, scale: f32, off: i32 }
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;`;
  assertEquals(parseBindings(code), [
    { name: "step", index: 0, kind: "meta" },
    { name: "p", index: 1, kind: "uniform" },
    { name: "x", index: 2, kind: "read-only-storage" },
    { name: "out", index: 3, kind: "storage" },
  ]);
  assertEquals(parseParams(code), [{ name: "n", type: "u32" }, { name: "scale", type: "f32" }, { name: "off", type: "i32" }]);
  assertThrows(() => parseBindings(code.replace("@binding(2)", "@binding(5)")), Error, "without gaps");
});

test("preprocess: conditionals, includes and substitutions", () => {
  const src = "#if A\na={{N}}\n#else\nnot a\n#endif\n#ifnot A\nnot a either\n#endif\n#include inc";
  assertEquals(preprocess(src, { A: true, N: 3 }, () => "inc"), "a=3\ninc");
  assertEquals(preprocess(src, { A: false, N: 1.5 }, () => "x"), "not a\nnot a either\nx");
  assertThrows(() => preprocess("#if A\n", {}, () => ""), Error, "unterminated");
  assertThrows(() => preprocess("{{MISSING}}", {}, () => ""), Error, "undefined");
});

test("layout: every header field and sampling word reaches WGSL as a constant, and common.wgsl uses them", async () => {
  const wgsl = layoutWgsl();
  for (const [name, index] of Object.entries(STEP_HEADER)) {
    const constant = `STEP_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
    assert(wgsl.includes(`const ${constant}: u32 = ${index}u;`), `${constant} missing`);
  }
  SAMPLING_ROW.forEach(([name], k) => {
    assert(wgsl.includes(`const ROW_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}: u32 = ${k}u;`), `${name} missing`);
  });
  // No header word index written by hand, in any kernel: every step[...] access goes through
  // a constant (common.wgsl's accessors).
  const sources = await loadKernelSources(K.KERNEL_FILES);
  assert(sources.has("matmul_epilogue"), "included files are loaded");
  for (const [file, code] of sources) {
    for (const m of code.matchAll(/step\[([^\]]*)\]/g)) {
      assert(!/^\d/.test(m[1].trim()), `${file}.wgsl indexes the header by hand: step[${m[1]}]`);
    }
  }
});

test("registry: every descriptor compiles in every variant the forward pass uses, binding names as declared", async () => {
  const gpu = await createGpu();
  try {
    const cache = new PipelineCache(gpu.device, await loadKernelSources(K.KERNEL_FILES));
    const off = {
      W_F32: false,
      XVEC: true,
      NORM: false,
      GAMMA: false,
      ACCUM: false,
      GLU: false,
      GELU: false,
      ROPE: false,
      KV_F16: false,
      BIAS: false,
      SOFTCAP: false,
      GATHER: false,
    };
    // Every optional binding of the matmuls in some variant, in every combination order.
    const matmuls = [1, 8].flatMap((TM) => [
      { ...off, TM, WG: 8 },
      { ...off, TM, WG: 64, W_F32: true, XVEC: false, NORM: true, GAMMA: true, BIAS: true, ROPE: true, KV_F16: true },
      { ...off, TM, WG: 64, ACCUM: true, BIAS: true, GLU: true, GELU: true },
      { ...off, TM, WG: 64, NORM: true, GAMMA: true, GATHER: true, SOFTCAP: true, ROPE: true },
    ]);
    const variants: [KernelDescriptor<any, string>, Record<string, number | boolean>[]][] = [
      [K.EMBED, [{ F16: true, COLUMN_BLOCKS: true }, { F16: false, COLUMN_BLOCKS: false }]],
      [K.RMSNORM, [{ AT_SLOT: false }, { AT_SLOT: true }]],
      [K.GEMV_C8, matmuls],
      [K.GEMV_WG, matmuls],
      [K.GEMM_TILED, matmuls],
      [K.ROPE_KV, [{ QK_NORM: false, HALF: 16, KV_F16: false, PARTIAL: false, ROT_HALF: 16 }, { QK_NORM: true, HALF: 32, KV_F16: true, PARTIAL: true, ROT_HALF: 8 }]],
      [K.DELTANET_CONV, [{ CONV_K: 4 }]],
      [K.DELTANET_RULE, [{ DK: 32, DV: 32, CHUNKED: false, CHUNK: 0 }, { DK: 128, DV: 64, CHUNKED: true, CHUNK: 8 }]],
      [K.ATTN_GATE, [{}]],
      [K.ATTENTION_LANES, [
        { GROUP: 2, HEAD_DIM: 32, TQ: 1, WG: 8, KV_F16: false, SINKS: false },
        { GROUP: 3, HEAD_DIM: 64, TQ: 4, WG: 4, KV_F16: true, SINKS: true },
      ]],
      [K.ATTENTION_COMBINE, [{ HEAD_DIM: 64, SINKS: false }, { HEAD_DIM: 64, SINKS: true }]],
      [K.EAGER_ATTENTION, ["PHASE_SCORES", "PHASE_SOFTMAX", "PHASE_VALUES"].map((p) => ({
        PHASE_SCORES: false,
        PHASE_SOFTMAX: false,
        PHASE_VALUES: false,
        KV_F16: p === "PHASE_VALUES",
        SINKS: p === "PHASE_SOFTMAX",
        [p]: true,
      }))],
      [K.SAMPLE, [{}]],
      [K.MASK, [{}]],
      [K.POOL_HIDDEN, [{}]],
      [K.MTP_INPUT, [{}]],
    ];
    assertEquals(variants.map(([d]) => d.file).sort(), [...K.KERNEL_FILES].sort());
    for (const [desc, defines] of variants) {
      const seen = new Set<string>();
      for (const d of defines) {
        const k = cache.get(desc, d);
        assertEquals(k.bindings[0].name, "step", `${k.key}: the step metadata is binding 0`);
        assert(k.params.length > 0 && k.bindings.some((b) => b.name === "p"), `${k.key}: no Params`);
        for (const b of k.bindings) seen.add(b.name);
      }
      // Every name the descriptor declares is used by some variant.
      assertEquals([...seen].filter((n) => n !== "step" && n !== "p").sort(), [...desc.bindings].sort(), desc.file);
    }
    // Binding and parameter names are checked.
    const norm = cache.get(K.RMSNORM, { AT_SLOT: false });
    const x = gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    assertThrows(() => norm.packParams({ dim: 1 }), KernelCompileError, "missing parameter eps");
    assertThrows(() => norm.packParams({ dim: 1, eps: 2, extra: 1 }), KernelCompileError, "unknown parameters extra");
    assertThrows(() => norm.bindGroup("t", { x } as never), KernelCompileError, "no resource for binding");
    const p = norm.uniform({ dim: 1, eps: 2 });
    assertThrows(() => norm.bindGroup("t", { step: x, p, x, gamma: x, out: x, y: x } as never), KernelCompileError, "declares no binding y");
    const packed = new DataView(norm.packParams({ dim: 7, eps: 2.5 }));
    assertEquals([packed.getUint32(0, true), packed.getFloat32(4, true)], [7, 2.5]);
    // The matmuls' optional bindings are numbered after `out` in order, without gaps.
    const full = cache.get(K.GEMV_C8, matmuls[1]);
    assertEquals(full.bindings.map((b) => b.name), ["step", "p", "x", "w", "out", "gamma", "bias", "inv_freq", "k_cache", "v_cache"]);
    assertEquals(cache.get(K.GEMV_C8, matmuls[2]).bindings.map((b) => b.name), ["step", "p", "x", "w", "out", "bias"]);
    // A descriptor that does not name a binding its file declares is refused.
    assertThrows(() => cache.get({ file: "rmsnorm", bindings: [] }, {}), KernelCompileError, "not in the descriptor");
  } finally {
    gpu.device.destroy();
  }
});
