/**
 * A Qwen3-30B-A3B-shaped feed-forward slice: 128 experts, top-8, hidden 2048, expert width
 * 768, f16 weights (1.2 GB of experts, split over binding-sized parts as the loader splits
 * them), against a dense SwiGLU layer with the same active parameters (width 8 x 768 = 6144,
 * the family's packed matmuls). Decode steps of 1 and 8 sequences (tokens routed by the GPU
 * router of random weights), each timed as one compute pass repeating the layer; GPU
 * timestamps where the adapter has them, else wall time over the submit. Prints a JSON line.
 *
 * `--quantization q8_0|q4_0` quantizes the experts and the dense layer alike (llama.cpp blocks,
 * the quantized kernels' exact path). `--quantization mxfp4` makes the slice a gpt-oss sparse
 * layer of the same shape (router bias, expert biases, the clamped SwiGLU) whose experts are
 * random MXFP4 bytes as the hub stores them (`*_blocks` / `*_scales`, 4.25 bits a weight),
 * timed against the dense layer in f16 and in Q4_0 (4.5 bits a weight: similar bytes).
 *
 *   deno run -A bench/moe_layer.ts [--family cpu|gpu] [--experts 128] [--quantization none|q8_0|q4_0|mxfp4] [--reps 4] [--rounds 5]
 * @module
 */
import { createGpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { KERNEL_FILES } from "../src/kernels/descriptors.ts";
import { MOE_KERNEL_FILES } from "../src/kernels/moe_descriptors.ts";
import { kernelFamilyFor } from "../src/kernels/family.ts";
import { STEP_HEADER, STEP_HEADER_WORDS } from "../src/kernels/layout.ts";
import type { MoeSpec } from "../src/model/moe_config.ts";
import { uploadMoeLayer } from "../src/model/moe_weights.ts";
import { gluColumns } from "../src/model/weight_layout.ts";
import { type MatrixWeight, placeQuantMatrix, uploadMatrix } from "../src/model/weights.ts";
import { quantizeRows } from "../src/model/quant/quantized_source.ts";
import { matmulOp, type MatmulUse } from "../src/runner/matmul_op.ts";
import { quantMatmulOp } from "../src/runner/quant_matmul_op.ts";
import { QUANT_KERNEL_FILES } from "../src/kernels/quant_matmul.ts";
import { createMoeScratch, moeLayerOps } from "../src/runner/moe_op.ts";
import type { StepShape } from "../src/runner/step_meta.ts";
import { args } from "../src/runtime/runtime.ts";
import { Rng } from "./rng.ts";
import { GpuTimer } from "./gpu_timer.ts";

const argv = args();
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const H = 2048;
const I = 768;
const E = Number(flag("experts", "128"));
const K = 8;
const REPS = Number(flag("reps", "4"));
const ROUNDS = Number(flag("rounds", "5"));
const QUANT = flag("quantization", "none");
if (!["none", "q8_0", "q4_0", "mxfp4"].includes(QUANT)) throw new Error(`--quantization must be none, q8_0, q4_0 or mxfp4, got ${QUANT}`);
const QTYPE = QUANT === "q8_0" ? "Q8_0" : QUANT === "q4_0" ? "Q4_0" : null;
const MXFP4 = QUANT === "mxfp4";
/** The dense layers timed against the experts: the experts' own type, or (MXFP4) f16 and Q4_0. */
const DENSE_TYPES: ("Q8_0" | "Q4_0" | null)[] = MXFP4 ? [null, "Q4_0"] : [QTYPE];

const gpu = await createGpu();
const device = gpu.device;
const family = kernelFamilyFor(gpu, flag("family", "") as "cpu" | "gpu" || undefined);
const pipelines = new PipelineCache(device, await loadKernelSources([...KERNEL_FILES, ...QUANT_KERNEL_FILES, ...MOE_KERNEL_FILES]));
const rng = new Rng(7);
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
const f16 = (v: Float32Array) => new Uint16Array(Float16Array.from(v).buffer);
const storage = (bytes: number, usage = 0) =>
  device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | usage });

/** `n` seeded random bytes in [lo, lo + span) (a fast LCG: the MXFP4 stacks are ~300 MB). */
function randomBytes(n: number, seed: number, lo = 0, span = 256): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 24) % span);
  }
  return out;
}

// MoE weights through the loader, from random tensors named as the hub names them. MXFP4:
// E8M0 scales 2^-9 .. 2^-7 (weights of about the f16 slice's 0.02).
const spec: MoeSpec = MXFP4
  ? { router: "topk_softmax", experts: "gpt_oss", numExperts: E, topK: K, normTopkProb: false, expertIntermediateSize: I, sparseLayers: [true], mxfp4: true }
  : { router: "softmax_topk", experts: "qwen", numExperts: E, topK: K, normTopkProb: true, expertIntermediateSize: I, sparseLayers: [true] };
const maxBinding = gpu.limits.maxStorageBufferBindingSize;
const gptOssTensor = (name: string): Float32Array<ArrayBuffer> =>
  name.endsWith("router.weight") ? random(E * H, 0.05) : name.endsWith("gate_up_proj_bias") ? random(E * 2 * I, 0.02) : random(name.endsWith("down_proj_bias") ? E * H : E, 0.02);
const mxfp4Bytes = (name: string): Uint8Array<ArrayBuffer> => {
  const n = E * 2 * I * H / (name.includes("gate_up") ? 1 : 2);
  return name.endsWith("_scales") ? randomBytes(n / 32, 11, 118, 3) : randomBytes(n / 2, name.includes("gate_up") ? 12 : 13);
};
const moeWeights = await uploadMoeLayer({
  device,
  read: (name) => Promise.resolve(MXFP4 ? gptOssTensor(name) : name.endsWith("gate.weight") ? random(E * H, 0.05) : random(H * I, 0.02)),
  readBytes: (name) => MXFP4 ? Promise.resolve(mxfp4Bytes(name)) : Promise.reject(new Error("no byte tensors here")),
  write: (buffer, offset, data) => Promise.resolve(device.queue.writeBuffer(buffer, offset, data)),
  maxBindingBytes: maxBinding,
}, spec, "model.layers.0", H, "f16", "bench", QTYPE);
await device.queue.onSubmittedWorkDone();

// The dense layer with the same active parameters.
const DI = K * I;
const layout = family === "cpu" ? "column_blocks" : "padded_rows";
/** A dense matrix of random weights, f16 or quantized to `type`. */
function denseMatrix(type: "Q8_0" | "Q4_0" | null, rows: number, cols: number, label: string, columns?: Int32Array): MatrixWeight {
  const values = random(rows * cols, 0.02);
  if (!type) return uploadMatrix(device, { data: f16(values), rows, cols }, { layout, columns, maxBinding, label }).weight;
  const placed = placeQuantMatrix(device, { type, rows, k: cols, data: quantizeRows(type, values) }, { layout, columns, maxBinding, label });
  for (const w of placed.writes) device.queue.writeBuffer(w.buffer, 0, w.data, w.start, w.count);
  return placed.weight;
}

const T = 8;
const x = storage(T * H * 4);
device.queue.writeBuffer(x, 0, random(T * H, 1));
const gamma = storage(H * 4);
device.queue.writeBuffer(gamma, 0, new Float32Array(H).fill(1));
const act = storage(T * DI * 4);
const scratch = createMoeScratch(spec, H, T, (_l, words, usage) => storage(words * 4, usage));
const moe = moeLayerOps(pipelines, spec, moeWeights, scratch, { x, gamma, eps: 1e-6, hiddenSize: H, family }, "moe");
// Quantized: the exact path (f32 activations), the engine's default.
const env = { dot4: false, maxWorkgroupBytes: device.limits.maxComputeWorkgroupStorageSize };
/** The dense layer's gate|up (with the norm and SwiGLU) and down matmuls in `type`. */
function denseLayer(type: "Q8_0" | "Q4_0" | null) {
  const uses: [MatrixWeight, MatmulUse][] = [
    [denseMatrix(type, 2 * DI, H, "dense.gate_up", gluColumns(DI)), { x, out: act, ldo: DI, nOut: DI, rows: "tokens", norm: { gamma, eps: 1e-6 }, glu: { gelu: false } }],
    [denseMatrix(type, H, DI, "dense.down"), { x: act, out: x, ldo: H, nOut: H, rows: "tokens", accumulate: true }],
  ];
  return uses.map(([w, use], i) => w.kind === "quant" ? quantMatmulOp(pipelines, family, w, use, `dense${i}`, env) : matmulOp(pipelines, family, w, use, `dense${i}`));
}
const denseLayers = DENSE_TYPES.map(denseLayer);

const timer = device.features.has("timestamp-query") ? new GpuTimer(device, 1) : null;

/** Median ms of one layer for a step of `tokens` rows. */
async function measure(kind: "moe" | "dense", tokens: number, dense = denseLayers[0]): Promise<number> {
  const meta = storage(STEP_HEADER_WORDS * 4);
  const words = new Uint32Array(STEP_HEADER_WORDS);
  words[STEP_HEADER.numTokens] = tokens;
  words[STEP_HEADER.numLogitRows] = tokens;
  device.queue.writeBuffer(meta, 0, words);
  const step = { buffer: meta, offset: 0, size: STEP_HEADER_WORDS * 4 };
  const shape: StepShape = { tokens, logitRows: tokens, seqs: tokens, maxQueryLen: 1, maxContext: 1 };
  const dispatches = kind === "moe"
    ? [...moe.dispatches, moe.combine].map((d) => ({ kernel: d.kernel, bg: d.kernel.bindGroup(d.label, { ...d.resources, step }), grid: d.grid(shape), indirect: d.indirect }))
    : dense.flatMap((op) =>
      op.parts.map((part) => {
        const v = op.variant(tokens);
        return { kernel: op.kernels[v], bg: op.kernels[0].bindGroup(part.label, { ...part.resources, step }), grid: part.grid(tokens, v), indirect: undefined };
      })
    );
  const times: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(timer ? timer.pass(0) : undefined);
    for (let i = 0; i < REPS; i++) {
      for (const d of dispatches) {
        pass.setPipeline(d.kernel.pipeline);
        pass.setBindGroup(0, d.bg, [0]);
        if (d.indirect) pass.dispatchWorkgroupsIndirect(d.indirect.buffer, d.indirect.offset);
        else pass.dispatchWorkgroups(...d.grid);
      }
    }
    pass.end();
    if (timer) timer.resolve(encoder, 1);
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    const wall = performance.now() - t0;
    const ms = timer ? (await timer.read(1))[0] / 1e6 : wall;
    if (r > 0) times.push(ms / REPS); // the first round compiles and warms up
  }
  meta.destroy();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const out: Record<string, number | string> = {
  device: gpu.description,
  family,
  quantization: QUANT,
  expertBytes: moeWeights.expertBytes,
  expertLayout: moeWeights.layout,
  experts: E,
  topK: K,
  hidden: H,
  expertWidth: I,
  timer: timer ? "gpu timestamps" : "wall",
};
for (const tokens of [1, 8]) {
  out[`moe_ms_${tokens}`] = await measure("moe", tokens);
  // One dense type: dense_ms_N / ratio_N; MXFP4: per dense type (dense_f16_ms_N, ratio_q4_0_N, ...).
  for (const [i, type] of DENSE_TYPES.entries()) {
    const tag = DENSE_TYPES.length === 1 ? "" : `_${type?.toLowerCase() ?? "f16"}`;
    const ms = await measure("dense", tokens, denseLayers[i]);
    out[`dense${tag}_ms_${tokens}`] = ms;
    out[`ratio${tag}_${tokens}`] = Number(((out[`moe_ms_${tokens}`] as number) / ms).toFixed(2));
  }
}
console.log(JSON.stringify(out));
device.destroy();
