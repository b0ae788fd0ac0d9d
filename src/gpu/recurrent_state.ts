/**
 * The GPU side of hybrid models' recurrent state: per Gated DeltaNet layer, one conv state
 * ([slot][channel][kernel - 1] f32) and one delta-rule state ([slot][value head][dk][dv] f32).
 * A running sequence owns one slot (the scheduler's sequence slot, indexed per step by the
 * metadata's state slots), next to its paged KV blocks for the attention layers. Nothing is
 * cleared between owners: a chunk starting at position 0 starts from zeros in the kernels.
 * @module
 */
import { KvCacheSizeError } from "./kv_cache.ts";

/** The linear-attention layers' shapes (the model's LinearAttentionSpec has them). */
export interface RecurrentStateShape {
  /** Per layer: whether it keeps a state. */
  layers: readonly boolean[];
  numKeyHeads: number;
  numValueHeads: number;
  keyHeadDim: number;
  valueHeadDim: number;
  convKernel: number;
}

/** Per-layer recurrent-state buffers for `slots` sequences. */
export class RecurrentState {
  readonly slots: number;
  /** Indexed by layer; null for attention layers. */
  readonly conv: (GPUBuffer | null)[];
  readonly delta: (GPUBuffer | null)[];

  constructor(device: GPUDevice, lin: RecurrentStateShape, slots: number, maxBindingBytes: number) {
    this.slots = slots;
    const { conv, delta } = RecurrentState.slotBytesPerLayer(lin);
    if (delta * slots > maxBindingBytes) {
      throw new KvCacheSizeError(
        `recurrent state of ${slots} sequences needs ${delta * slots} bytes per layer, over the binding limit ${maxBindingBytes}; lower maxSeqs`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.conv = lin.layers.map((on, l) => on ? device.createBuffer({ label: `conv_state.${l}`, size: conv * slots, usage }) : null);
    this.delta = lin.layers.map((on, l) => on ? device.createBuffer({ label: `delta_state.${l}`, size: delta * slots, usage }) : null);
  }

  /** Bytes of one slot in one layer (conv and delta state). */
  static slotBytesPerLayer(lin: RecurrentStateShape): { conv: number; delta: number } {
    const channels = 2 * lin.numKeyHeads * lin.keyHeadDim + lin.numValueHeads * lin.valueHeadDim;
    return {
      conv: channels * (lin.convKernel - 1) * 4,
      delta: lin.numValueHeads * lin.keyHeadDim * lin.valueHeadDim * 4,
    };
  }

  /** Bytes of one sequence's state across all linear layers. */
  static slotBytes(lin: RecurrentStateShape): number {
    const { conv, delta } = RecurrentState.slotBytesPerLayer(lin);
    return (conv + delta) * lin.layers.filter(Boolean).length;
  }

  /** Total bytes held on the GPU. */
  get bytes(): number {
    return [...this.conv, ...this.delta].reduce((n, b) => n + (b?.size ?? 0), 0);
  }

  /** Frees the GPU buffers. */
  destroy(): void {
    for (const b of [...this.conv, ...this.delta]) b?.destroy();
  }
}
