/**
 * A sparse layer's weights on the GPU: the router as f32 `[E, H]`, and every expert's
 * matrices stacked in one buffer per kind, in the hub's Linear layout (row-major, one row per
 * output): `gate_up` `[E][2I][H]` and `down` `[E][H][I]`, as f16 bits or f32 values. The
 * expert kernels (`kernels/moe_*.wgsl`) index an expert's rows at `e * rows * K`, so a step
 * reads only the experts its tokens were routed to.
 *
 * Qwen3-MoE: gate rows then up rows per expert. gpt-oss: transformers' `x @ W` tensors
 * (`gate_up_proj [E, H, 2I]`, `down_proj [E, I, H]`) transposed at load, so gate/up rows stay
 * interleaved (row 2j gate j, 2j+1 up j) as the hub's MXFP4 blocks have them; MXFP4 experts
 * are uploaded as their blocks and scales, unchanged, and dequantized in the kernels.
 * @module
 */
import type { MoeSpec } from "./moe_config.ts";
import { CheckpointError } from "./errors.ts";
import { release } from "./release.ts";

/** The GPU weights of one sparse feed-forward. */
export interface MoeLayerWeights {
  /** f32 `[E, H]`. */
  router: GPUBuffer;
  /** `[E][2I][H]`: gate rows then up rows per expert. */
  gateUp: GPUBuffer;
  /** `[E][H][I]`. */
  down: GPUBuffer;
  dtype: "f16" | "f32" | "mxfp4";
  /** Bytes of one expert's matrices (gate, up and down). */
  expertBytes: number;
  /** gpt-oss: the router's bias [E] and the experts' biases, gate|up [E][2I] (interleaved) and down [E][H]. */
  routerBias: GPUBuffer | null;
  gateUpBias: GPUBuffer | null;
  downBias: GPUBuffer | null;
  /** MXFP4: the E8M0 scale bytes of `gateUp` and `down` (one per 32 weights). */
  gateUpScales: GPUBuffer | null;
  downScales: GPUBuffer | null;
}

/** Every buffer of a sparse layer. */
export function moeBuffers(w: MoeLayerWeights): GPUBuffer[] {
  return [w.router, w.gateUp, w.down, w.routerBias, w.gateUpBias, w.downBias, w.gateUpScales, w.downScales]
    .filter((b): b is GPUBuffer => b !== null);
}

/** How {@link uploadMoeLayer} reads and writes: callbacks into the weight uploader. */
export interface MoeUploadIo {
  device: GPUDevice;
  /** A tensor's values as f32 (HF layout). */
  read(name: string): Promise<Float32Array<ArrayBuffer>>;
  /** A tensor's raw bytes (the MXFP4 blocks and scales). */
  readBytes(name: string): Promise<Uint8Array<ArrayBuffer>>;
  /** Writes `data` at byte offset 0.. of `buffer` (queued, bounded). */
  write(buffer: GPUBuffer, byteOffset: number, data: Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> | Uint8Array<ArrayBuffer>): Promise<void>;
  maxBindingBytes: number;
}

function buffer(device: GPUDevice, label: string, bytes: number): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
}

/** Uploads layer `prefix`'s router and experts (`mlp.gate`, `mlp.experts.N.*`). */
export async function uploadMoeLayer(
  io: MoeUploadIo,
  moe: MoeSpec,
  prefix: string,
  hiddenSize: number,
  dtype: "f16" | "f32",
  label: string,
): Promise<MoeLayerWeights> {
  const E = moe.numExperts;
  const H = hiddenSize;
  const I = moe.expertIntermediateSize;
  const elem = dtype === "f16" ? 2 : 4;
  // The expert kernels read weights two at a time.
  if (H % 2 !== 0 || I % 2 !== 0) {
    throw new CheckpointError(prefix, `experts need even hidden (${H}) and expert (${I}) sizes`);
  }
  const expertBytes = 3 * H * I * elem;
  if (E * 2 * I * H * elem > io.maxBindingBytes) {
    throw new CheckpointError(
      prefix,
      `${E} experts' gate|up (${E * 2 * I * H * elem} bytes) exceed the binding limit ${io.maxBindingBytes}`,
    );
  }
  if (moe.experts === "gpt_oss") return await uploadGptOssLayer(io, moe, prefix, hiddenSize, dtype, label);
  const convert = (v: Float32Array<ArrayBuffer>) => dtype === "f16" ? new Uint16Array(Float16Array.from(v).buffer) : v;
  const router = buffer(io.device, `${label}.router`, E * H * 4);
  await io.write(router, 0, await io.read(`${prefix}.mlp.gate.weight`));
  const gateUp = buffer(io.device, `${label}.experts_gate_up`, E * 2 * I * H * elem);
  const down = buffer(io.device, `${label}.experts_down`, E * H * I * elem);
  for (let e = 0; e < E; e++) {
    const p = `${prefix}.mlp.experts.${e}`;
    const parts: [GPUBuffer, number, string][] = [
      [gateUp, (e * 2 * I) * H * elem, "gate_proj"],
      [gateUp, (e * 2 * I + I) * H * elem, "up_proj"],
      [down, e * H * I * elem, "down_proj"],
    ];
    for (const [dst, offset, name] of parts) {
      const f32 = await io.read(`${p}.${name}.weight`);
      const data = convert(f32);
      await io.write(dst, offset, data);
      if (data !== f32) release(f32);
    }
  }
  return { router, gateUp, down, dtype, expertBytes, routerBias: null, gateUpBias: null, downBias: null, gateUpScales: null, downScales: null };
}

/** [E][R][C] -> [E][C][R] (x @ W tensors to Linear rows). */
function transposeExperts(v: Float32Array, E: number, R: number, C: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(v.length);
  for (let e = 0; e < E; e++) {
    const base = e * R * C;
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[base + c * R + r] = v[base + r * C + c];
  }
  return out;
}

/** Bytes padded to whole u32 words (the kernels read bytes out of words). */
function padWords(b: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  if (b.length % 4 === 0) return b;
  const out = new Uint8Array(Math.ceil(b.length / 4) * 4);
  out.set(b);
  return out;
}

async function uploadGptOssLayer(
  io: MoeUploadIo,
  moe: MoeSpec,
  prefix: string,
  H: number,
  dtype: "f16" | "f32",
  label: string,
): Promise<MoeLayerWeights> {
  const E = moe.numExperts;
  const I = moe.expertIntermediateSize;
  const m = `${prefix}.mlp`;
  const vector = async (name: string, tag: string) => {
    const v = await io.read(name);
    const b = buffer(io.device, `${label}.${tag}`, v.byteLength);
    await io.write(b, 0, v);
    return b;
  };
  const bytes = async (name: string, tag: string) => {
    const v = padWords(await io.readBytes(name));
    const b = buffer(io.device, `${label}.${tag}`, v.byteLength);
    await io.write(b, 0, v);
    return b;
  };
  const common = {
    router: await vector(`${m}.router.weight`, "router"),
    routerBias: await vector(`${m}.router.bias`, "router_bias"),
    gateUpBias: await vector(`${m}.experts.gate_up_proj_bias`, "experts_gate_up_bias"),
    downBias: await vector(`${m}.experts.down_proj_bias`, "experts_down_bias"),
  };
  if (moe.mxfp4) {
    return {
      ...common,
      gateUp: await bytes(`${m}.experts.gate_up_proj_blocks`, "experts_gate_up_blocks"),
      gateUpScales: await bytes(`${m}.experts.gate_up_proj_scales`, "experts_gate_up_scales"),
      down: await bytes(`${m}.experts.down_proj_blocks`, "experts_down_blocks"),
      downScales: await bytes(`${m}.experts.down_proj_scales`, "experts_down_scales"),
      dtype: "mxfp4",
      // 4 bits per weight plus a scale byte per 32.
      expertBytes: (3 * H * I) / 2 + (3 * H * I) / 32,
    };
  }
  const elem = dtype === "f16" ? 2 : 4;
  if (E * 2 * I * H * elem > io.maxBindingBytes) {
    throw new CheckpointError(prefix, `${E} experts' gate|up (${E * 2 * I * H * elem} bytes) exceed the binding limit ${io.maxBindingBytes}`);
  }
  const matrix = async (name: string, R: number, C: number, tag: string) => {
    const rows = transposeExperts(await io.read(name), E, R, C);
    const data = dtype === "f16" ? new Uint16Array(Float16Array.from(rows).buffer) : rows;
    const b = buffer(io.device, `${label}.${tag}`, data.byteLength);
    await io.write(b, 0, data);
    return b;
  };
  return {
    ...common,
    gateUp: await matrix(`${m}.experts.gate_up_proj`, H, 2 * I, "experts_gate_up"),
    down: await matrix(`${m}.experts.down_proj`, I, H, "experts_down"),
    gateUpScales: null,
    downScales: null,
    dtype,
    expertBytes: 3 * H * I * elem,
  };
}
