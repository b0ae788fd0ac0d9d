/**
 * Speculative decoding on hybrid models: one snapshot of each sequence slot's recurrent state
 * (conv and delta-rule state of every linear-attention layer), taken right before the slot's
 * verification step in the same command stream (a buffer copy, no readback). A verification
 * advances the state over all its rows; when a draft token is rejected, the scheduler puts the
 * sequence back to its last token before the verification and the next chunk restores the
 * snapshot first, then recomputes the accepted tokens (see `scheduler/scheduler.ts`).
 *
 * The snapshots are separate buffers (never bound to a kernel), one slot per sequence slot, so
 * every running sequence has its snapshot slot without an admission check; they cost as much
 * memory as the state itself.
 * @module
 */
import type { RecurrentState } from "./recurrent_state.ts";

/** Per-layer copies of a {@link RecurrentState}'s slots. */
export class StateSnapshots {
  readonly #state: RecurrentState;
  readonly #conv: (GPUBuffer | null)[];
  readonly #delta: (GPUBuffer | null)[];

  constructor(device: GPUDevice, state: RecurrentState) {
    this.#state = state;
    const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const make = (b: GPUBuffer | null, l: number, name: string) => b ? device.createBuffer({ label: `${name}_snapshot.${l}`, size: b.size, usage }) : null;
    this.#conv = state.conv.map((b, l) => make(b, l, "conv_state"));
    this.#delta = state.delta.map((b, l) => make(b, l, "delta_state"));
  }

  /** Copies `slot`'s state into its snapshot (encode before the step's compute pass). */
  save(encoder: GPUCommandEncoder, slot: number): void {
    this.#copy(encoder, slot, true);
  }

  /** Copies `slot`'s snapshot back into its state (encode before the step's compute pass). */
  restore(encoder: GPUCommandEncoder, slot: number): void {
    this.#copy(encoder, slot, false);
  }

  #copy(encoder: GPUCommandEncoder, slot: number, save: boolean): void {
    const s = this.#state;
    for (const [live, snap] of [[s.conv, this.#conv], [s.delta, this.#delta]] as const) {
      live.forEach((b, l) => {
        const c = snap[l];
        if (!b || !c) return;
        const size = b.size / s.slots;
        if (save) encoder.copyBufferToBuffer(b, slot * size, c, slot * size, size);
        else encoder.copyBufferToBuffer(c, slot * size, b, slot * size, size);
      });
    }
  }

  /** Total bytes held on the GPU. */
  get bytes(): number {
    return [...this.#conv, ...this.#delta].reduce((n, b) => n + (b?.size ?? 0), 0);
  }

  /** Frees the GPU buffers. */
  destroy(): void {
    for (const b of [...this.#conv, ...this.#delta]) b?.destroy();
  }
}
