/**
 * Kernel throughput: the project's matmul/GEMV and paged attention against simple
 * reference kernels on the same adapter, timed with GPU timestamps inside tinybench tasks.
 * Each measurement is one compute pass repeating the dispatch enough times to run for a
 * few tens of milliseconds; achieved GB/s counts the bytes the kernel must move at least
 * once (weights + activations, or the K/V it attends over), GFLOP/s counts 2 per MAC.
 * @module
 */
import { Bench } from "tinybench";
import type { Gpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { EAGER_ATTENTION, KERNEL_FILES, MATMUL, PAGED_ATTENTION } from "../src/kernels/descriptors.ts";
import {
  buildStepBatch,
  metaSlotWords,
  packStepMeta,
  type StepCapacity,
} from "../src/runner/step_meta.ts";
import { GpuTimer } from "./gpu_timer.ts";
import { REFERENCE_GEMVS } from "./reference_kernels.ts";
import { Rng } from "./rng.ts";
import { percentile } from "./stats.ts";

/** A GEMV/matmul shape: out [m, n] = x [m, k] @ w[n, k]^T with f16 weights. */
export interface GemvShape {
  name: string;
  n: number;
  k: number;
}

/** A decode attention shape: `seqs` sequences of `context` tokens each. */
export interface AttentionShape {
  name: string;
  heads: number;
  kvHeads: number;
  headDim: number;
  blockSize: number;
  seqs: number;
  context: number;
}

/** One kernel measurement. */
export interface KernelResult {
  kernel: string;
  /** "project" (kernels/*.wgsl) or "reference" (written for the bench). */
  impl: "project" | "reference";
  shape: string;
  /** Input rows (1 = single-stream decode). */
  m: number;
  /** Median GPU time of one dispatch (or of one multi-phase kernel), ms. */
  gpuMs: number;
  /** tinybench's median wall time of one iteration (reps dispatches + a GPU->CPU wait), ms. */
  wallMs: number;
  reps: number;
  bytes: number;
  flops: number;
  gbps: number;
  gflops: number;
}

/** The kernel section's results. */
export interface KernelSection {
  adapter: string;
  results: KernelResult[];
  /**
   * Per m: the project GEMV's bandwidth over all decode shapes (total bytes / total time)
   * against the best reference kernel's on the same shapes, and their ratio.
   */
  gemvVsBest: {
    m: number;
    projectGbps: number;
    bestReference: string;
    bestReferenceGbps: number;
    ratio: number;
  }[];
}

/** Options of {@link benchKernels}. */
export interface KernelBenchOptions {
  gpu: Gpu;
  gemvShapes: GemvShape[];
  attention: AttentionShape[];
  /** Input row counts for the GEMVs (1 = decode, 8 = a batch of 8 decodes). */
  ms: number[];
  /** GPU time to aim for per measured pass, ms. */
  targetPassMs: number;
  /** tinybench time budget per task, ms, and minimum iterations. */
  benchTimeMs: number;
  iterations: number;
  log?: (line: string) => void;
}

/** The decode GEMV shapes of a llama model (fused qkv and gate|up as the forward pass runs them). */
export function llamaGemvShapes(c: {
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}): GemvShape[] {
  return [
    { name: "qkv", n: (c.heads + 2 * c.kvHeads) * c.headDim, k: c.hidden },
    { name: "o", n: c.hidden, k: c.heads * c.headDim },
    { name: "gate_up", n: 2 * c.intermediate, k: c.hidden },
    { name: "down", n: c.hidden, k: c.intermediate },
    { name: "lm_head", n: c.vocab, k: c.hidden },
  ];
}

interface Measurable {
  kernel: string;
  impl: "project" | "reference";
  shape: string;
  m: number;
  bytes: number;
  flops: number;
  /** Encodes one repetition of the kernel into the pass. */
  encode: (pass: GPUComputePassEncoder) => void;
}

/** Runs every kernel measurement; returns results plus the GEMV-vs-reference summary. */
export async function benchKernels(options: KernelBenchOptions): Promise<KernelSection> {
  const { device } = options.gpu;
  const pipelines = new PipelineCache(device, await loadKernelSources(KERNEL_FILES));
  const owned: GPUBuffer[] = [];
  const buffer = (size: number, usage: number, data?: ArrayBufferView<ArrayBuffer>) => {
    const b = device.createBuffer({
      size: Math.max(16, Math.ceil(size / 16) * 16),
      usage: usage | GPUBufferUsage.COPY_DST,
    });
    if (data) device.queue.writeBuffer(b, 0, data);
    owned.push(b);
    return b;
  };
  const rng = new Rng(7);
  const randomF32 = (n: number, scale = 1) =>
    Float32Array.from({ length: n }, () => scale * rng.normal());
  const randomF16 = (n: number) => {
    const f = new Float16Array(n);
    for (let i = 0; i < n; i++) f[i] = 0.02 * (rng.next() * 2 - 1);
    return new Uint16Array(f.buffer);
  };
  const uniform = (...fields: (["u" | "f", number])[]) => {
    const data = new ArrayBuffer(Math.max(16, Math.ceil(fields.length / 4) * 16));
    const view = new DataView(data);
    fields.forEach(([kind, v], i) =>
      kind === "u" ? view.setUint32(i * 4, v, true) : view.setFloat32(i * 4, v, true)
    );
    return buffer(data.byteLength, GPUBufferUsage.UNIFORM, new Uint8Array(data));
  };
  const params = (kernel: { packParams(v: Record<string, number>): ArrayBuffer }, values: Record<string, number>) => {
    const data = kernel.packParams(values);
    return buffer(data.byteLength, GPUBufferUsage.UNIFORM, new Uint8Array(data));
  };

  const work: Measurable[] = [];
  // GEMVs: the project's matmul and the reference kernels on the same buffers.
  for (const shape of options.gemvShapes) {
    const { n, k } = shape;
    const w = buffer(n * k * 2, GPUBufferUsage.STORAGE, randomF16(n * k));
    for (const m of options.ms) {
      const x = buffer(m * k * 4, GPUBufferUsage.STORAGE, randomF32(m * k));
      const out = buffer(m * n * 4, GPUBufferUsage.STORAGE);
      const bytes = n * k * 2 + m * k * 4 + m * n * 4;
      const flops = 2 * m * n * k;
      // m tokens of one sequence: the matmul reads only the token count.
      const cap: StepCapacity = { maxTokens: m, maxSeqs: 1, maxLogitRows: 1, maxBlocksPerSeq: m };
      const step = buildStepBatch([{ tokens: new Array(m).fill(0), start: 0, blockTable: Array.from({ length: m }, (_, i) => i), logits: "none" }], 1);
      const metaBytes = metaSlotWords(cap) * 4;
      const meta = buffer(metaBytes, GPUBufferUsage.STORAGE, packStepMeta(step, cap));
      const tm = m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
      const kernel = pipelines.get(MATMUL, {
        F16: true,
        VEC: k % 8 === 0,
        TM: tm,
        ACCUM: false,
        BIAS: false,
      });
      const bg = kernel.bindGroup("matmul", {
        step: { buffer: meta, size: metaBytes },
        p: params(kernel, { k, n, n_off: 0, ldo: n, rows_kind: 0 }),
        x,
        w,
        out,
      });
      const rows = Math.ceil(m / tm);
      work.push({
        kernel: "matmul.wgsl",
        impl: "project",
        shape: shape.name,
        m,
        bytes,
        flops,
        encode: (pass) => {
          pass.setPipeline(kernel.pipeline);
          pass.setBindGroup(0, bg, [0]);
          pass.dispatchWorkgroups(Math.ceil(n / 64), rows, 1);
        },
      });
      for (const ref of REFERENCE_GEMVS) {
        const module = device.createShaderModule({ code: ref.source(m), label: ref.name });
        const pipeline = device.createComputePipeline({
          layout: "auto",
          compute: { module, entryPoint: "main" },
        });
        const rp = uniform(["u", k], ["u", n], ["u", m], ["u", 0]);
        const rbg = device.createBindGroup({
          layout: pipeline.getBindGroupLayout(0),
          entries: [rp, x, w, out].map((b, binding) => ({ binding, resource: { buffer: b } })),
        });
        const [gx, gy, gz] = ref.grid(n, m);
        work.push({
          kernel: ref.name,
          impl: "reference",
          shape: shape.name,
          m,
          bytes,
          flops,
          encode: (pass) => {
            pass.setPipeline(pipeline);
            pass.setBindGroup(0, rbg);
            pass.dispatchWorkgroups(gx, gy, gz);
          },
        });
      }
    }
  }
  // Decode attention: the paged kernel against the eager three-phase reference kernel.
  for (const a of options.attention) {
    work.push(...attentionWork(a, pipelines, buffer, params, randomF32));
  }

  const timer = new GpuTimer(device, 1);
  const results: KernelResult[] = [];
  const bench = new Bench({
    time: options.benchTimeMs,
    iterations: options.iterations,
    warmup: false,
  });
  const gpuTimes = new Map<string, number[]>();
  const reps = new Map<string, number>();
  const timePass = async (item: Measurable, count: number) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(timer.pass(0));
    for (let r = 0; r < count; r++) item.encode(pass);
    pass.end();
    timer.resolve(encoder, 1);
    device.queue.submit([encoder.finish()]);
    return (await timer.read(1))[0] / 1e6;
  };
  for (const item of work) {
    const id = `${item.kernel} ${item.shape} m=${item.m}`;
    await timePass(item, 1); // compile + warm
    const one = await timePass(item, 1);
    const count = Math.max(
      1,
      Math.min(256, Math.round(options.targetPassMs / Math.max(one, 1e-3))),
    );
    reps.set(id, count);
    gpuTimes.set(id, []);
    bench.add(id, async () => {
      gpuTimes.get(id)!.push((await timePass(item, count)) / count);
    });
  }
  await bench.run();
  for (const [i, item] of work.entries()) {
    const id = `${item.kernel} ${item.shape} m=${item.m}`;
    const task = bench.tasks[i];
    const r = task.result as { latency?: { p50?: number } };
    const gpuMs = percentile(gpuTimes.get(id)!, 50);
    const result: KernelResult = {
      kernel: item.kernel,
      impl: item.impl,
      shape: item.shape,
      m: item.m,
      gpuMs,
      wallMs: r.latency?.p50 ?? NaN,
      reps: reps.get(id)!,
      bytes: item.bytes,
      flops: item.flops,
      gbps: item.bytes / (gpuMs * 1e6),
      gflops: item.flops / (gpuMs * 1e6),
    };
    results.push(result);
    options.log?.(
      `  ${id}: ${gpuMs.toFixed(3)} ms GPU, ${result.gbps.toFixed(2)} GB/s, ${
        result.gflops.toFixed(2)
      } GFLOP/s`,
    );
  }
  timer.destroy();
  for (const b of owned) b.destroy();

  const gemvVsBest = options.ms.map((m) => {
    const total = (filter: (r: KernelResult) => boolean) => {
      const rs = results.filter((r) =>
        r.m === m && options.gemvShapes.some((s) => s.name === r.shape) && filter(r)
      );
      const bytes = rs.reduce((a, r) => a + r.bytes, 0);
      const ms = rs.reduce((a, r) => a + r.gpuMs, 0);
      return ms > 0 ? bytes / (ms * 1e6) : 0;
    };
    const projectGbps = total((r) => r.kernel === "matmul.wgsl");
    let best = { name: "", gbps: 0 };
    for (const ref of REFERENCE_GEMVS) {
      const g = total((r) => r.kernel === ref.name);
      if (g > best.gbps) best = { name: ref.name, gbps: g };
    }
    return {
      m,
      projectGbps,
      bestReference: best.name,
      bestReferenceGbps: best.gbps,
      ratio: projectGbps / best.gbps,
    };
  });
  return { adapter: options.gpu.description, results, gemvVsBest };
}

function attentionWork(
  a: AttentionShape,
  pipelines: PipelineCache,
  buffer: (size: number, usage: number, data?: ArrayBufferView<ArrayBuffer>) => GPUBuffer,
  params: (kernel: { packParams(v: Record<string, number>): ArrayBuffer }, values: Record<string, number>) => GPUBuffer,
  randomF32: (n: number, scale?: number) => Float32Array<ArrayBuffer>,
): Measurable[] {
  const { heads: nh, kvHeads: nkv, headDim: hd, blockSize: bs, seqs, context } = a;
  const blocksPerSeq = Math.ceil(context / bs);
  const numBlocks = seqs * blocksPerSeq;
  const cap: StepCapacity = {
    maxTokens: seqs,
    maxSeqs: seqs,
    maxLogitRows: seqs,
    maxBlocksPerSeq: blocksPerSeq,
  };
  const batch = buildStepBatch(
    Array.from({ length: seqs }, (_, s) => ({
      tokens: [10 + s],
      start: context - 1,
      blockTable: Array.from({ length: blocksPerSeq }, (_, j) => s * blocksPerSeq + j),
      logits: "last" as const,
    })),
    bs,
  );
  const metaBytes = metaSlotWords(cap) * 4;
  const meta = buffer(metaBytes, GPUBufferUsage.STORAGE, packStepMeta(batch, cap));
  const qkvCols = (nh + 2 * nkv) * hd;
  const qkv = buffer(seqs * qkvCols * 4, GPUBufferUsage.STORAGE, randomF32(seqs * qkvCols));
  const kvWords = numBlocks * nkv * bs * hd;
  const k = buffer(kvWords * 4, GPUBufferUsage.STORAGE, randomF32(kvWords, 0.5));
  const v = buffer(kvWords * 4, GPUBufferUsage.STORAGE, randomF32(kvWords, 0.5));
  const out = buffer(seqs * nh * hd * 4, GPUBufferUsage.STORAGE);
  const scale = 1 / Math.sqrt(hd);
  const bytes = seqs * (context * nkv * hd * 4 * 2 + qkvCols * 4 + nh * hd * 4);
  const flops = seqs * 4 * nh * hd * context;
  const paged = pipelines.get(PAGED_ATTENTION, { GROUP: nh / nkv, HEAD_DIM: hd });
  const attn = { nh, nkv, block_size: bs, qkv_stride: qkvCols, window: 0, scale, softcap: 0 };
  const step = { buffer: meta, size: metaBytes };
  const pagedBg = paged.bindGroup("paged_attention", { step, p: params(paged, attn), qkv, k_cache: k, v_cache: v, out });
  const scores = buffer(seqs * nh * context * 4, GPUBufferUsage.STORAGE);
  let eagerParams: GPUBuffer | null = null;
  const phases = (["PHASE_SCORES", "PHASE_SOFTMAX", "PHASE_VALUES"] as const).map((phase) => {
    const kernel = pipelines.get(EAGER_ATTENTION, {
      PHASE_SCORES: false,
      PHASE_SOFTMAX: false,
      PHASE_VALUES: false,
      [phase]: true,
    });
    eagerParams ??= params(kernel, { ...attn, head_dim: hd, max_context: context });
    const bg = kernel.bindGroup("eager_attention", { step, p: eagerParams, qkv, k_cache: k, v_cache: v, scores, out });
    const grid: [number, number, number] = phase === "PHASE_SCORES"
      ? [Math.ceil(context / 64), nh, seqs]
      : phase === "PHASE_SOFTMAX"
      ? [1, nh, seqs]
      : [Math.ceil(hd / 64), nh, seqs];
    return { kernel, bg, grid };
  });
  const common = { shape: a.name, m: seqs, bytes, flops };
  return [
    {
      ...common,
      kernel: "paged_attention.wgsl",
      impl: "project",
      encode: (pass) => {
        pass.setPipeline(paged.pipeline);
        pass.setBindGroup(0, pagedBg, [0]);
        pass.dispatchWorkgroups(nkv, seqs, 1);
      },
    },
    {
      ...common,
      kernel: "eager_attention.wgsl (3 phases)",
      impl: "reference",
      encode: (pass) => {
        for (const p of phases) {
          pass.setPipeline(p.kernel.pipeline);
          pass.setBindGroup(0, p.bg, [0]);
          pass.dispatchWorkgroups(...p.grid);
        }
      },
    },
  ];
}
