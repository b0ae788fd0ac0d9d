/**
 * What the two drafters of speculative decoding share (the draft model, `draft_model.ts`, and
 * the MTP head, `mtp_drafter.ts`): each runs a {@link ModelRunner} of its own beside the
 * target, keeps a paged KV per target sequence in a block pool of its own, and drafts in
 * rounds of batched steps where a "shadow" sequence stands for each speculating target
 * sequence.
 * @module
 */
import type { ModelRunner } from "../runner/model_runner.ts";
import { BlockManager } from "../scheduler/block_manager.ts";
import type { SampledRow, StepPlan } from "../scheduler/scheduler.ts";
import { Sequence } from "../scheduler/sequence.ts";
import type { SamplingParams } from "../types/api.ts";

/** A drafter of the engine's speculative decoding (method "draft" or "mtp"). */
export interface Drafter {
  /** Its KV blocks. */
  readonly blocks: BlockManager;
  /** Drafts for the speculating sequences before the scheduler's next plan. */
  propose(running: readonly Sequence[]): Promise<void>;
  /** Frees a sequence's KV (finished, cancelled or preempted). */
  release(seq: Sequence): void;
  /** Frees its GPU resources. */
  close(): void;
}

/** What a sequence's draft KV holds: its blocks, and rows for positions [0, computed) made from `tokens`. */
export interface DraftKv {
  blocks: number[];
  computed: number;
  tokens: number[];
}

/** The drafter's KV per target sequence, over a block pool of its own (no prefix cache). */
export class DraftKvPool {
  readonly blocks: BlockManager;
  #kv = new Map<Sequence, DraftKv>();

  constructor(runner: ModelRunner) {
    this.blocks = new BlockManager(runner.cache.options.numBlocks, runner.cache.options.blockSize);
  }

  /** The sequence's draft KV (empty at its first draft). */
  of(seq: Sequence): DraftKv {
    let kv = this.#kv.get(seq);
    if (!kv) this.#kv.set(seq, kv = { blocks: [], computed: 0, tokens: [] });
    return kv;
  }

  /**
   * Gives `kv` the blocks of its first `positions` positions, returning those past them to the
   * pool; false when the pool is short (the sequence then gets no draft this step, and its
   * speculation backs off).
   */
  fit(kv: DraftKv, positions: number): boolean {
    const want = Math.ceil(positions / this.blocks.blockSize);
    if (kv.blocks.length > want) this.blocks.release(kv.blocks.splice(want));
    if (kv.blocks.length < want) {
      if (this.blocks.availableCount < want - kv.blocks.length) return false;
      kv.blocks.push(...this.blocks.allocate(want - kv.blocks.length));
    }
    return true;
  }

  /** Frees a sequence's draft KV. */
  release(seq: Sequence): void {
    const kv = this.#kv.get(seq);
    if (!kv) return;
    this.blocks.release(kv.blocks);
    this.#kv.delete(seq);
  }

  /** Frees every sequence's draft KV. */
  releaseAll(): void {
    for (const seq of [...this.#kv.keys()]) this.release(seq);
  }
}

/**
 * Whether `seq` gets a draft round before the next plan: it speculates, runs, has every token
 * known and waits for its next decode, and holds no proposal for these tokens yet (the plan
 * did not take it).
 */
export function wantsDraft(seq: Sequence): boolean {
  const spec = seq.speculation;
  if (!spec?.active || seq.status !== "running" || seq.cancelled || seq.pending > 0) return false;
  return seq.totalLength - seq.numComputed === 1 && spec.proposalAt !== seq.knownLength;
}

/**
 * A sequence standing for `target` in the drafter's steps: `tokens` its input, `kv` its blocks
 * and computed rows, `maxTokens` the draft length, sampled with `sampling` (no stop tokens).
 */
export function shadowSequence(
  id: number,
  target: Sequence,
  tokens: number[],
  kv: DraftKv,
  maxTokens: number,
  sampling: SamplingParams,
): Sequence {
  const shadow = new Sequence(id, tokens, { maxTokens, sampling, stopTokenIds: new Set() }, 0);
  shadow.blockTable = kv.blocks;
  shadow.numComputed = kv.computed;
  shadow.slot = target.slot;
  shadow.status = "running";
  return shadow;
}

/**
 * Runs the shadows' draft steps until each has sampled its `maxTokens`: every step feeds each
 * shadow's tokens not yet fed (its catch-up chunk, or its last drafted token, fed from the
 * GPU's output record) within the runner's token budget, then one readback gives every
 * sampled row. `probsRow` names the q row a sampled row writes (sampled drafts), if any.
 */
export async function runDraftSteps(
  runner: ModelRunner,
  shadows: readonly Sequence[],
  probsRow?: (shadow: Sequence) => number | undefined,
): Promise<SampledRow[]> {
  const rows: SampledRow[] = [];
  while (true) {
    const plan: StepPlan = { chunks: [], admitted: [], preempted: [], finished: [], prefillTokens: 0, decodeTokens: 0 };
    let budget = runner.capacity.maxTokens;
    for (const s of shadows) {
      if (budget <= 0) break;
      if (s.generated >= s.maxTokens) continue;
      const start = s.numComputed;
      const n = Math.min(budget, s.totalLength - start);
      const sample = start + n === s.totalLength;
      const row = sample ? probsRow?.(s) : undefined;
      plan.chunks.push({ seq: s, start, count: n, sample, pool: "none", ...(row !== undefined ? { probsRow: row } : {}) });
      s.numComputed += n;
      if (sample) s.pending++;
      budget -= n;
    }
    if (plan.chunks.length === 0) break;
    const out = await runner.step(plan);
    if (out) rows.push(...out.tokens);
  }
  const idle: StepPlan = { chunks: [], admitted: [], preempted: [], finished: [], prefillTokens: 0, decodeTokens: 0 };
  for (let out = await runner.step(idle); out; out = await runner.step(idle)) rows.push(...out.tokens);
  return rows;
}
