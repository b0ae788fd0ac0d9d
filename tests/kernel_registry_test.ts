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
  const common = (await loadKernelSources([])).get("common")!;
  // No header word index written by hand: every step[...] access goes through a constant.
  for (const m of common.matchAll(/step\[([^\]]*)\]/g)) {
    assert(!/^\d/.test(m[1].trim()), `common.wgsl indexes the header by hand: step[${m[1]}]`);
  }
});

test("registry: every descriptor compiles in every variant the forward pass uses, binding names as declared", async () => {
  const gpu = await createGpu();
  try {
    const cache = new PipelineCache(gpu.device, await loadKernelSources(K.KERNEL_FILES));
    const variants: [KernelDescriptor<any, string>, Record<string, number | boolean>[]][] = [
      [K.EMBED, [{ F16: true }, { F16: false }]],
      [K.RMSNORM, [{ ADD: false, GATHER: false }, { ADD: true, GATHER: false }, { ADD: false, GATHER: true }]],
      [K.MATMUL, [1, 8].flatMap((TM) => [
        { F16: true, VEC: true, TM, ACCUM: false, BIAS: false },
        { F16: false, VEC: false, TM, ACCUM: true, BIAS: true },
      ])],
      [K.ROPE_KV, [{ QK_NORM: false, HALF: 16 }, { QK_NORM: true, HALF: 32 }]],
      [K.PAGED_ATTENTION, [{ GROUP: 2, HEAD_DIM: 32 }]],
      [K.EAGER_ATTENTION, ["PHASE_SCORES", "PHASE_SOFTMAX", "PHASE_VALUES"].map((p) => ({
        PHASE_SCORES: false,
        PHASE_SOFTMAX: false,
        PHASE_VALUES: false,
        [p]: true,
      }))],
      [K.ACT_MUL, [{ GELU_TANH: false }, { GELU_TANH: true }]],
      [K.SOFTCAP, [{}]],
      [K.SAMPLE, [{}]],
      [K.MASK, [{}]],
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
    const softcap = cache.get(K.SOFTCAP, {});
    const x = gpu.device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    assertThrows(() => softcap.packParams({ cols: 1, cap: 2 }), KernelCompileError, "missing parameter rows_kind");
    assertThrows(() => softcap.packParams({ cols: 1, cap: 2, rows_kind: 0, extra: 1 }), KernelCompileError, "unknown parameters extra");
    assertThrows(() => softcap.bindGroup("t", { x } as never), KernelCompileError, "no resource for binding");
    const p = softcap.uniform({ cols: 1, cap: 2, rows_kind: 0 });
    assertThrows(() => softcap.bindGroup("t", { step: x, p, x, y: x } as never), KernelCompileError, "declares no binding y");
    const packed = new DataView(softcap.packParams({ cols: 7, cap: 2.5, rows_kind: 1 }));
    assertEquals([packed.getUint32(0, true), packed.getFloat32(4, true), packed.getUint32(8, true)], [7, 2.5, 1]);
    // A descriptor that does not name a binding its file declares is refused.
    assertThrows(() => cache.get({ file: "softcap", bindings: [] }, {}), KernelCompileError, "not in the descriptor");
  } finally {
    gpu.device.destroy();
  }
});
