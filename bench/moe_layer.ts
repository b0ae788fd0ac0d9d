/**
 * A Qwen3-30B-A3B-shaped feed-forward slice: 128 experts, top-8, hidden 2048, expert width
 * 768, f16 weights (1.2 GB of experts, split over binding-sized parts as the loader splits
 * them), against a dense SwiGLU layer with the same active parameters (width 8 x 768 = 6144,
 * the family's packed matmuls). Decode steps of 1 and 8 sequences (tokens routed by the GPU
 * router of random weights), each timed as one compute pass repeating the layer; GPU
 * timestamps where the adapter has them, else wall time over the submit. Prints a JSON line.
 *
 * `--quantization q8_0|q4_0` quantizes the experts and the dense layer alike (llama.cpp blocks,
 * the quantized kernels' exact path).
 *
 *   deno run -A bench/moe_layer.ts [--family cpu|gpu] [--experts 128] [--quantization none|q8_0|q4_0] [--reps 4] [--rounds 5]
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
if (!["none", "q8_0", "q4_0"].includes(QUANT)) throw new Error(`--quantization must be none, q8_0 or q4_0, got ${QUANT}`);
const QTYPE = QUANT === "q8_0" ? "Q8_0" : QUANT === "q4_0" ? "Q4_0" : null;

const gpu = await createGpu();
const device = gpu.device;
const family = kernelFamilyFor(gpu, flag("family", "") as "cpu" | "gpu" || undefined);
const pipelines = new PipelineCache(device, await loadKernelSources([...KERNEL_FILES, ...QUANT_KERNEL_FILES, ...MOE_KERNEL_FILES]));
const rng = new Rng(7);
const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
const f16 = (v: Float32Array) => new Uint16Array(Float16Array.from(v).buffer);
const storage = (bytes: number, usage = 0) =>
  device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | usage });

// MoE weights through the loader, from random tensors named as the hub names them.
const spec: MoeSpec = { router: "softmax_topk", experts: "qwen", numExperts: E, topK: K, normTopkProb: true, expertIntermediateSize: I, sparseLayers: [true] };
const maxBinding = gpu.limits.maxStorageBufferBindingSize;
const moeWeights = await uploadMoeLayer({
  device,
  read: (name) => Promise.resolve(name.endsWith("gate.weight") ? random(E * H, 0.05) : random(H * I, 0.02)),
  readBytes: () => Promise.reject(new Error("no byte tensors here")),
  write: (buffer, offset, data) => Promise.resolve(device.queue.writeBuffer(buffer, offset, data)),
  maxBindingBytes: maxBinding,
}, spec, "model.layers.0", H, "f16", "bench", QTYPE);
await device.queue.onSubmittedWorkDone();

// The dense layer with the same active parameters.
const DI = K * I;
const layout = family === "cpu" ? "column_blocks" : "padded_rows";
/** A dense matrix of random weights, f16 or quantized to QTYPE. */
function denseMatrix(rows: number, cols: number, label: string, columns?: Int32Array): MatrixWeight {
  const values = random(rows * cols, 0.02);
  if (!QTYPE) return uploadMatrix(device, { data: f16(values), rows, cols }, { layout, columns, maxBinding, label }).weight;
  const placed = placeQuantMatrix(device, { type: QTYPE, rows, k: cols, data: quantizeRows(QTYPE, values) }, { layout, columns, maxBinding, label });
  for (const w of placed.writes) device.queue.writeBuffer(w.buffer, 0, w.data, w.start, w.count);
  return placed.weight;
}
const gateUpW = denseMatrix(2 * DI, H, "dense.gate_up", gluColumns(DI));
const downW = denseMatrix(H, DI, "dense.down");

const T = 8;
const x = storage(T * H * 4);
device.queue.writeBuffer(x, 0, random(T * H, 1));
const gamma = storage(H * 4);
device.queue.writeBuffer(gamma, 0, new Float32Array(H).fill(1));
const act = storage(T * DI * 4);
const scratch = createMoeScratch(spec, H, T, (_l, words, usage) => storage(words * 4, usage));
const moe = moeLayerOps(pipelines, spec, moeWeights, scratch, { x, gamma, eps: 1e-6, hiddenSize: H, family }, "moe");
const uses: [typeof gateUpW, MatmulUse][] = [
  [gateUpW, { x, out: act, ldo: DI, nOut: DI, rows: "tokens", norm: { gamma, eps: 1e-6 }, glu: { gelu: false } }],
  [downW, { x: act, out: x, ldo: H, nOut: H, rows: "tokens", accumulate: true }],
];
// Quantized: the exact path (f32 activations), the engine's default.
const env = { dot4: false, maxWorkgroupBytes: device.limits.maxComputeWorkgroupStorageSize };
const dense = uses.map(([w, use], i) => w.kind === "quant" ? quantMatmulOp(pipelines, family, w, use, `dense${i}`, env) : matmulOp(pipelines, family, w, use, `dense${i}`));

const timer = device.features.has("timestamp-query") ? new GpuTimer(device, 1) : null;

/** Median ms of one layer for a step of `tokens` rows. */
async function measure(kind: "moe" | "dense", tokens: number): Promise<number> {
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

const out: Record<string, number | string> = { device: gpu.description, family, quantization: QUANT, expertBytes: moeWeights.expertBytes, experts: E, topK: K, hidden: H, expertWidth: I, timer: timer ? "gpu timestamps" : "wall" };
for (const tokens of [1, 8]) {
  out[`moe_ms_${tokens}`] = await measure("moe", tokens);
  out[`dense_ms_${tokens}`] = await measure("dense", tokens);
  out[`ratio_${tokens}`] = Number(((out[`moe_ms_${tokens}`] as number) / (out[`dense_ms_${tokens}`] as number)).toFixed(2));
}
console.log(JSON.stringify(out));
device.destroy();
