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
import { BlockManager } from "../scheduler/block_manager.ts";
import type { SampledRow, StepPlan } from "../scheduler/scheduler.ts";
import { Sequence } from "../scheduler/sequence.ts";
import type { Drafter } from "./draft_model.ts";

/** Draft sampling: argmax (q one-hot), so acceptance by comparison is exact. */
const GREEDY = Object.freeze({ ...SAMPLING_DEFAULTS, temperature: 0 });

/** A hidden source with this bit set is the head's own output row (kernels/mtp_input.wgsl). */
const OWN_HIDDEN = 0x80000000;

/** What a sequence's MTP KV holds: its blocks, and rows for positions [0, computed) made from `tokens`. */
interface MtpKv {
  blocks: number[];
  computed: number;
  tokens: number[];
}

/** One sequence's part in a round of draft steps. */
interface Lane {
  target: Sequence;
  /** Stands for the target in the head's steps: its tokens are the target's shifted by one. */
  shadow: Sequence;
  kv: MtpKv;
  known: number[];
  draft: number[];
}

/** The MTP head beside its target runner. */
export class MtpDrafter implements Drafter {
  readonly runner: ModelRunner;
  /** The head's KV blocks (no prefix cache: only allocate and release). */
  readonly blocks: BlockManager;
  #kv = new Map<Sequence, MtpKv>();
  #lanes = new Map<Sequence, Lane>();
  #nextId = 0;

  private constructor(runner: ModelRunner) {
    this.runner = runner;
    this.blocks = new BlockManager(runner.cache.options.numBlocks, runner.cache.options.blockSize);
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
    const bs = this.blocks.blockSize;
    for (const seq of running) {
      const spec = seq.speculation;
      if (!spec?.active || seq.status !== "running" || seq.cancelled || seq.pending > 0) continue;
      if (seq.totalLength - seq.numComputed !== 1) continue;
      if (spec.proposalAt === seq.knownLength) continue;
      const known = seq.knownTokens();
      const L = known.length;
      // The head's last row (the k-th draft's input) sits at position L + k - 3.
      const limit = Math.min(spec.k, seq.maxTokens - seq.generated - 1, this.runner.maxContext - L + 2);
      if (limit <= 0 || L < 2) continue;
      let kv = this.#kv.get(seq);
      if (!kv) this.#kv.set(seq, kv = { blocks: [], computed: 0, tokens: [] });
      // Row p was made from tokens [0, p + 1]: keep the rows whose tokens the sequence still has.
      let same = 0;
      while (same < kv.tokens.length && same < L && kv.tokens[same] === known[same]) same++;
      kv.computed = Math.max(0, Math.min(kv.computed, same - 1, L - 2));
      const want = Math.ceil((L + limit - 2) / bs);
      if (kv.blocks.length > want) this.blocks.release(kv.blocks.splice(want));
      if (kv.blocks.length < want) {
        // Out of blocks: this sequence gets no draft this step (its scheduler backs off).
        if (this.blocks.availableCount < want - kv.blocks.length) continue;
        kv.blocks.push(...this.blocks.allocate(want - kv.blocks.length));
      }
      const shadow = new Sequence(-1 - this.#nextId++, known.slice(1), { maxTokens: limit, sampling: GREEDY, stopTokenIds: new Set() }, 0);
      shadow.blockTable = kv.blocks;
      shadow.numComputed = kv.computed;
      shadow.slot = seq.slot;
      shadow.status = "running";
      const lane = { target: seq, shadow, kv, known, draft: [] };
      lanes.push(lane);
      this.#lanes.set(shadow, lane);
    }
    if (lanes.length === 0) return;
    const rows: SampledRow[] = [];
    try {
      while (true) {
        const plan: StepPlan = { chunks: [], admitted: [], preempted: [], finished: [], prefillTokens: 0, decodeTokens: 0 };
        let budget = this.runner.capacity.maxTokens;
        for (const { shadow: s } of lanes) {
          if (budget <= 0) break;
          if (s.generated >= s.maxTokens) continue;
          const start = s.numComputed;
          const n = Math.min(budget, s.totalLength - start);
          const sample = start + n === s.totalLength;
          plan.chunks.push({ seq: s, start, count: n, sample, pool: "none" });
          s.numComputed += n;
          if (sample) s.pending++;
          budget -= n;
        }
        if (plan.chunks.length === 0) break;
        const out = await this.runner.step(plan);
        if (out) rows.push(...out.tokens);
      }
      const idle: StepPlan = { chunks: [], admitted: [], preempted: [], finished: [], prefillTokens: 0, decodeTokens: 0 };
      for (let out = await this.runner.step(idle); out; out = await this.runner.step(idle)) rows.push(...out.tokens);
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
    const kv = this.#kv.get(seq);
    if (!kv) return;
    this.blocks.release(kv.blocks);
    this.#kv.delete(seq);
  }

  /** Frees the head's GPU resources (the target's shared embedding and LM head stay). */
  close(): void {
    for (const seq of [...this.#kv.keys()]) this.release(seq);
    this.runner.close();
  }
}
