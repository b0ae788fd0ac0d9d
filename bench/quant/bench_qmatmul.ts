/**
 * Quantized matmuls against the f16 `gemv_c8` on the SmolLM2-135M shapes (CPU family):
 * Q8_0 and Q4_0, exact path (f32 activations) and fast path (activations quantized to Q8 by
 * `quantize_rows`, integer dot products; timed with and without that pass), at 1 and 8 rows;
 * Q8X (what Q6_K and mixed-type GGUF matrices run as) and Q4X (what all-Q4_K ones run as),
 * exact path only, here made from Q4_0 blocks since these K are no multiple of 256 (the
 * kernels' cost does not depend on the values).
 * Every matrix rotates through >= 64 MiB of copies so each dispatch streams from memory as a
 * decode step does; variants of one shape are interleaved round by round (a busy moment on a
 * shared machine hits all alike) and medians are reported.
 *
 * Run alone: `deno run -A --no-check=remote bench/quant/bench_qmatmul.ts [--quick] [--json PATH]`.
 * @module
 */
import { QuantKit } from "./kit.ts";
import { buildQMatmul, rowTile } from "./qmatmul.ts";
import { type Timed, timeInterleaved } from "./timing.ts";
import { GEMV_C8 } from "../../src/kernels/descriptors.ts";
import { packQuantColumnBlocks, type QuantMatrix } from "../../src/model/quant/pack_c8.ts";
import { packColumnBlocks } from "../../src/model/weight_layout.ts";
import { quantizeQ8_0 } from "../../src/model/quant/q8_0.ts";
import { quantizeQ4_0 } from "../../src/model/quant/q4_0.ts";
import { transcodeToQ8X } from "../../src/model/quant/q8x.ts";
import { Q4X_BYTES, Q4X_QS } from "../../src/model/quant/q4x.ts";
import { readF16 } from "../../src/model/quant/f16.ts";
import { createGpu, type Gpu } from "../../src/gpu/device.ts";
import * as rt from "../../src/runtime/runtime.ts";
import { Rng } from "../rng.ts";

/** Q4X blocks with Q4_0's values (scale d, min 8d; the same nibbles), for timing only. */
function q4xFromQ4_0(q4: Uint8Array): Uint8Array {
  const blocks = q4.length / 18;
  const out = new Uint8Array(blocks * Q4X_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const d = readF16(q4, 18 * b);
    view.setFloat32(b * Q4X_BYTES, d, true);
    view.setFloat32(b * Q4X_BYTES + 4, 8 * d, true);
    out.set(q4.subarray(18 * b + 2, 18 * b + 18), b * Q4X_BYTES + Q4X_QS);
  }
  return out;
}

/** A matmul shape (N outputs, K inputs). */
export interface QShape {
  name: string;
  n: number;
  k: number;
}

/** SmolLM2-135M's decoder matmuls as the forward pass fuses them (LM head stays 16-bit). */
export const SMOLLM2_QSHAPES: QShape[] = [
  { name: "qkv", n: 960, k: 576 },
  { name: "o", n: 576, k: 576 },
  { name: "gate_up", n: 3072, k: 576 },
  { name: "down", n: 576, k: 1536 },
];

/** One measurement. */
export interface QMatmulRow {
  variant: string;
  shape: string;
  m: number;
  /** Median GPU time per dispatch (or dispatch pair), ms. */
  gpuMs: number;
  /** Bytes of the weights the kernel streams (packed layout). */
  weightBytes: number;
  /** weightBytes / gpuMs. */
  gbps: number;
  /** f16 gemv_c8's time / this time (same shape, same rows). */
  speedup: number;
}

const ROTATE_BYTES = 64 << 20;


function gaussian(rng: Rng, n: number, scale: number): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

/** Times every variant on every shape; returns the rows. */
export async function benchQMatmuls(
  gpu: Gpu,
  options: {
    shapes?: QShape[];
    ms?: number[];
    rounds?: number;
    targetPassMs?: number;
    log?: (s: string) => void;
  } = {},
): Promise<QMatmulRow[]> {
  const shapes = options.shapes ?? SMOLLM2_QSHAPES;
  const ms = options.ms ?? [1, 8];
  const log = options.log ?? console.log;
  const rng = new Rng(31);
  const rows: QMatmulRow[] = [];
  for (const shape of shapes) {
    const kit = await QuantKit.create({ shared: gpu });
    try {
      const { n, k } = shape;
      const wf = gaussian(rng, n * k, 0.02);
      const f16 = packColumnBlocks({ data: wf, rows: n, cols: k });
      const quant: Record<string, QuantMatrix> = {
        q8_0: { type: "Q8_0", rows: n, k, data: quantizeQ8_0(wf) },
        q4_0: { type: "Q4_0", rows: n, k, data: quantizeQ4_0(wf) },
        q8x: { type: "Q8X", rows: n, k, data: transcodeToQ8X("Q4_0", quantizeQ4_0(wf), (n * k) / 32) },
        q4x: { type: "Q4X", rows: n, k, data: q4xFromQ4_0(quantizeQ4_0(wf)) },
      };
      const copies = (bytes: number, data: ArrayBufferView<ArrayBuffer>) =>
        Array.from(
          { length: Math.max(2, Math.ceil(ROTATE_BYTES / bytes)) },
          () => kit.buffer(data),
        );
      const f16Buffers = copies(f16.data.byteLength, f16.data);
      const packed = Object.fromEntries(
        Object.entries(quant).map(([name, m]) => {
          const p = packQuantColumnBlocks(m);
          return [name, { packed: p, buffers: copies(p.data.byteLength, p.data) }];
        }),
      );
      const items: Timed[] = [];
      const info = new Map<string, { variant: string; m: number; bytes: number }>();
      const add = (variant: string, m: number, bytes: number, encode: Timed["encode"]) => {
        const id = `${variant} | ${shape.name} | m=${m}`;
        items.push({ id, encode });
        info.set(id, { variant, m, bytes });
      };
      for (const m of ms) {
        const meta = kit.meta(m);
        const x = kit.buffer(gaussian(rng, m * k, 1));
        const out = kit.buffer(m * n * 4);
        {
          const tm = rowTile(m);
          const kern = kit.kernel(GEMV_C8, {
            TM: tm,
            WG: 8,
            W_F32: false,
            SOFTCAP: false,
            XVEC: true,
            NORM: false,
            ACCUM: false,
            GLU: false,
            GELU: false,
            ROPE: false,
            BIAS: false,
            KV_F16: false,
            GATHER: false,
            GAMMA: false,
          });
          const params = {
            k,
            blocks: f16.cols / 8,
            ldx: k,
            ldo: n,
            block_off: 0,
            n_out: n,
            rows_kind: 0,
            eps: 0,
            nh: 0,
            nkv: 0,
            head_dim: 0,
            block_size: 0,
            w_stride: k,
            cap: 0,
          };
          const ds = f16Buffers.map((w) =>
            kit.dispatch(kern, meta, params, { x, w, out }, [
              Math.ceil(f16.cols / 8 / 8),
              Math.ceil(m / tm),
              1,
            ])
          );
          add(
            "f16 gemv_c8",
            m,
            f16.data.byteLength,
            (pass, rep) => QuantKit.encode(pass, ds[rep % ds.length]),
          );
        }
        for (const [name, { packed: p, buffers }] of Object.entries(packed)) {
          const base = {
            weight: quant[name],
            packed: p,
            weightBuffer: buffers[0],
            rows: m,
            meta,
            x,
            ldx: k,
            out,
            ldo: n,
            nOut: n,
          };
          const exact = buildQMatmul(kit, base);
          const exactAll = buffers.map((b) => exact.rebind(b));
          add(
            `${name} exact`,
            m,
            p.data.byteLength,
            (pass, rep) => exactAll[rep % buffers.length].forEach((d) => QuantKit.encode(pass, d)),
          );
          // Q8X and Q4X have no fast path.
          if (name === "q8x" || name === "q4x") continue;
          for (const dot4 of kit.gpu.hasPacked4x8 ? [true, false] : [false]) {
            const fast = buildQMatmul(kit, { ...base, xq: true, defines: { DOT4: dot4 } });
            const fastAll = buffers.map((b) => fast.rebind(b));
            const tag = dot4 ? "" : " (no dot4)";
            add(
              `${name} fast${tag}`,
              m,
              p.data.byteLength,
              (pass, rep) => fastAll[rep % buffers.length].forEach((d) => QuantKit.encode(pass, d)),
            );
            add(
              `${name} fast${tag}, matmul only`,
              m,
              p.data.byteLength,
              (pass, rep) => QuantKit.encode(pass, fastAll[rep % buffers.length][1]),
            );
          }
          const q = buildQMatmul(kit, { ...base, xq: true });
          add(`${name} quantize_rows only`, m, 0, (pass) => QuantKit.encode(pass, q.dispatches[0]));
        }
      }
      log(`  ${shape.name} (${n} x ${k}): timing ${items.length} variants, interleaved...`);
      const times = await timeInterleaved(kit.device, items, {
        rounds: options.rounds ?? 7,
        targetPassMs: options.targetPassMs ?? 20,
        maxReps: 32,
      });
      const f16Ms = new Map<number, number>();
      for (const [id, t] of times) {
        if (info.get(id)!.variant === "f16 gemv_c8") f16Ms.set(info.get(id)!.m, t.gpuMs);
      }
      for (const [id, t] of times) {
        const { variant, m, bytes } = info.get(id)!;
        rows.push({
          variant,
          shape: shape.name,
          m,
          gpuMs: t.gpuMs,
          weightBytes: bytes,
          gbps: bytes / (t.gpuMs * 1e6),
          speedup: f16Ms.get(m)! / t.gpuMs,
        });
      }
    } finally {
      kit.destroy();
    }
  }
  return rows;
}

/** A markdown table of the rows, plus the totals over the shapes (one decoder layer). */
export function renderQMatmuls(rows: QMatmulRow[]): string {
  const lines = [
    "| variant | m | " + [...new Set(rows.map((r) => r.shape))].join(" | ") +
    " | layer ms | vs f16 | GB/s |",
    "",
  ];
  lines[1] = lines[0].replace(/[^|]+/g, "---");
  const keys = [...new Set(rows.map((r) => `${r.m}\u0000${r.variant}`))];
  for (const key of keys) {
    const [m, variant] = key.split("\u0000");
    const rs = rows.filter((r) => r.variant === variant && r.m === Number(m));
    const f16 = rows.filter((r) => r.variant === "f16 gemv_c8" && r.m === Number(m));
    const total = rs.reduce((s, r) => s + r.gpuMs, 0);
    const bytes = rs.reduce((s, r) => s + r.weightBytes, 0);
    const f16Total = f16.reduce((s, r) => s + r.gpuMs, 0);
    lines.push(
      `| ${variant} | ${m} | ${rs.map((r) => r.gpuMs.toFixed(3)).join(" | ")} | ${
        total.toFixed(3)
      } | ${(f16Total / total).toFixed(2)}x | ${(bytes / (total * 1e6)).toFixed(2)} |`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const argv = rt.args();
  const quick = argv.includes("--quick");
  const jsonAt = argv.indexOf("--json");
  const gpu = await createGpu();
  const rows = await benchQMatmuls(gpu, { rounds: quick ? 3 : 7, targetPassMs: quick ? 10 : 20 });
  console.log(renderQMatmuls(rows));
  if (jsonAt >= 0) await rt.writeFile(argv[jsonAt + 1], JSON.stringify({ rows }, null, 2));
  gpu.device.destroy();
}
