/**
 * Streaming-read roofs and matmul kernels on the SmolLM2-135M shapes: the current
 * `matmul.wgsl`, issue 10's transposed GEMV, the CPU-family `gemv_c8` (plain, and with the
 * RMSNorm folded in both ways) and the GPU-family `gemv_wg` / `gemm_tiled`, over 1..16 rows
 * (decode batches) and 64 (a prefill chunk). Every weight matrix is repeated in rotating
 * copies totalling >= 64 MiB (more than the last-level cache), so the measurement streams
 * from memory as a decode step does (30 layers of weights never fit the caches), instead of
 * re-reading a cached matrix. The norm variants use a weight of ones (timing only).
 * @module
 */
import type { GpuKit } from "./gpu_kit.ts";
import { type Timed, type TimedResult, timeInterleaved } from "./timing.ts";
import {
  packTransposed,
  ROOF_ADJACENT,
  ROOF_RUNS,
  TRANSPOSED_GEMV,
  type YardstickKernel,
} from "./roofs.ts";
import { buildMatmul, type MatmulVariant, packFor, rowTile } from "./matmul_runner.ts";
import { MATMUL } from "../../src/gpu/descriptors.ts";
import { buildStepBatch } from "../../src/model/step_batch.ts";
import { kSlices } from "./decoder.ts";
import type { HostMatrix } from "../../src/model/weight_layout.ts";
import { Rng } from "../rng.ts";

/** A matmul shape. */
export interface MatmulShape {
  name: string;
  n: number;
  k: number;
  /** Whether an RMSNorm precedes it (qkv, gate_up, lm_head). */
  norm: boolean;
}

/** SmolLM2-135M's matmuls as the forward pass runs them. */
export const SMOLLM2_SHAPES: MatmulShape[] = [
  { name: "qkv", n: 960, k: 576, norm: true },
  { name: "o", n: 576, k: 576, norm: false },
  { name: "gate_up", n: 3072, k: 576, norm: true },
  { name: "down", n: 576, k: 1536, norm: false },
  { name: "lm_head", n: 49152, k: 576, norm: true },
];

/** One measured kernel. */
export interface MatmulRow {
  kernel: string;
  shape: string;
  m: number;
  gpuMs: number;
  cpuMs: number;
  /** Weight bytes / GPU time. */
  gbps: number;
  /** gbps / the streaming roof. */
  ofRoof: number;
  gflops: number;
}

/** Roof measurements. */
export interface RoofRow {
  kernel: string;
  description: string;
  mib: number;
  gpuMs: number;
  cpuMs: number;
  gbps: number;
}

/** The section's results. */
export interface MatmulSection {
  roofs: RoofRow[];
  /** The best roof's GB/s, the denominator of `ofRoof`. */
  roofGbps: number;
  rows: MatmulRow[];
}

const ROTATE_BYTES = 64 << 20;

function yardstickPipeline(device: GPUDevice, k: YardstickKernel): GPUComputePipeline {
  return device.createComputePipeline({
    label: k.name,
    layout: "auto",
    compute: {
      module: device.createShaderModule({ code: k.source, label: k.name }),
      entryPoint: "main",
    },
  });
}

function randomHalves(rng: Rng, n: number): Uint16Array<ArrayBuffer> {
  const h = new Float16Array(n);
  for (let i = 0; i < n; i++) h[i] = 0.02 * (rng.next() * 2 - 1);
  return new Uint16Array(h.buffer);
}

/** Runs the roofs and the matmuls; `ms` are the row counts, `prefillMs` extra ones for K/N shapes. */
export async function benchMatmuls(
  kit: GpuKit,
  options: {
    shapes: MatmulShape[];
    ms: number[];
    prefillMs: number[];
    rounds: number;
    targetPassMs: number;
    log: (s: string) => void;
  },
): Promise<MatmulSection> {
  const device = kit.device;
  const rng = new Rng(10);
  const uniform = (k: number, n: number, m: number, words: number) =>
    kit.uniform(new Uint32Array([k, n, m, words]).buffer);

  // Roofs: 16 rotating 8 MiB buffers.
  const roofItems: Timed[] = [];
  const roofBytes = 8 << 20;
  const roofCopies = ROTATE_BYTES / roofBytes;
  for (const rk of [ROOF_RUNS, ROOF_ADJACENT]) {
    const pipeline = yardstickPipeline(device, rk);
    const out = kit.buffer(4 * 1024 * 4);
    const x = kit.buffer(64);
    const groups = Array.from({ length: roofCopies }, () =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [uniform(0, 0, 0, roofBytes / 16), x, kit.buffer(roofBytes), out].map((
          b,
          binding,
        ) => ({ binding, resource: { buffer: b } })),
      }));
    roofItems.push({
      id: rk.name,
      encode: (pass, rep) => {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, groups[rep % roofCopies]);
        pass.dispatchWorkgroups(...rk.grid(0, 0));
      },
    });
  }

  // Matmuls.
  const items: Timed[] = [];
  const meta: { id: string; shape: MatmulShape; m: number; kernel: string }[] = [];
  const variant = (
    name: string,
    file: MatmulVariant["file"],
    defines: MatmulVariant["defines"],
  ): MatmulVariant => ({ name, file, defines });
  for (const shape of options.shapes) {
    const { n, k } = shape;
    const bytes = n * k * 2;
    const copies = Math.max(1, Math.ceil(ROTATE_BYTES / bytes));
    const w: HostMatrix = { data: randomHalves(rng, n * k), rows: n, cols: k };
    const wBuffers = Array.from(
      { length: copies },
      () => kit.buffer(w.data as Uint16Array<ArrayBuffer>),
    );
    const transposed = packTransposed(w);
    const tBuffers = Array.from({ length: copies }, () => kit.buffer(transposed));
    // One packed matrix per layout, in rotating copies shared by every row count.
    const c8 = packFor("gemv_c8", w);
    const padded = packFor("gemv_wg", w);
    const c8Buffers = Array.from({ length: copies }, () => kit.buffer(c8.data));
    const paddedBuffers = Array.from({ length: copies }, () => kit.buffer(padded.data));
    const ms = [...options.ms, ...(shape.name === "lm_head" ? [] : options.prefillMs)];
    for (const m of ms) {
      const batch = buildStepBatch([{
        tokens: Array(m).fill(1),
        start: 0,
        blockTable: Array(Math.ceil(m / 16)).fill(0),
        logits: "all",
      }], 16);
      const slot = kit.meta(batch, {
        maxTokens: m,
        maxSeqs: 1,
        maxLogitRows: m,
        maxBlocksPerSeq: Math.ceil(m / 16),
        samplingWordsPerRow: 0,
      });
      const x = kit.buffer(Float32Array.from({ length: m * k }, () => rng.next() - 0.5));
      const out = kit.buffer(m * n * 4);
      const add = (kernel: string, encode: Timed["encode"]) => {
        const id = `${kernel} | ${shape.name} | m=${m}`;
        items.push({ id, encode });
        meta.push({ id, shape, m, kernel });
      };
      // The current kernel.
      {
        const tm = rowTile(m);
        const kernel = kit.kernel(MATMUL, {
          F16: true,
          VEC: k % 8 === 0,
          TM: tm,
          ACCUM: false,
          BIAS: false,
        });
        const params = kit.uniform(new Uint32Array([k, n, 0, n, 0, 0, 0, 0]).buffer);
        const groups = wBuffers.map((wb) => kit.bind(kernel, slot, [params, x, wb, out]));
        add("matmul.wgsl (current)", (pass, rep) => {
          pass.setPipeline(kernel.pipeline);
          pass.setBindGroup(0, groups[rep % copies], [0]);
          pass.dispatchWorkgroups(Math.ceil(n / 64), Math.ceil(m / tm), 1);
        });
      }
      // Issue 10's transposed GEMV (decode sizes only: it loops the rows).
      if (m <= 16) {
        const pipeline = yardstickPipeline(device, TRANSPOSED_GEMV);
        const u = uniform(k, n, m, 0);
        const groups = tBuffers.map((tb) =>
          device.createBindGroup({
            layout: pipeline.getBindGroupLayout(0),
            entries: [u, x, tb, out].map((b, binding) => ({ binding, resource: { buffer: b } })),
          })
        );
        add("transposed GEMV (reference)", (pass, rep) => {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, groups[rep % copies]);
          pass.dispatchWorkgroups(...TRANSPOSED_GEMV.grid(n, m));
        });
      }
      // The packed kernels: one packed copy bound, the others bound by rotation.
      const packedVariants: { label: string; v: MatmulVariant; norm?: "gamma" | "fold" }[] = [
        { label: "gemv_c8", v: variant("gemv_c8", "gemv_c8", { WG: 16 }) },
      ];
      const ks = kSlices(c8.cols / 8, k, 256);
      if (ks > 1) {
        packedVariants.push({
          label: "gemv_c8 k-split",
          v: variant("gemv_c8", "gemv_c8", { WG: 16, KS: ks }),
        });
      }
      if (m === 1 || m === 8) {
        packedVariants.push({ label: "gemv_c8 WG=8", v: variant("gemv_c8", "gemv_c8", { WG: 8 }) });
      }
      if (shape.norm && (m === 1 || m === 8)) {
        packedVariants.push({
          label: "gemv_c8 + norm (GAMMA)",
          v: variant("gemv_c8", "gemv_c8", { WG: 16 }),
          norm: "gamma",
        });
        packedVariants.push({
          label: "gemv_c8 + norm (folded)",
          v: variant("gemv_c8", "gemv_c8", { WG: 16 }),
          norm: "fold",
        });
      }
      if (m === 1 || m === 8) {
        packedVariants.push({
          label: "gemv_wg sliced (gpu family)",
          v: variant("gemv_wg", "gemv_wg", { WG: 64, SLICED: true }),
        });
      }
      if (m >= 16) {
        packedVariants.push({
          label: "gemm_tiled (gpu family)",
          v: variant("gemm_tiled", "gemm_tiled", {}),
        });
      }
      for (const pv of packedVariants) {
        const cpu = pv.v.file === "gemv_c8";
        const wb = cpu ? c8Buffers : paddedBuffers;
        const built = buildMatmul(kit, {
          variant: pv.v,
          weight: w,
          packed: cpu ? c8 : padded,
          weightBuffer: wb[0],
          gamma: pv.norm === "gamma"
            ? kit.buffer(Float32Array.from({ length: k }, () => 1))
            : undefined,
          rows: m,
          meta: slot,
          x,
          out,
          ldx: k,
          ldo: n,
          nOut: n,
          eps: 1e-5,
          defines: { NORM: !!pv.norm },
        });
        const groups = [built.group, ...wb.slice(1).map((b) => built.rebind(b))];
        add(pv.label, (pass, rep) => {
          pass.setPipeline(built.kernel.pipeline);
          pass.setBindGroup(0, groups[rep % copies], [0]);
          pass.dispatchWorkgroups(...built.grid);
        });
      }
    }
  }
  options.log(`  timing ${items.length} matmul measurements and the roofs, interleaved...`);
  const times: Map<string, TimedResult> = await timeInterleaved(device, [...roofItems, ...items], {
    rounds: options.rounds,
    targetPassMs: options.targetPassMs,
    maxReps: 32,
  });
  const roofs = [ROOF_RUNS, ROOF_ADJACENT].map((rk) => {
    const t = times.get(rk.name)!;
    return {
      kernel: rk.name,
      description: rk.description,
      mib: roofBytes / 2 ** 20,
      gpuMs: t.gpuMs,
      cpuMs: t.cpuMs,
      gbps: roofBytes / (t.gpuMs * 1e6),
    };
  });
  const roofGbps = Math.max(...roofs.map((r) => r.gbps));
  for (const r of roofs) options.log(`  ${r.kernel}: ${r.gbps.toFixed(2)} GB/s`);
  const rows = meta.map(({ id, shape, m, kernel }) => {
    const t = times.get(id)!;
    const bytes = shape.n * shape.k * 2;
    const gbps = bytes / (t.gpuMs * 1e6);
    return {
      kernel,
      shape: shape.name,
      m,
      gpuMs: t.gpuMs,
      cpuMs: t.cpuMs,
      gbps,
      ofRoof: gbps / roofGbps,
      gflops: (2 * m * shape.n * shape.k) / (t.gpuMs * 1e6),
    };
  });
  return { roofs, roofGbps, rows };
}
