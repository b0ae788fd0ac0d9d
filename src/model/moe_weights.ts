/**
 * A sparse layer's weights on the GPU: the router as f32 `[E, H]`, and every expert's
 * matrices stacked in one buffer per kind, in the hub's Linear layout (row-major, one row per
 * output): `gate_up` `[E][2I][H]` (gate rows then up rows of expert e) and `down` `[E][H][I]`,
 * as f16 bits or f32 values. The expert kernels (`kernels/moe_*.wgsl`) index an expert's rows
 * at `e * rows * K`, so a step reads only the experts its tokens were routed to.
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
  dtype: "f16" | "f32";
  /** Bytes of one expert's matrices (gate, up and down). */
  expertBytes: number;
}

/** How {@link uploadMoeLayer} reads and writes: callbacks into the weight uploader. */
export interface MoeUploadIo {
  device: GPUDevice;
  /** A tensor's values as f32 (HF layout). */
  read(name: string): Promise<Float32Array<ArrayBuffer>>;
  /** Writes `data` at byte offset 0.. of `buffer` (queued, bounded). */
  write(buffer: GPUBuffer, byteOffset: number, data: Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer>): Promise<void>;
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
  return { router, gateUp, down, dtype, expertBytes };
}
