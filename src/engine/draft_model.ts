/**
 * Speculative decoding's "draft" method: a second, smaller model with the target's tokenizer
 * proposes the tokens a verification step checks.
 *
 * It has its own {@link ModelRunner} (weights, paged KV cache, GPU sampler) on the target's
 * device and its own block pool. Before each target step, every speculating sequence whose
 * tokens are all known gets up to k draft tokens ({@link DraftModel.propose}): the
 * draft model first catches up on the tokens it has not seen (the prompt at the first draft,
 * then the tokens accepted since), sampling its first draft token at the end of that chunk,
 * then drafts one token per step. Every speculating sequence shares each of those steps, a
 * drafted token is fed to the next step from the GPU's output record (no wait between steps),
 * and the drafts come back in one readback.
 *
 * Greedy requests draft greedily (q one-hot at the draft's argmax): the target's argmax then
 * keeps the draft while they agree, token for token what plain decoding gives. Sampled
 * requests draft d ~ q, q the draft's distribution after the request's own temperature,
 * top-k, top-p and min-p: the draft runner's sampler writes each draft row's q into
 * {@link DraftModel.probs} (slot-major, k rows per sequence slot, on the GPU), and the target's
 * verification rows accept d with probability min(1, p(d)/q(d)), else sample max(p - q, 0)
 * (kernels/sample.wgsl): the standard rejection rule, the target's distribution kept.
 *
 * The draft's KV is rolled back lazily: before drafting again, a sequence keeps the longest
 * prefix of the positions its draft KV holds that its known tokens still agree with (its
 * accepted drafts), and overwrites the rest; blocks past what the next draft needs go back
 * to the pool. A finished, cancelled or preempted sequence gives all its draft blocks back
 * ({@link DraftModel.release}).
 * @module
 */
import { DraftModelMismatchError, type DraftSpeculativeConfig, type EngineOptions, LlmError, SAMPLING_DEFAULTS } from "../types/api.ts";
import { ModelRunner } from "../runner/model_runner.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import type { BlockManager } from "../scheduler/block_manager.ts";
import type { Sequence } from "../scheduler/sequence.ts";
import { type DraftKv, DraftKvPool, type Drafter, runDraftSteps, shadowSequence, wantsDraft } from "./draft_rounds.ts";

/** Draft sampling of greedy requests: argmax (q one-hot), so acceptance by comparison is exact. */
const GREEDY = Object.freeze({ ...SAMPLING_DEFAULTS, temperature: 0 });

/**
 * The seed of a sampled request's draft round after `at` known tokens: its draws must be
 * independent of the target's (seed, output index) draws and of earlier rounds'.
 */
function draftSeed(seed: number, at: number): number {
  let h = (seed ^ Math.imul(at + 1, 0x9e3779b1) ^ 0x5bd1e995) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** One sequence's part in a round of draft steps. */
interface Lane {
  target: Sequence;
  /** Stands for the target in the draft runner's steps (its blocks are the draft's). */
  shadow: Sequence;
  kv: DraftKv;
  known: number[];
  draft: number[];
  /** Drafts d ~ q, each q kept in {@link DraftModel.probs} (a sampled request). */
  sampled: boolean;
}

/**
 * Refuses a draft model whose tokenizer differs from the target's: the vocabulary size, any
 * token's piece or special flag, BOS or EOS. Throws {@link DraftModelMismatchError}.
 */
export async function checkDraftTokenizer(target: string, draft: string): Promise<void> {
  const [t, d] = await Promise.all([Tokenizer.load(target), Tokenizer.load(draft)]);
  const mismatch = (what: string) => new DraftModelMismatchError(`${JSON.stringify(draft)} does not share the target's tokenizer: ${what}`);
  if (t.vocabSize !== d.vocabSize) throw mismatch(`its vocabulary has ${d.vocabSize} tokens, the target's ${t.vocabSize}`);
  for (let id = 0; id < t.vocabSize; id++) {
    const [a, b] = [d.tokenToPiece(id), t.tokenToPiece(id)];
    if (a !== b) throw mismatch(`token ${id} is ${JSON.stringify(a)}, the target's ${JSON.stringify(b)}`);
    if (d.isSpecial(id) !== t.isSpecial(id)) throw mismatch(`token ${id} (${JSON.stringify(a)}) is special in only one of them`);
  }
  if (d.bosTokenId !== t.bosTokenId) throw mismatch(`its BOS is ${d.bosTokenId}, the target's ${t.bosTokenId}`);
  if (d.eosTokenIds.join() !== t.eosTokenIds.join()) throw mismatch(`its EOS is [${d.eosTokenIds}], the target's [${t.eosTokenIds}]`);
}

/** The draft model beside a target runner. */
export class DraftModel implements Drafter {
  readonly runner: ModelRunner;
  #kv: DraftKvPool;
  /** The draft KV's blocks. */
  get blocks(): BlockManager {
    return this.#kv.blocks;
  }
  /**
   * The draft distributions of sampled requests: `maxSeqs x k` rows of the draft's vocabulary
   * (f32), row `slot * k + j` for a slot's j-th draft token; read by the target's sampler.
   * Null where they are off (greedy drafts for every request, see {@link DraftModel.load}).
   */
  readonly probs: GPUBuffer | null;
  #k: number;
  /** Ids both models have logits for; a draft token past them ends the draft. */
  #vocab: number;
  #nextId = 0;

  private constructor(runner: ModelRunner, targetVocab: number, k: number, probs: GPUBuffer | null) {
    this.runner = runner;
    this.#kv = new DraftKvPool(runner);
    this.#vocab = Math.min(targetVocab, runner.spec.vocabSize);
    this.#k = k;
    this.probs = probs;
  }

  /**
   * Loads the draft model on the target's device, with the target's block size, as many
   * blocks and the same context, so that it holds whatever the target holds. The caller has
   * checked the tokenizers ({@link checkDraftTokenizer}, before loading the target).
   */
  static async load(
    target: ModelRunner,
    config: DraftSpeculativeConfig,
    options: Pick<EngineOptions, "attn" | "weightDType" | "quantization" | "quantizedActivations">,
  ): Promise<DraftModel> {
    const runner = await ModelRunner.load(config.model, {
      attn: options.attn,
      kernelFamily: target.forward.family,
      maxTokens: target.capacity.maxTokens,
      maxSeqs: target.capacity.maxSeqs,
      blockSize: target.cache.options.blockSize,
      numBlocks: target.cache.options.numBlocks,
      maxContext: target.maxContext,
      weightDType: options.weightDType,
      quantization: options.quantization,
      quantizedActivations: options.quantizedActivations,
      // A round of k draft steps fills one readback batch.
      stepsPerSync: config.numSpeculativeTokens,
      gpu: target.gpu,
    });
    if (runner.state) {
      runner.close();
      throw new LlmError(
        "unsupported_architecture",
        `draft model ${runner.spec.architecture}: linear-attention layers cannot roll back rejected draft tokens`,
        { param: "speculative.model" },
      );
    }
    // q rows for sampled requests, where the vocabularies' logit rows match (a draft with
    // rows the target lacks would put q mass the residual cannot account for) and the buffer
    // fits one binding; else sampled requests draft greedily too (exact, accepts less).
    const k = config.numSpeculativeTokens;
    const V = runner.spec.vocabSize;
    const bytes = target.capacity.maxSeqs * k * V * 4;
    let probs: GPUBuffer | null = null;
    if (V !== target.spec.vocabSize) {
      console.error(`[draft] vocabularies of ${V} and ${target.spec.vocabSize} logit rows: sampled requests draft greedily`);
    } else if (bytes > target.gpu.limits.maxStorageBufferBindingSize) {
      console.error(`[draft] draft distributions need ${bytes} bytes, over one binding's limit: sampled requests draft greedily`);
    } else {
      probs = target.gpu.device.createBuffer({ label: "draft_probs", size: bytes, usage: GPUBufferUsage.STORAGE });
      runner.sampler.useProbs(probs, V);
      target.sampler.useProbs(probs, V);
    }
    return new DraftModel(runner, target.spec.vocabSize, k, probs);
  }

  /**
   * Drafts for every running sequence that speculates, has all its tokens known and waits
   * for its next decode: up to `k` tokens (its current draft length, within `maxTokens`),
   * handed to its speculation state for the scheduler's next plan. One round of batched
   * draft steps and one readback for all of them.
   */
  async propose(running: readonly Sequence[]): Promise<void> {
    const lanes: Lane[] = [];
    const byShadow = new Map<Sequence, Lane>();
    for (const seq of running) {
      if (!wantsDraft(seq)) continue;
      const spec = seq.speculation!;
      const known = seq.knownTokens();
      // The last draft token is sampled, never fed: known + limit - 1 positions.
      const limit = Math.min(spec.k, seq.maxTokens - seq.generated - 1, this.runner.maxContext - known.length + 1);
      if (limit <= 0) continue;
      const kv = this.#kv.of(seq);
      // Roll back: keep the positions whose tokens the sequence still has (at least the
      // newest known token is fed again, for its logits).
      let keep = 0;
      while (keep < kv.computed && kv.tokens[keep] === known[keep]) keep++;
      kv.computed = Math.min(keep, known.length - 1);
      if (!this.#kv.fit(kv, known.length + limit - 1)) continue;
      // A sampled request drafts from q under its own sampling parameters (no logprobs).
      const sampled = this.probs !== null && seq.sampling.temperature > 0;
      const sampling = sampled ? { ...seq.sampling, seed: draftSeed(seq.sampling.seed, known.length), logprobs: false, topLogprobs: 0 } : GREEDY;
      const shadow = shadowSequence(-1 - this.#nextId++, seq, known, kv, limit, sampling);
      const lane = { target: seq, shadow, kv, known, draft: [], sampled };
      lanes.push(lane);
      byShadow.set(shadow, lane);
    }
    if (lanes.length === 0) return;
    // The j-th draft token's q goes to row slot * k + j (j = its output index).
    const rows = await runDraftSteps(
      this.runner,
      lanes.map((l) => l.shadow),
      (s) => byShadow.get(s)!.sampled ? s.slot * this.#k + s.generated : undefined,
    );
    for (const { seq, outputIndex, token } of rows) byShadow.get(seq)!.draft[outputIndex] = token.id;
    for (const { target, shadow, kv, known, draft, sampled } of lanes) {
      kv.computed = shadow.numComputed;
      kv.tokens = [...known, ...draft];
      const cut = draft.findIndex((id) => id >= this.#vocab);
      const tokens = cut < 0 ? draft : draft.slice(0, cut);
      const probs = sampled ? tokens.map((_, j) => target.slot * this.#k + j) : undefined;
      target.speculation!.propose(known.length, tokens, probs);
    }
  }

  /** Frees a sequence's draft KV (it finished, was cancelled or preempted). */
  release(seq: Sequence): void {
    // A proposal not taken yet names this slot's q rows, which the next owner overwrites.
    seq.speculation?.dropProposal();
    this.#kv.release(seq);
  }

  /** Frees the draft model's GPU resources. */
  close(): void {
    this.#kv.releaseAll();
    this.runner.close();
    this.probs?.destroy();
  }
}
