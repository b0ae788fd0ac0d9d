/**
 * Kernel throughput against honest roofs, timed with GPU timestamps inside tinybench tasks:
 *
 * - the adapter's streaming-read bandwidth (read-reduce kernels, `reference_kernels.ts`);
 * - the project's matmul family for the adapter (`matmulOp`: cpu `gemv_c8`, gpu `gemv_wg` /
 *   `gemm_tiled`, weights packed at load as the runtime packs them) next to simple reference
 *   GEMVs (row per thread, workgroup per row, issue 10's transposed GEMV) on the same shapes,
 *   each as GB/s and as a fraction of the roof;
 * - decode attention: the project's split-K paged attention against the eager reference.
 *
 * Every weight matrix (and the roof's buffer) is repeated in rotating copies of at least
 * {@link ROTATE_BYTES} in all, so a measurement streams from memory like a decode step (30
 * layers of weights never fit the caches) instead of re-reading a cached matrix. Each
 * measurement is one compute pass repeating the dispatch enough times to run a few tens of
 * milliseconds. GB/s counts the bytes a kernel must move once (weights + activations, or the
 * K/V it attends over); GFLOP/s counts 2 per MAC.
 * @module
 */
import { Bench } from "tinybench";
import type { Gpu } from "../src/gpu/device.ts";
import type { KernelFamily } from "../src/types/api.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { KERNEL_FILES } from "../src/kernels/descriptors.ts";
import { kernelFamilyFor } from "../src/kernels/family.ts";
import { uploadMatrix } from "../src/model/weights.ts";
import { matmulOp } from "../src/runner/matmul_op.ts";
import {
  type AttentionImplementation,
  EagerAttention,
  PagedAttention,
} from "../src/runner/attention_op.ts";
import {
  buildStepBatch,
  metaSlotWords,
  packStepMeta,
  shapeOf,
  type StepCapacity,
} from "../src/runner/step_meta.ts";
import { ATTENTION_SPLIT } from "../src/kernels/family.ts";
import { GpuTimer } from "./gpu_timer.ts";
import { packTransposed, REFERENCE_GEMVS, ROOF_KERNELS } from "./reference_kernels.ts";
import { Rng } from "./rng.ts";
import { percentile } from "./stats.ts";

/** Bytes of rotating copies each measured matrix (and the roof) streams through. */
export const ROTATE_BYTES = 64 << 20;

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
  /** "project" (kernels/*.wgsl as the runtime runs them), "reference" or "roof" (written for the bench). */
  impl: "project" | "reference" | "roof";
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
  /** gbps / the streaming-read roof. */
  ofRoof: number;
}

/** Per row count: a GEMV kernel's bandwidth over all shapes together (total bytes / total time). */
export interface GemvSummary {
  m: number;
  projectKernel: string;
  projectGbps: number;
  /** projectGbps / roofGbps. */
  projectOfRoof: number;
  bestReference: string;
  bestReferenceGbps: number;
  /** projectGbps / bestReferenceGbps. */
  ratio: number;
}

/** The kernel section's results. */
export interface KernelSection {
  adapter: string;
  family: KernelFamily;
  /** The faster streaming-read kernel's GB/s: the roof every `ofRoof` divides by. */
  roofGbps: number;
  roofKernel: string;
  results: KernelResult[];
  gemvVsBest: GemvSummary[];
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
  /** Kernel family (default: the adapter's). */
  family?: KernelFamily;
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
  impl: KernelResult["impl"];
  shape: string;
  m: number;
  bytes: number;
  flops: number;
  /** Encodes repetition `rep` of the kernel into the pass. */
  encode: (pass: GPUComputePassEncoder, rep: number) => void;
}

type MakeBuffer = (size: number, usage: number, data?: ArrayBufferView<ArrayBuffer>) => GPUBuffer;

/** The project's matmul family kernel name for reports. */
export function familyKernelName(family: KernelFamily): string {
  return family === "cpu" ? "gemv_c8" : "gemv_wg/gemm_tiled";
}

/** Runs every kernel measurement; returns results, the roof and the GEMV summaries. */
export async function benchKernels(options: KernelBenchOptions): Promise<KernelSection> {
  const { device } = options.gpu;
  const family = kernelFamilyFor(options.gpu, options.family);
  const pipelines = new PipelineCache(device, await loadKernelSources(KERNEL_FILES));
  const owned: GPUBuffer[] = [];
  const buffer: MakeBuffer = (size, usage, data) => {
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
  const uniform = (...values: number[]) => {
    const data = new Uint32Array(Math.max(4, Math.ceil(values.length / 4) * 4));
    data.set(values);
    return buffer(data.byteLength, GPUBufferUsage.UNIFORM, data);
  };
  const maxBinding = options.gpu.limits.maxStorageBufferBindingSize;

  const work: Measurable[] = [];
  // Roofs: read-reduce over 8 MiB buffers in rotation.
  const roofBytes = 8 << 20;
  const roofCopies = ROTATE_BYTES / roofBytes;
  const roofBuffers = Array.from(
    { length: roofCopies },
    () => buffer(roofBytes, GPUBufferUsage.STORAGE),
  );
  for (const rk of ROOF_KERNELS) {
    const pipeline = device.createComputePipeline({
      label: rk.name,
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: rk.source, label: rk.name }),
        entryPoint: "main",
      },
    });
    const p = uniform(roofBytes / 16);
    const out = buffer(4 * 1024, GPUBufferUsage.STORAGE);
    const groups = roofBuffers.map((w) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [p, w, out].map((b, binding) => ({ binding, resource: { buffer: b } })),
      })
    );
    work.push({
      kernel: rk.name,
      impl: "roof",
      shape: `${roofCopies} x ${roofBytes >> 20} MiB`,
      m: 0,
      bytes: roofBytes,
      flops: 0,
      encode: (pass, rep) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, groups[rep % roofCopies]);
        pass.dispatchWorkgroups(...rk.grid);
      },
    });
  }

  // GEMVs: the project's family and the reference kernels, each on its own rotating copies.
  const projectName = familyKernelName(family);
  for (const shape of options.gemvShapes) {
    const { n, k } = shape;
    const copies = Math.max(2, Math.ceil(ROTATE_BYTES / (n * k * 2)));
    const host = randomF16(n * k);
    const hf = Array.from(
      { length: copies },
      () => buffer(n * k * 2, GPUBufferUsage.STORAGE, host),
    );
    const transposed = packTransposed(host, n, k);
    const tr = Array.from(
      { length: copies },
      () => buffer(n * k * 2, GPUBufferUsage.STORAGE, transposed),
    );
    const packed = Array.from({ length: copies }, (_, i) => {
      const w = uploadMatrix(device, { data: host, rows: n, cols: k }, {
        layout: family === "cpu" ? "column_blocks" : "padded_rows",
        maxBinding,
        label: `${shape.name}#${i}`,
      }).weight;
      for (const part of w.parts) owned.push(part.buffer);
      return w;
    });
    for (const m of options.ms) {
      const x = buffer(m * k * 4, GPUBufferUsage.STORAGE, randomF32(m * k));
      const out = buffer(m * n * 4, GPUBufferUsage.STORAGE);
      const bytes = n * k * 2 + m * k * 4 + m * n * 4;
      const flops = 2 * m * n * k;
      // m tokens of one sequence: the matmul reads only the token count.
      const cap: StepCapacity = { maxTokens: m, maxSeqs: 1, maxLogitRows: 1, maxBlocksPerSeq: m };
      const step = buildStepBatch([{
        tokens: new Array(m).fill(0),
        start: 0,
        blockTable: Array.from({ length: m }, (_, i) => i),
        logits: "none",
      }], 1);
      const meta = {
        buffer: buffer(metaSlotWords(cap) * 4, GPUBufferUsage.STORAGE, packStepMeta(step, cap)),
        size: metaSlotWords(cap) * 4,
      };
      const ops = packed.map((w, i) =>
        matmulOp(
          pipelines,
          family,
          w,
          { x, out, ldo: n, nOut: n, rows: "tokens" },
          `${shape.name}#${i}`,
        )
      );
      for (const op of ops) owned.push(...op.uniforms);
      const variant = ops[0].variant(m);
      const kernel = ops[0].kernels[variant];
      const dispatches = ops.map((op) =>
        op.parts.map((part) => ({
          bg: kernel.bindGroup(part.label, { ...part.resources, step: meta }),
          grid: part.grid(m, variant),
        }))
      );
      work.push({
        kernel: projectName,
        impl: "project",
        shape: shape.name,
        m,
        bytes,
        flops,
        encode: (pass, rep) => {
          pass.setPipeline(kernel.pipeline);
          for (const d of dispatches[rep % copies]) {
            pass.setBindGroup(0, d.bg, [0]);
            pass.dispatchWorkgroups(...d.grid);
          }
        },
      });
      for (const ref of REFERENCE_GEMVS) {
        const module = device.createShaderModule({ code: ref.source(m), label: ref.name });
        const pipeline = device.createComputePipeline({
          layout: "auto",
          compute: { module, entryPoint: "main" },
        });
        const rp = uniform(k, n, m, 0);
        const groups = (ref.layout === "transposed" ? tr : hf).map((w) =>
          device.createBindGroup({
            layout: pipeline.getBindGroupLayout(0),
            entries: [rp, x, w, out].map((b, binding) => ({ binding, resource: { buffer: b } })),
          })
        );
        const grid = ref.grid(n, m);
        work.push({
          kernel: ref.name,
          impl: "reference",
          shape: shape.name,
          m,
          bytes,
          flops,
          encode: (pass, rep) => {
            pass.setPipeline(pipeline);
            pass.setBindGroup(0, groups[rep % copies]);
            pass.dispatchWorkgroups(...grid);
          },
        });
      }
    }
  }
  // Decode attention: split-K paged attention against the eager three-phase reference.
  const attentionOwners: AttentionImplementation[] = [];
  for (const a of options.attention) {
    work.push(
      ...attentionWork(a, options.gpu, pipelines, family, buffer, randomF32, attentionOwners),
    );
  }

  const timer = new GpuTimer(device, 1);
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
    for (let r = 0; r < count; r++) item.encode(pass, r);
    pass.end();
    timer.resolve(encoder, 1);
    device.queue.submit([encoder.finish()]);
    return (await timer.read(1))[0] / 1e6;
  };
  const idOf = (item: Measurable) => `${item.kernel} ${item.shape} m=${item.m}`;
  for (const item of work) {
    const id = idOf(item);
    await timePass(item, 1); // compile + warm
    const one = await timePass(item, 1);
    const count = Math.max(
      2,
      Math.min(256, Math.round(options.targetPassMs / Math.max(one, 1e-3))),
    );
    reps.set(id, count);
    gpuTimes.set(id, []);
    bench.add(id, async () => {
      gpuTimes.get(id)!.push((await timePass(item, count)) / count);
    });
  }
  await bench.run();
  timer.destroy();
  for (const a of attentionOwners) a.destroy();
  for (const b of owned) b.destroy();

  const measured = work.map((item, i) => {
    const gpuMs = percentile(gpuTimes.get(idOf(item))!, 50);
    const r = bench.tasks[i].result as { latency?: { p50?: number } };
    return { item, gpuMs, wallMs: r.latency?.p50 ?? NaN, gbps: item.bytes / (gpuMs * 1e6) };
  });
  const roof = measured.filter((x) => x.item.impl === "roof").sort((a, b) => b.gbps - a.gbps)[0];
  const roofGbps = roof?.gbps ?? NaN;
  const results: KernelResult[] = measured.map(({ item, gpuMs, wallMs, gbps }) => {
    const result: KernelResult = {
      kernel: item.kernel,
      impl: item.impl,
      shape: item.shape,
      m: item.m,
      gpuMs,
      wallMs,
      reps: reps.get(idOf(item))!,
      bytes: item.bytes,
      flops: item.flops,
      gbps,
      gflops: item.flops / (gpuMs * 1e6),
      ofRoof: gbps / roofGbps,
    };
    options.log?.(
      `  ${idOf(item)}: ${gpuMs.toFixed(3)} ms GPU, ${gbps.toFixed(2)} GB/s (${
        (100 * result.ofRoof).toFixed(0)
      }% of roof), ${result.gflops.toFixed(2)} GFLOP/s`,
    );
    return result;
  });
  return {
    adapter: options.gpu.description,
    family,
    roofGbps,
    roofKernel: roof?.item.kernel ?? "",
    results,
    gemvVsBest: summarizeGemvs(results, options.gemvShapes, options.ms, projectName, roofGbps),
  };
}

/** Per m: bandwidth over all shapes of the project kernel and of the best reference. */
export function summarizeGemvs(
  results: readonly KernelResult[],
  shapes: readonly GemvShape[],
  ms: readonly number[],
  projectName: string,
  roofGbps: number,
): GemvSummary[] {
  return ms.map((m) => {
    const total = (kernel: string) => {
      const rs = results.filter((r) =>
        r.m === m && r.kernel === kernel && shapes.some((s) => s.name === r.shape)
      );
      const bytes = rs.reduce((a, r) => a + r.bytes, 0);
      const ms = rs.reduce((a, r) => a + r.gpuMs, 0);
      return ms > 0 ? bytes / (ms * 1e6) : 0;
    };
    const projectGbps = total(projectName);
    let best = { name: "", gbps: 0 };
    for (const ref of REFERENCE_GEMVS) {
      const g = total(ref.name);
      if (g > best.gbps) best = { name: ref.name, gbps: g };
    }
    return {
      m,
      projectKernel: projectName,
      projectGbps,
      projectOfRoof: projectGbps / roofGbps,
      bestReference: best.name,
      bestReferenceGbps: best.gbps,
      ratio: projectGbps / best.gbps,
    };
  });
}

function attentionWork(
  a: AttentionShape,
  gpu: Gpu,
  pipelines: PipelineCache,
  family: KernelFamily,
  buffer: MakeBuffer,
  randomF32: (n: number, scale?: number) => Float32Array<ArrayBuffer>,
  owners: AttentionImplementation[],
): Measurable[] {
  const { heads: nh, kvHeads: nkv, headDim: hd, blockSize: bs, seqs, context } = a;
  const device = gpu.device;
  const kvF16 = gpu.hasF16 && hd % 8 === 0; // the runtime's default KV type
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
  const shape = shapeOf(batch);
  const metaBytes = metaSlotWords(cap) * 4;
  const step = {
    buffer: buffer(metaBytes, GPUBufferUsage.STORAGE, packStepMeta(batch, cap)),
    size: metaBytes,
  };
  const query = buffer(seqs * nh * hd * 4, GPUBufferUsage.STORAGE, randomF32(seqs * nh * hd));
  const kvWords = numBlocks * nkv * bs * hd;
  const kvValues = randomF32(kvWords, 0.5);
  const kvData = kvF16 ? new Uint16Array(Float16Array.from(kvValues).buffer) : kvValues;
  const elem = kvF16 ? 2 : 4;
  const kCache = buffer(kvWords * elem, GPUBufferUsage.STORAGE, kvData);
  const vCache = buffer(kvWords * elem, GPUBufferUsage.STORAGE, kvData);
  const out = buffer(seqs * nh * hd * 4, GPUBufferUsage.STORAGE);
  const bytes = seqs * (context * nkv * hd * elem * 2 + 2 * nh * hd * 4);
  const flops = seqs * 4 * nh * hd * context;
  const attnShape = {
    numHeads: nh,
    numKvHeads: nkv,
    headDim: hd,
    blockSize: bs,
    kvF16,
    maxTokens: seqs,
    maxContext: context,
  };
  const limits = {
    maxBindingBytes: gpu.limits.maxStorageBufferBindingSize,
    maxWorkgroupBytes: gpu.limits.maxComputeWorkgroupStorageSize,
  };
  const impls: [string, KernelResult["impl"], AttentionImplementation][] = [
    [
      `attention_lanes (split ${ATTENTION_SPLIT[family]})`,
      "project",
      new PagedAttention(device, pipelines, attnShape, {
        ...limits,
        splitLen: ATTENTION_SPLIT[family],
      }),
    ],
    [
      "eager_attention (3 phases)",
      "reference",
      new EagerAttention(device, pipelines, attnShape, limits),
    ],
  ];
  return impls.map(([kernel, impl, attention]) => {
    owners.push(attention);
    const layer = {
      query,
      qStride: nh * hd,
      kCache,
      vCache,
      out,
      window: 0,
      scale: 1 / Math.sqrt(hd),
      softcap: 0,
    };
    const dispatches = attention.layer(layer, kernel).flatMap((d) => {
      const v = d.pick(shape);
      const grid = d.grid(shape, v);
      if (grid.some((g) => g === 0)) return [];
      const k = d.kernels[v];
      return [{ pipeline: k.pipeline, bg: k.bindGroup(d.label, { ...d.resources, step }), grid }];
    });
    return {
      kernel,
      impl,
      shape: `${a.name}${kvF16 ? " f16 KV" : ""}`,
      m: seqs,
      bytes,
      flops,
      encode: (pass) => {
        for (const d of dispatches) {
          pass.setPipeline(d.pipeline);
          pass.setBindGroup(0, d.bg, [0]);
          pass.dispatchWorkgroups(...d.grid);
        }
      },
    };
  });
}
