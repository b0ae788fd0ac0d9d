/**
 * Speculative decoding's "mtp" method: the checkpoint's own multi-token-prediction head
 * (Qwen3.5's `mtp.*`) drafts from the target's hidden states; no second model.
 *
 * The head (see docs/speculative.md#mtp) is one full-attention decoder layer whose row at
 * position p takes `fc(cat(norm_e(embed(t[p+1])), norm_h(h[p])))`, h[p] the target's hidden
 * state at p after its final norm, and whose output (after `mtp.norm`) goes through the
 * target's LM head to predict t[p+2]. It runs in a {@link ModelRunner} of its own
 * (`ModelRunner.loadMtp`: its own paged KV of one layer, its own block pool, the target's
 * embedding and LM head); the target keeps every computed row's hidden state at its KV slot
 * (`ModelRunner.hiddenStore`), so the head reads the rows of a sequence's accepted positions
 * on the GPU.
 *
 * Drafting mirrors the draft-model method (`draft_model.ts`): before each target step, every
 * speculating sequence whose tokens are all known catches the head up on the positions it has
 * not seen with the target's hidden rows (the prompt at the first draft, then the tokens
 * accepted since), sampling the first draft token at the last of them; each further draft
 * token is one chained step whose hidden input is the head's own previous output row (vLLM's
 * chaining). All speculating sequences share each step; drafts are greedy (q one-hot), so the
 * existing acceptance is the exact rejection rule. Chained rows used the head's own hidden
 * rows, not the target's, so they are recomputed at the next catch-up: the head's KV keeps
 * only its catch-up rows.
 * @module
 */
import { type EngineOptions, SAMPLING_DEFAULTS } from "../types/api.ts";
import { ModelRunner } from "../runner/model_runner.ts";
import type { BlockManager } from "../scheduler/block_manager.ts";
import type { SampledRow } from "../scheduler/scheduler.ts";
import type { Sequence } from "../scheduler/sequence.ts";
import { type DraftKv, DraftKvPool, type Drafter, runDraftSteps, shadowSequence, wantsDraft } from "./draft_rounds.ts";

/** Draft sampling: argmax (q one-hot), so acceptance by comparison is exact. */
const GREEDY = Object.freeze({ ...SAMPLING_DEFAULTS, temperature: 0 });

/** A hidden source with this bit set is the head's own output row (kernels/mtp_input.wgsl). */
const OWN_HIDDEN = 0x80000000;

/** One sequence's part in a round of draft steps. */
interface Lane {
  target: Sequence;
  /** Stands for the target in the head's steps: its tokens are the target's shifted by one. */
  shadow: Sequence;
  kv: DraftKv;
  known: number[];
  draft: number[];
}

/** The MTP head beside its target runner. */
export class MtpDrafter implements Drafter {
  readonly runner: ModelRunner;
  #kv: DraftKvPool;
  /** The head's KV blocks. */
  get blocks(): BlockManager {
    return this.#kv.blocks;
  }
  #lanes = new Map<Sequence, Lane>();
  #nextId = 0;

  private constructor(runner: ModelRunner) {
    this.runner = runner;
    this.#kv = new DraftKvPool(runner);
    const bs = runner.cache.options.blockSize;
    runner.hiddenSource = (shadow, pos) => {
      const lane = this.#lanes.get(shadow)!;
      // Catch-up rows read the target's row at their position; chained rows the head's own
      // output row of the position before.
      if (pos < lane.known.length - 1) return lane.target.blockTable[Math.floor(pos / bs)] * bs + pos % bs;
      const q = pos - 1;
      return (OWN_HIDDEN | (shadow.blockTable[Math.floor(q / bs)] * bs + q % bs)) >>> 0;
    };
  }

  /**
   * Loads the MTP head of the target's checkpoint `dir` (the target loaded with
   * `hiddenStore`). Throws `MtpHeadMissingError` when it has none.
   */
  static async load(
    target: ModelRunner,
    dir: string,
    numSpeculativeTokens: number,
    options: Pick<EngineOptions, "attn" | "weightDType" | "quantization" | "quantizedActivations">,
  ): Promise<MtpDrafter> {
    const runner = await ModelRunner.loadMtp(target, dir, {
      attn: options.attn,
      weightDType: options.weightDType,
      quantization: options.quantization,
      quantizedActivations: options.quantizedActivations,
      // A round of k draft steps fills one readback batch.
      stepsPerSync: numSpeculativeTokens,
    });
    return new MtpDrafter(runner);
  }

  /**
   * Drafts for every running sequence that speculates, has all its tokens known and waits
   * for its next decode: up to `k` tokens (its current draft length, within `maxTokens`),
   * handed to its speculation state for the scheduler's next plan. One round of batched
   * steps and one readback for all of them.
   */
  async propose(running: readonly Sequence[]): Promise<void> {
    const lanes: Lane[] = [];
    for (const seq of running) {
      if (!wantsDraft(seq)) continue;
      const known = seq.knownTokens();
      const L = known.length;
      // The head's last row (the k-th draft's input) sits at position L + k - 3.
      const limit = Math.min(seq.speculation!.k, seq.maxTokens - seq.generated - 1, this.runner.maxContext - L + 2);
      if (limit <= 0 || L < 2) continue;
      const kv = this.#kv.of(seq);
      // Row p was made from tokens [0, p + 1]: keep the rows whose tokens the sequence still has.
      let same = 0;
      while (same < kv.tokens.length && same < L && kv.tokens[same] === known[same]) same++;
      kv.computed = Math.max(0, Math.min(kv.computed, same - 1, L - 2));
      if (!this.#kv.fit(kv, L + limit - 2)) continue;
      const shadow = shadowSequence(-1 - this.#nextId++, seq, known.slice(1), kv, limit, GREEDY);
      const lane = { target: seq, shadow, kv, known, draft: [] };
      lanes.push(lane);
      this.#lanes.set(shadow, lane);
    }
    if (lanes.length === 0) return;
    let rows: SampledRow[];
    try {
      rows = await runDraftSteps(this.runner, lanes.map((l) => l.shadow));
    } finally {
      for (const { shadow } of lanes) this.#lanes.delete(shadow);
    }
    const byShadow = new Map(lanes.map((l) => [l.shadow, l]));
    for (const { seq, outputIndex, token } of rows) byShadow.get(seq)!.draft[outputIndex] = token.id;
    const vocab = this.runner.spec.vocabSize;
    for (const { target, kv, known, draft } of lanes) {
      // Only the catch-up rows stay valid (chained rows read the head's own hidden rows).
      kv.computed = known.length - 1;
      kv.tokens = known;
      const cut = draft.findIndex((id) => id >= vocab);
      target.speculation!.propose(known.length, cut < 0 ? draft : draft.slice(0, cut));
    }
  }

  /** Frees a sequence's MTP KV (it finished, was cancelled or preempted). */
  release(seq: Sequence): void {
    this.#kv.release(seq);
  }

  /** Frees the head's GPU resources (the target's shared embedding and LM head stay). */
  close(): void {
    this.#kv.releaseAll();
    this.runner.close();
  }
}
