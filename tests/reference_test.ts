/**
 * Ground truth: every shared reference model against the logits and greedy ids that
 * Hugging Face transformers computed, with both attention implementations.
 *
 * Tolerance: max |ours - HF| <= 1e-4 * max |HF logit| per position (we measure ~3e-6). All our math is f32;
 * weights stored as f16 are exact for f16 checkpoints and for bf16 values in f16's range, so
 * the f32 bound applies to every model.
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { Engine } from "../src/engine/engine.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { greedyIds, loadGolden, MODEL_NAMES, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const REL_TOL = 1e-4;

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

for (const name of MODEL_NAMES) {
  test(`reference ${name}: logits and greedy ids match transformers (paged and eager)`, async (t) => {
    const golden = await loadGolden(name);
    const opts = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 4, blockSize: 16, numBlocks: 64 };
    const tokenizer = await Tokenizer.load(modelDir(name));
    const paged = await ModelRunner.load(modelDir(name), { ...opts, attn: "paged" });
    const eager = await ModelRunner.load(modelDir(name), { ...opts, attn: "eager", gpu: paged.gpu });
    // Greedy ids come from the serving path: the engine's loop over the same runners.
    const pagedEngine = Engine.start(paged);
    const eagerEngine = Engine.start(eager);
    const V = paged.spec.vocabSize;
    try {
      for (const c of golden.cases) {
        await t.step(`"${c.prompt}"`, async () => {
          assertEquals(tokenizer.encode(c.prompt), c.prompt_ids);
          const logits = await promptLogits(paged, c.prompt_ids, pagedEngine.scheduler.blocks);
          const eagerLogits = await promptLogits(eager, c.prompt_ids, eagerEngine.scheduler.blocks);
          let worst = 0;
          c.logit_positions.forEach((pos, k) => {
            const ours = logits.subarray(pos * V, (pos + 1) * V);
            const ref = c.logits[k];
            const scale = maxAbs(ref);
            const err = maxAbsDiff(ours, ref) / scale;
            worst = Math.max(worst, err);
            assert(err <= REL_TOL, `${name} pos ${pos}: relative error ${err} > ${REL_TOL}`);
          });
          // paged and eager are different algorithms over the same cache: agree closely.
          const pe = maxAbsDiff(logits, eagerLogits) / maxAbs(eagerLogits);
          assert(pe <= 1e-4, `${name}: paged vs eager relative difference ${pe}`);

          // Greedy ids must be equal; they may part only at a step whose top-2 margin is
          // within our numeric tolerance (a near-tie, where either answer is right).
          const tolAbs = REL_TOL * Math.max(...c.logits.map(maxAbs));
          const ids = await greedyIds(pagedEngine, c.prompt_ids, c.greedy_ids.length);
          const eagerIds = await greedyIds(eagerEngine, c.prompt_ids, c.greedy_ids.length);
          const n = agreeingPrefix(ids, c.greedy_ids, c.greedy_top2_margin, 2 * tolAbs, `${name} paged`);
          agreeingPrefix(eagerIds, c.greedy_ids, c.greedy_top2_margin, 2 * tolAbs, `${name} eager`);
          console.log(`  ${name} "${c.prompt.slice(0, 20)}": max rel err ${worst.toExponential(2)}, paged/eager ${pe.toExponential(2)}, ${n}/24 greedy ids equal`);
        });
      }
    } finally {
      await eagerEngine.close();
      await pagedEngine.close();
    }
  });
}
