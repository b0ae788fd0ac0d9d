/**
 * Mixture-of-experts layers (src/runner/moe_op.ts, kernels/moe_*.wgsl).
 *
 * Layer level, against a plain TypeScript reference of the routing and the experts (f32, f16,
 * and Q8_0 / Q4_0 / MXFP4 expert weights, the reference on their dequantized values; MXFP4 as
 * the hub stores it, decoded here independently of the kernels' repacking), with and without
 * Qwen3.5-MoE's sigmoid-gated shared expert (run by the dense matmuls between the experts and
 * the combine, as the forward pass runs it): random routing; a step where one expert receives every token and the
 * others none; and a decode step of one token, whose tile table names exactly its k experts,
 * so the step reads k/E of the expert weights (measured from the GPU's own tile table).
 *
 * Model level (qwen3-moe-tiny, and gpt-oss-mxfp4-tiny for sinks, sliding windows and MXFP4
 * experts; both kernel families): one step of 8 rows, 4 prefill chunks and 4 decode rows
 * whose tokens route to different experts, gives every row the bits of its solo run. (Golden logits and greedy ids: reference_test.ts; ragged batches:
 * ragged_batch_test.ts.)
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { createGpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { MOE_KERNEL_FILES } from "../src/kernels/moe_descriptors.ts";
import { KERNEL_FILES } from "../src/kernels/descriptors.ts";
import { createMoeScratch, moeLayerOps } from "../src/runner/moe_op.ts";
import { matmulOp } from "../src/runner/matmul_op.ts";
import { uploadMatrix } from "../src/model/weights.ts";
import type { MoeSpec } from "../src/model/moe_config.ts";
import { type ExpertPart, type MoeLayerWeights, packExpert, quantExpertBytes, quantizeExpert } from "../src/model/moe_weights.ts";
import { mxfp4ColumnBlockBytes, packMxfp4ColumnBlocks } from "../src/model/quant/mxfp4_c8.ts";
import { quantizeRows } from "../src/model/quant/quantized_source.ts";
import { dequantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { dequantizeQ4_0 } from "../src/model/quant/q4_0.ts";
import { gluColumns } from "../src/model/weight_layout.ts";
import { rmsNormRef, silu } from "./helpers/cpu_reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, type SequenceChunk } from "../src/runner/step_meta.ts";
import { BlockManager } from "../src/scheduler/block_manager.ts";
import { KERNEL_FAMILIES, type KernelFamily } from "../src/types/api.ts";
import { loadGolden, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { STEP_HEADER, STEP_HEADER_WORDS } from "../src/kernels/layout.ts";
import { Engine } from "../src/engine/engine.ts";
import { parameterCount } from "../src/model/parameters.ts";

const H = 64;
const I = 32;
const E = 8;
const K = 2;
const EPS = 1e-6;
const SPEC: MoeSpec = { router: "softmax_topk", experts: "qwen", numExperts: E, topK: K, normTopkProb: true, expertIntermediateSize: I, sparseLayers: [true] };
/** The shared expert's width (Qwen3.5-MoE), unlike the routed experts'. */
const S = 48;
const SHARED_SPEC: MoeSpec = { ...SPEC, sharedExpertIntermediateSize: S };

/** A shared expert: gate|up [2S, H] (gate rows then up rows), down [H, S], its gate row [H]. */
interface SharedRef {
  gateUp: Float32Array<ArrayBuffer>;
  down: Float32Array<ArrayBuffer>;
  gate: Float32Array<ArrayBuffer>;
}

/** SwiGLU of one normed row: down(silu(gate . row) * (up . row)), width `width`, weights at `g`/`d` offsets. */
function swiglu(row: ArrayLike<number>, gateUp: Float32Array, down: Float32Array, width: number, g: number, d: number): Float64Array {
  const h = Array.from({ length: width }, (_, j) => {
    let a = 0, u = 0;
    for (let i = 0; i < H; i++) {
      a += row[i] * gateUp[g + j * H + i];
      u += row[i] * gateUp[g + (width + j) * H + i];
    }
    return silu(a) * u;
  });
  const y = new Float64Array(H);
  for (let c = 0; c < H; c++) for (let j = 0; j < width; j++) y[c] += h[j] * down[d + c * width + j];
  return y;
}

/** Deterministic values in [-1, 1). */
function random(n: number, seed: number): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/**
 * The reference: x + (sum over the top-k experts of weight * SwiGLU expert(rmsnorm(x))
 * [+ sigmoid(shared_gate . rmsnorm(x)) * SwiGLU shared(rmsnorm(x))]), as transformers'
 * Qwen3MoeSparseMoeBlock / Qwen3_5MoeSparseMoeBlock compute it.
 */
function moeRef(x: Float32Array, gamma: Float32Array, router: Float32Array, gateUp: Float32Array, down: Float32Array, T: number, shared?: SharedRef) {
  const xn = rmsNormRef(x, gamma, T, H, EPS);
  const out = Float32Array.from(x);
  const ids: number[] = [];
  for (let t = 0; t < T; t++) {
    const row = xn.subarray(t * H, (t + 1) * H);
    const ffn = new Float64Array(H);
    const logits = Array.from({ length: E }, (_, e) => row.reduce((a, v, i) => a + v * router[e * H + i], 0));
    const m = Math.max(...logits);
    const total = logits.reduce((a, l) => a + Math.exp(l - m), 0);
    const order = logits.map((l, e) => ({ l, e })).sort((a, b) => b.l - a.l || a.e - b.e).slice(0, K);
    const picked = order.reduce((a, o) => a + Math.exp(o.l - m) / total, 0);
    for (const { l, e } of order) {
      ids.push(e);
      const w = Math.exp(l - m) / total / picked;
      const y = swiglu(row, gateUp, down, I, e * 2 * I * H, e * H * I);
      for (let c = 0; c < H; c++) ffn[c] += w * y[c];
    }
    if (shared) {
      const logit = row.reduce((a, v, i) => a + v * shared.gate[i], 0);
      const g = 1 / (1 + Math.exp(-logit));
      const y = swiglu(row, shared.gateUp, shared.down, S, 0, 0);
      for (let c = 0; c < H; c++) ffn[c] += g * y[c];
    }
    for (let c = 0; c < H; c++) out[t * H + c] += ffn[c];
  }
  return { out, ids };
}

type ExpertDType = "f16" | "f32" | "q8_0" | "q4_0" | "mxfp4";
const QUANT_TYPE = { q8_0: "Q8_0", q4_0: "Q4_0" } as const;

const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
/**
 * Values in the hub's MXFP4 (per 32: an E8M0 scale 2^(s - 127) with 6 * 2^(s - 127) >= max |v|,
 * then the nearest E2M1 code, byte j holding values 2j (low nibble) and 2j + 1 (high)).
 */
function mxfp4(v: Float32Array): { blocks: Uint8Array<ArrayBuffer>; scales: Uint8Array<ArrayBuffer> } {
  const blocks = new Uint8Array(v.length / 2);
  const scales = new Uint8Array(v.length / 32);
  for (let b = 0; b < v.length / 32; b++) {
    const max = Math.max(...v.subarray(32 * b, 32 * b + 32).map(Math.abs));
    scales[b] = 127 + Math.ceil(Math.log2(max / 6));
    const scale = 2 ** (scales[b] - 127);
    for (let j = 0; j < 32; j++) {
      const x = v[32 * b + j] / scale;
      const code = E2M1.reduce((best, m, c) => Math.abs(Math.abs(x) - m) < Math.abs(Math.abs(x) - E2M1[best]) ? c : best, 0) | (x < 0 ? 8 : 0);
      blocks[16 * b + (j >> 1)] |= code << (4 * (j & 1));
    }
  }
  return { blocks, scales };
}

/** The hub's MXFP4 decoded: E2M1 code times 2^(scale - 127). */
function fromMxfp4(m: { blocks: Uint8Array; scales: Uint8Array }): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: 2 * m.blocks.length }, (_, i) => {
    const code = (m.blocks[i >> 1] >> (4 * (i & 1))) & 15;
    return (code & 8 ? -1 : 1) * E2M1[code & 7] * 2 ** (m.scales[i >> 5] - 127);
  });
}

/** The values the kernels compute with: f16-rounded, or quantized along K (rows of `k`) and dequantized. */
function roundTrip(v: Float32Array<ArrayBuffer>, dtype: ExpertDType): Float32Array<ArrayBuffer> {
  if (dtype === "f32") return v;
  if (dtype === "f16") return Float32Array.from(Float16Array.from(v));
  if (dtype === "mxfp4") return fromMxfp4(mxfp4(v));
  const blocks = quantizeRows(QUANT_TYPE[dtype], v);
  const out = new Float32Array(v.length);
  (dtype === "q8_0" ? dequantizeQ8_0 : dequantizeQ4_0)(blocks, 0, v.length / 32, out);
  return out;
}

/**
 * Runs one sparse layer on `T` tokens; returns the new residual, the tile table, one expert's
 * bytes and the bytes of all expert buffers.
 */
async function runLayer(
  device: GPUDevice,
  pipelines: PipelineCache,
  dtype: ExpertDType,
  layout: MoeLayerWeights["layout"],
  family: KernelFamily,
  data: Record<"x" | "gamma" | "router" | "gateUp" | "down", Float32Array<ArrayBuffer>>,
  T: number,
  shared?: SharedRef,
): Promise<{ out: Float32Array; tiles: number[][]; expertBytes: number; allExpertBytes: number }> {
  const spec = shared ? SHARED_SPEC : SPEC;
  const owned: GPUBuffer[] = [];
  const buffer = (bytes: number, usage = 0) => {
    const b = device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | usage });
    owned.push(b);
    return b;
  };
  const put = (v: ArrayBufferView<ArrayBuffer>, bytes = v.byteLength) => {
    const b = buffer(bytes);
    device.queue.writeBuffer(b, 0, v);
    return b;
  };
  // Experts in two parts (0..4 and 5..7), as a layer over the binding limit is split.
  // Column blocks: each expert packed as the loader packs it (gate|up in GLU order).
  const weights = (v: Float32Array<ArrayBuffer>, rows: number, k: number, glu: boolean): ExpertPart[] => {
    const per = rows * k;
    if (dtype === "mxfp4") {
      // The hub's bytes of each expert, repacked as the loader repacks them.
      const words = mxfp4ColumnBlockBytes(rows, k) / 4;
      const hub = mxfp4(v);
      const split = (first: number, count: number) => {
        const out = new Uint32Array(count * words);
        for (let e = first; e < first + count; e++) {
          const one = { rows, k, blocks: hub.blocks.subarray(e * per / 2, (e + 1) * per / 2), scales: hub.scales.subarray(e * per / 32, (e + 1) * per / 32) };
          out.set(packMxfp4ColumnBlocks(one, glu ? gluColumns(I) : undefined), (e - first) * words);
        }
        return { buffer: put(out), first, count };
      };
      return [split(0, 5), split(5, 3)];
    }
    if (dtype === "q8_0" || dtype === "q4_0") {
      // Each expert quantized from the raw values and packed as the loader packs it.
      const words = quantExpertBytes(QUANT_TYPE[dtype], rows, k) / 4;
      const split = (first: number, count: number) => {
        const out = new Uint32Array(count * words);
        for (let e = first; e < first + count; e++) {
          out.set(quantizeExpert(v.subarray(e * per, (e + 1) * per), rows, k, QUANT_TYPE[dtype], glu ? gluColumns(I) : undefined), (e - first) * words);
        }
        return { buffer: put(out), first, count };
      };
      return [split(0, 5), split(5, 3)];
    }
    const split = (first: number, count: number) => {
      const out = new Float32Array(count * per);
      const halves = new Uint16Array(count * per);
      for (let e = first; e < first + count; e++) {
        const one = v.slice(e * per, (e + 1) * per);
        const packed = layout === "column_blocks" ? packExpert(one, rows, k, dtype, glu ? gluColumns(I) : undefined) : dtype === "f16" ? new Uint16Array(Float16Array.from(one).buffer) : one;
        (dtype === "f16" ? halves : out).set(packed, (e - first) * per);
      }
      return { buffer: put(dtype === "f16" ? halves : out), first, count };
    };
    return [split(0, 5), split(5, 3)];
  };
  // With a shared expert the router holds its gate as row E (as the loader uploads it).
  const router = shared ? Float32Array.from([...data.router, ...shared.gate]) : data.router;
  const w: MoeLayerWeights = {
    router: put(router),
    gateUp: weights(data.gateUp, 2 * I, H, true),
    down: weights(data.down, H, I, false),
    dtype,
    layout,
    expertBytes: dtype === "q8_0" || dtype === "q4_0"
      ? quantExpertBytes(QUANT_TYPE[dtype], 2 * I, H) + quantExpertBytes(QUANT_TYPE[dtype], H, I)
      : dtype === "mxfp4"
      ? mxfp4ColumnBlockBytes(2 * I, H) + mxfp4ColumnBlockBytes(H, I)
      : 3 * H * I * (dtype === "f16" ? 2 : 4),
    routerBias: null,
    gateUpBias: null,
    downBias: null,
  };
  const x = put(Float32Array.from(data.x));
  const gamma = put(data.gamma);
  const scratch = createMoeScratch(spec, H, 16, (_label, words, usage) => buffer(words * 4, usage));
  const meta = new Uint32Array(STEP_HEADER_WORDS);
  meta[STEP_HEADER.numTokens] = T;
  const step = put(meta);
  const { dispatches, combine, uniforms } = moeLayerOps(pipelines, spec, w, scratch, { x, gamma, eps: EPS, hiddenSize: H, family }, "moe");
  owned.push(...uniforms);
  const shape = { tokens: T, logitRows: 0, seqs: 1, maxQueryLen: T, maxContext: T };
  const stepBinding = { buffer: step, offset: 0, size: STEP_HEADER_WORDS * 4 };
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  for (const d of dispatches) {
    pass.setPipeline(d.kernel.pipeline);
    pass.setBindGroup(0, d.kernel.bindGroup(d.label, { ...d.resources, step: stepBinding }), [0]);
    if (d.indirect) pass.dispatchWorkgroupsIndirect(d.indirect.buffer, d.indirect.offset);
    else pass.dispatchWorkgroups(...d.grid(shape));
  }
  if (shared) {
    // The shared expert as the forward pass runs it: the family's dense matmuls on `xn`.
    const denseLayout = family === "cpu" ? "column_blocks" : "padded_rows";
    const host = (v: Float32Array<ArrayBuffer>, rows: number, cols: number) => ({ data: dtype === "f16" ? new Uint16Array(Float16Array.from(v).buffer) : v, rows, cols });
    const maxBinding = device.limits.maxStorageBufferBindingSize;
    const gateUpW = uploadMatrix(device, host(shared.gateUp, 2 * S, H), { layout: denseLayout, columns: gluColumns(S), maxBinding, label: "shared.gate_up" }).weight;
    const downW = uploadMatrix(device, host(shared.down, H, S), { layout: denseLayout, maxBinding, label: "shared.down" }).weight;
    owned.push(...[gateUpW, downW].flatMap((m) => m.parts.map((p) => p.buffer)));
    const ops = [
      matmulOp(pipelines, family, gateUpW, { x: scratch.xn, out: scratch.shared!.act, ldo: S, nOut: S, rows: "tokens", glu: { gelu: false } }, "shared.gate_up"),
      matmulOp(pipelines, family, downW, { x: scratch.shared!.act, out: scratch.shared!.y, ldo: H, nOut: H, rows: "tokens" }, "shared.down"),
    ];
    for (const op of ops) {
      owned.push(...op.uniforms);
      const v = op.variant(T);
      for (const part of op.parts) {
        pass.setPipeline(op.kernels[v].pipeline);
        pass.setBindGroup(0, op.kernels[0].bindGroup(part.label, { ...part.resources, step: stepBinding }), [0]);
        pass.dispatchWorkgroups(...part.grid(T, v));
      }
    }
  }
  pass.setPipeline(combine.kernel.pipeline);
  pass.setBindGroup(0, combine.kernel.bindGroup(combine.label, { ...combine.resources, step: stepBinding }), [0]);
  pass.dispatchWorkgroups(...combine.grid(shape));
  pass.end();
  const read = (src: GPUBuffer, bytes: number) => {
    const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    owned.push(staging);
    encoder.copyBufferToBuffer(src, 0, staging, 0, bytes);
    return staging;
  };
  const outStaging = read(x, T * H * 4);
  const argsStaging = read(scratch.args, 32);
  const tilesStaging = read(scratch.tiles, scratch.tiles.size);
  device.queue.submit([encoder.finish()]);
  await Promise.all([outStaging, argsStaging, tilesStaging].map((b) => b.mapAsync(GPUMapMode.READ)));
  const out = new Float32Array(outStaging.getMappedRange().slice(0));
  const nTiles = new Uint32Array(argsStaging.getMappedRange().slice(0))[1];
  const words = new Uint32Array(tilesStaging.getMappedRange().slice(0));
  const tiles = Array.from({ length: nTiles }, (_, n) => [words[3 * n], words[3 * n + 1], words[3 * n + 2]]);
  // Sizes as requested (the buffers round up to 16 bytes).
  const allExpertBytes = [...w.gateUp, ...w.down].reduce((n, p) => n + p.buffer.size, 0);
  for (const b of owned) b.destroy();
  return { out, tiles, expertBytes: w.expertBytes, allExpertBytes };
}

test("moe MXFP4 column blocks keep the hub's 4.25 bits a weight where K is a multiple of 64 (gpt-oss-20b's shapes); an odd K/32 pads its last tile's second half with zeros", () => {
  // gpt-oss-20b: hidden 2880, expert width 2880; gate|up [5760, 2880], down [2880, 2880].
  for (const [rows, k] of [[5760, 2880], [2880, 2880]]) assertEquals(mxfp4ColumnBlockBytes(rows, k), (rows * k) / 2 + (rows * k) / 32);
  const hub = mxfp4(random(8 * 96, 21));
  const words = packMxfp4ColumnBlocks({ rows: 8, k: 96, ...hub });
  assertEquals(words.length * 4, mxfp4ColumnBlockBytes(8, 96));
  // Tile 1 holds block 2 in its first half (scale word u32 0..1, codes words 1..8) and zeros after.
  const tile1 = words.subarray(68, 136);
  assert(tile1.subarray(0, 2).some((v) => v !== 0) && tile1.subarray(4, 36).some((v) => v !== 0));
  assertEquals([...tile1.subarray(2, 4), ...tile1.subarray(36)].filter((v) => v !== 0).length, 0);
  // Column 5's scale of block 2 and its codes of k 72..79 (the hub's u32 1 of that block).
  assertEquals((tile1[1] >> 8) & 255, hub.scales[5 * 3 + 2]);
  assertEquals(tile1[4 * (1 + 2 * 1 + 1) + 1], new DataView(hub.blocks.buffer).getUint32((5 * 3 + 2) * 16 + 4, true));
});

function relErr(a: Float32Array, b: Float32Array): number {
  return maxAbsDiff(a, b) / Math.max(...b.map(Math.abs));
}

test("moe layer: routing, grouped experts and weighted sum match a TypeScript reference (f32, f16, Q8_0, Q4_0 and MXFP4 experts); one expert takes every token, others none; a decode step reads k/E of the expert weights", async (t) => {
  const gpu = await createGpu();
  const pipelines = new PipelineCache(gpu.device, await loadKernelSources([...KERNEL_FILES, ...MOE_KERNEL_FILES]));
  try {
    const gamma = random(H, 1).map((v) => 1 + 0.2 * v);
    const gateUp = random(E * 2 * I * H, 2).map((v) => 0.2 * v);
    const down = random(E * H * I, 3).map((v) => 0.2 * v);
    const combos = [
      ["f32", "rows", "cpu"],
      ["f16", "rows", "cpu"],
      ["f32", "column_blocks", "cpu"],
      ["f16", "column_blocks", "cpu"],
      ["f32", "column_blocks", "gpu"],
      ["f16", "column_blocks", "gpu"],
      ["q8_0", "column_blocks", "cpu"],
      ["q4_0", "column_blocks", "cpu"],
      ["q8_0", "column_blocks", "gpu"],
      ["q4_0", "column_blocks", "gpu"],
      // MXFP4: gate|up's K (64) fills one tile of two 32-blocks, down's (32) half of one.
      ["mxfp4", "column_blocks", "cpu"],
      ["mxfp4", "column_blocks", "gpu"],
    ] as const;
    for (const [dtype, layout, family] of combos) {
      // The reference sees the weights the kernels compute with (f16-rounded; Q8_0 / Q4_0
      // quantized along each row's K and dequantized). The GPU gets the raw values.
      const base = { gamma, gateUp: roundTrip(gateUp, dtype), down: roundTrip(down, dtype) };
      // MXFP4 really moves the weights (the reference is not the raw values).
      if (dtype === "mxfp4") assert(relErr(base.down, down) > 1e-2, "MXFP4 should move the weights");
      const raw = { gamma, gateUp: dtype === "f16" ? base.gateUp : gateUp, down: dtype === "f16" ? base.down : down };
      await t.step(`${dtype} ${layout} experts (${family} kernels), random routing over 13 tokens`, async () => {
        const T = 13;
        const x = random(T * H, 4);
        const router = random(E * H, 5);
        const ref = moeRef(x, gamma, router, base.gateUp, base.down, T);
        const { out, tiles } = await runLayer(gpu.device, pipelines, dtype, layout, family, { ...raw, x, router }, T);
        const err = relErr(out, ref.out);
        assert(err < 1e-5, `relative error ${err}`);
        // The tile table covers each expert's assignments exactly once, in expert order.
        const counts = Array.from({ length: E }, (_, e) => ref.ids.filter((id) => id === e).length);
        for (let e = 0; e < E; e++) {
          assertEquals(tiles.filter(([te]) => te === e).reduce((n, [, , c]) => n + c, 0), counts[e], `expert ${e}`);
        }
        assert(new Set(ref.ids).size >= 4, "tokens should route to several experts");
      });
      // The shared expert runs on the dense matmuls: f16 weights for f16, else f32.
      const round = (v: Float32Array<ArrayBuffer>) => dtype === "f16" ? roundTrip(v, "f16") : v;
      await t.step(`${dtype} ${layout} experts (${family} kernels) with a sigmoid-gated shared expert (Qwen3.5-MoE), random routing over 13 tokens`, async () => {
        const T = 13;
        const x = random(T * H, 9);
        const router = random(E * H, 10);
        const shared: SharedRef = { gateUp: round(random(2 * S * H, 11).map((v) => 0.2 * v)), down: round(random(H * S, 12).map((v) => 0.2 * v)), gate: random(H, 13) };
        const ref = moeRef(x, gamma, router, base.gateUp, base.down, T, shared);
        // The shared expert is a real part of the output, and its gate is not saturated.
        assert(relErr(moeRef(x, gamma, router, base.gateUp, base.down, T).out, ref.out) > 1e-2, "the shared expert should change the output");
        const { out, tiles } = await runLayer(gpu.device, pipelines, dtype, layout, family, { ...raw, x, router }, T, shared);
        const err = relErr(out, ref.out);
        assert(err < 1e-5, `relative error ${err}`);
        // The shared expert gets no tiles: the routed experts' assignments are as without it.
        assertEquals(tiles.reduce((n, [, , c]) => n + c, 0), T * K);
        // A shared-expert gate of 0 (sigmoid 1/2) against one pushed hard negative (gate ~ 0).
        const off = { ...shared, gate: new Float32Array(H).fill(-50) };
        const refOff = moeRef(x, gamma, router, base.gateUp, base.down, T, off);
        const gotOff = await runLayer(gpu.device, pipelines, dtype, layout, family, { ...raw, x, router }, T, off);
        assert(relErr(gotOff.out, refOff.out) < 1e-5, `relative error with a closed gate ${relErr(gotOff.out, refOff.out)}`);
      });
      await t.step(`${dtype} ${layout} experts (${family} kernels), one expert takes every token and six take none`, async () => {
        const T = 16;
        // Positive activations and router rows that rank expert 3 first and 5 second for all.
        const x = random(T * H, 6).map((v) => 0.1 + Math.abs(v));
        const router = new Float32Array(E * H).fill(-0.01);
        router.fill(0.05, 3 * H, 4 * H);
        router.fill(0.02, 5 * H, 6 * H);
        const ref = moeRef(x, gamma, router, base.gateUp, base.down, T);
        assertEquals(new Set(ref.ids), new Set([3, 5]));
        const { out, tiles } = await runLayer(gpu.device, pipelines, dtype, layout, family, { ...raw, x, router }, T);
        assert(relErr(out, ref.out) < 1e-5, `relative error ${relErr(out, ref.out)}`);
        // 16 tokens per expert: two full tiles of 8 each for experts 3 and 5, none for the rest.
        assertEquals(tiles.map(([e, , c]) => [e, c]), [[3, 8], [3, 8], [5, 8], [5, 8]]);
      });
      await t.step(`${dtype} ${layout} experts (${family} kernels), a decode step reads only its k experts`, async () => {
        const x = random(H, 7);
        const router = random(E * H, 8);
        const ref = moeRef(x, gamma, router, base.gateUp, base.down, 1);
        const { out, tiles, expertBytes, allExpertBytes } = await runLayer(gpu.device, pipelines, dtype, layout, family, { ...raw, x, router }, 1);
        assert(relErr(out, ref.out) < 1e-5);
        // One workgroup row per tile reads one expert's rows: the experts read are the tiles'.
        const read = new Set(tiles.map(([e]) => e));
        assertEquals([...read].sort(), [...ref.ids].sort());
        // The expert buffers hold E experts of expertBytes each, so the step reads k/E of them.
        assertEquals(allExpertBytes, E * expertBytes);
        const fraction = (read.size * expertBytes) / allExpertBytes;
        assertEquals(fraction, K / E);
        console.log(`  ${dtype}: decode reads ${read.size * expertBytes} of ${allExpertBytes} expert weight bytes (${fraction} = k/E)`);
      });
    }
  } finally {
    gpu.device.destroy();
  }
});

for (const name of ["qwen3-moe-tiny", "gpt-oss-mxfp4-tiny"]) test(`moe model ${name}: 8 rows (4 prefill chunks, 4 decode rows) routed to different experts equal their solo runs bit for bit; engine info reports total and active parameters`, async (t) => {
  const golden = await loadGolden(name);
  const prompts = golden.cases.map((c) => c.prompt_ids);
  const gpu = await createGpu();
  try {
    for (const kernelFamily of KERNEL_FAMILIES) {
      await t.step(`${kernelFamily} family`, async () => {
        const runner = await ModelRunner.load(modelDir(name), {
          gpu,
          kernelFamily,
          kvDtype: "f32",
          maxTokens: 256,
          maxLogitRows: 256,
          maxSeqs: 8,
          blockSize: 8,
          numBlocks: 128,
        });
        try {
          const bs = 8;
          const V = runner.spec.vocabSize;
          const pool = new BlockManager(128, bs);
          const table = (n: number) => pool.allocate(Math.ceil(n / bs));
          // Sequences 0..3: the prompts, prefilled alone, then their last token re-run as a decode row.
          // Sequences 4..7: the prompts minus their last token, prefilled inside the mixed step.
          const tables = [...prompts.map((p) => table(p.length)), ...prompts.map((p) => table(p.length))];
          const solo: Float32Array[] = [];
          for (let i = 0; i < 4; i++) {
            solo.push(await runner.logits(buildStepBatch([{ tokens: prompts[i], start: 0, blockTable: tables[i], logits: "all" }], bs)));
          }
          const chunks: SequenceChunk[] = [
            ...prompts.map((p, i) => ({ tokens: [p[p.length - 1]], start: p.length - 1, blockTable: tables[i], logits: "last" as const })),
            ...prompts.map((p, i) => ({ tokens: p.slice(0, -1), start: 0, blockTable: tables[4 + i], logits: "all" as const })),
          ];
          const batch = buildStepBatch(chunks, bs);
          const out = await runner.logits(batch);
          let row = 0;
          prompts.forEach((p, i) => {
            const want = solo[i].subarray((p.length - 1) * V, p.length * V);
            assertEquals(maxAbsDiff(out.subarray(row * V, (row + 1) * V), want), 0, `decode row ${i}`);
            row++;
          });
          prompts.forEach((p, i) => {
            const n = p.length - 1;
            const got = out.subarray(row * V, (row + n) * V);
            assertEquals(maxAbsDiff(got, solo[i].subarray(0, n * V)), 0, `prefill chunk ${i}`);
            row += n;
          });
          // The last sparse layer's routing of this step: several experts, each with its tokens.
          const ids = new Uint32Array(await readBuffer(runner.gpu.device, runner.forward.moeScratch!.ids, batch.tokenIds.length * 2 * 4));
          const used = new Set(ids);
          assert(used.size >= 6, `the step's tokens route to only ${used.size} experts`);
          const decodeExperts = new Set(Array.from(ids.subarray(0, 8)));
          assert(decodeExperts.size >= 3, "the decode rows should route to different experts");
        } catch (e) {
          runner.close();
          throw e;
        }
        // Engine info reports total and active parameters (the engine closes the runner).
        const engine = Engine.start(runner);
        try {
          assertEquals(engine.info.parameters, parameterCount(runner.spec));
          assert(engine.info.parameters!.active < engine.info.parameters!.total / 1.5);
        } finally {
          await engine.close();
        }
      });
    }
  } finally {
    gpu.device.destroy();
  }
});

async function readBuffer(device: GPUDevice, buffer: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0);
  staging.destroy();
  return out;
}
