/**
 * Ground truth: every shared reference model against the logits and greedy ids that
 * Hugging Face transformers computed, for every kernel family (cpu and gpu both run on any
 * adapter), with the fast paged attention (one split, and split every 16 keys + combine) and
 * the eager reference attention, with an f32 and an f16 KV cache.
 *
 * Tolerance with an f32 KV cache: max |ours - HF| <= 1e-4 * max |HF logit| per position (we
 * measure ~1-3e-6). All our math is f32; weights stored as f16 are exact for f16 checkpoints
 * and for bf16 values in f16's range, so the f32 bound applies to every model.
 *
 * With an f16 KV cache every cached key and value is rounded to 11 significant bits (a
 * relative error up to 2^-11 ~ 4.9e-4 per element) before attention reads it; through the
 * layers that moves the logits by 3-13e-4 of the largest one on these models (measured: the
 * random-init models have near-uniform attention, so rounding errors add up rather than
 * cancel). The bound there is 2e-3, four times 2^-11: it fails on any real error (a wrong
 * position, block or head is off by the logits' whole scale) and not on the rounding.
 */
import { shared, sharedTest } from "./test.ts";
import { createGpu, type Gpu } from "../../src/gpu/device.ts";
import { ModelRunner, type ModelRunnerOptions } from "../../src/runner/model_runner.ts";
import { Engine } from "../../src/engine/engine.ts";
import { Tokenizer } from "../../src/model/tokenizer.ts";
import { greedyIds, loadGolden, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./reference.ts";
import { assert, assertEquals } from "./assert.ts";

const REL_TOL = 1e-4;
const F16_KV_TOL = 2e-3;

/** Length of the common prefix; asserts any divergence happens at a near-tie. */
function agreeingPrefix(ours: number[], ref: number[], margins: number[], tol: number, what: string): number {
  const i = ours.findIndex((id, k) => id !== ref[k]);
  if (i === -1) return ref.length;
  assert(
    margins[i] < tol,
    `${what}: greedy id ${i} is ${ours[i]}, transformers gave ${ref[i]} with top-2 margin ${margins[i]} >= ${tol}` +
      `\n ours ${ours}\n ref  ${ref}`,
  );
  return i;
}

/** The configurations every model runs: [name, runner options, tolerance]. */
const CONFIGS: [string, ModelRunnerOptions, number][] = [
  ["cpu paged", { kernelFamily: "cpu", attn: "paged", kvDtype: "f32" }, REL_TOL],
  ["cpu paged split 16", { kernelFamily: "cpu", attn: "paged", kvDtype: "f32", attentionSplit: 16 }, REL_TOL],
  ["cpu eager", { kernelFamily: "cpu", attn: "eager", kvDtype: "f32" }, REL_TOL],
  ["gpu paged", { kernelFamily: "gpu", attn: "paged", kvDtype: "f32" }, REL_TOL],
  ["gpu paged split 16", { kernelFamily: "gpu", attn: "paged", kvDtype: "f32", attentionSplit: 16 }, REL_TOL],
  ["gpu eager", { kernelFamily: "gpu", attn: "eager", kvDtype: "f32" }, REL_TOL],
  ["cpu paged f16 KV", { kernelFamily: "cpu", attn: "paged", kvDtype: "f16" }, F16_KV_TOL],
  ["gpu paged f16 KV", { kernelFamily: "gpu", attn: "paged", kvDtype: "f16" }, F16_KV_TOL],
];

/**
 * Registers one golden test per model of `names` (a test file's share of the reference
 * models: the files run in parallel), every model on one device whose pipelines are
 * compiled once.
 */
export function referenceTests(names: readonly string[]): void {
  const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());
  for (const name of names) referenceTest(name, sharedGpu);
}

function referenceTest(name: string, sharedGpu: () => Promise<Gpu>): void {
  sharedTest(`reference ${name}: logits and greedy ids match transformers (cpu and gpu families, paged and eager, f32 and f16 KV)`, async (t) => {
    const golden = await loadGolden(name);
    const opts = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 4, blockSize: 16, numBlocks: 64 };
    const tokenizer = await Tokenizer.load(modelDir(name));
    for (const c of golden.cases) assertEquals(tokenizer.encode(c.prompt), c.prompt_ids);
    const gpu = await sharedGpu();
    const runners: ModelRunner[] = [];
    for (const [, options] of CONFIGS) runners.push(await ModelRunner.load(modelDir(name), { ...opts, ...options, gpu }));
    const first = runners[0];
    // Greedy ids come from the serving path: the engine's loop over the same runners.
    const engines = runners.map((r) => Engine.start(r));
    const V = first.spec.vocabSize;
    try {
      for (const [k, [label, options, tol]] of CONFIGS.entries()) {
        await t.step(label, async () => {
          const summary: string[] = [];
          for (const c of golden.cases) {
            const logits = await promptLogits(runners[k], c.prompt_ids, engines[k].scheduler.blocks);
            let worst = 0;
            c.logit_positions.forEach((pos, j) => {
              const ours = logits.subarray(pos * V, (pos + 1) * V);
              const ref = c.logits[j];
              const err = maxAbsDiff(ours, ref) / maxAbs(ref);
              worst = Math.max(worst, err);
              assert(err <= tol, `${name} ${label} pos ${pos}: relative error ${err} > ${tol}`);
            });
            if (options.attn === "paged" && options.kvDtype === "f32") {
              // The fast path against the eager reference of the same family (same matmuls).
              const eager = CONFIGS.findIndex(([, o]) => o.attn === "eager" && o.kernelFamily === options.kernelFamily);
              const ref = await promptLogits(runners[eager], c.prompt_ids, engines[eager].scheduler.blocks);
              const pe = maxAbsDiff(logits, ref) / maxAbs(ref);
              assert(pe <= REL_TOL, `${name} ${label}: paged vs eager relative difference ${pe}`);
            }
            // Greedy ids may part from transformers' only at a step whose top-2 margin is
            // within our numeric tolerance (a near-tie, where either answer is right).
            const tolAbs = tol * Math.max(...c.logits.map(maxAbs));
            const ids = await greedyIds(engines[k], c.prompt_ids, c.greedy_ids.length);
            const n = agreeingPrefix(ids, c.greedy_ids, c.greedy_top2_margin, 2 * tolAbs, `${name} ${label}`);
            summary.push(`${worst.toExponential(2)} (${n}/${c.greedy_ids.length} ids)`);
          }
          console.log(`  ${name} ${label}: max rel err ${summary.join(", ")}`);
        });
      }
    } finally {
      for (const e of engines.slice(1)) await e.close();
      await engines[0].close();
    }
  });
}
