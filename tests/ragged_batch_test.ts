/**
 * The forward pass over a ragged batch: each sequence's logits equal its solo run exactly
 * (rows never mix), prompts longer than the sliding window included, and prefill split into
 * chunks gives the same logits as one pass.
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, type SequenceChunk } from "../src/runner/step_meta.ts";
import { BlockManager } from "../src/scheduler/block_manager.ts";
import { loadGolden, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { assertEquals } from "./helpers/assert.ts";

for (const name of ["stories260K", "gemma2-tiny", "mistral-tiny", "qwen3-tiny"]) {
  test(`ragged batch ${name}: per-sequence logits equal solo runs`, async () => {
    const golden = await loadGolden(name);
    const runner = await ModelRunner.load(modelDir(name), {
      maxTokens: 256,
      maxLogitRows: 256,
      maxSeqs: 8,
      blockSize: 8,
      numBlocks: 96,
    });
    const bs = runner.cache.options.blockSize;
    const V = runner.spec.vocabSize;
    try {
      const prompts = golden.cases.map((c) => c.prompt_ids);
      // Non-contiguous, interleaved block tables so the paging is really exercised.
      const tables = prompts.map(() => [] as number[]);
      const pool = new BlockManager(runner.cache.options.numBlocks, bs);
      const blocks = pool.allocate(prompts.reduce((n, p) => n + Math.ceil(p.length / bs), 0));
      let k = 0;
      for (let round = 0; tables.some((t, i) => t.length * bs < prompts[i].length); round++) {
        tables.forEach((t, i) => {
          if (t.length * bs < prompts[i].length) t.push(blocks[k++]);
        });
      }
      const solo: Float32Array[] = [];
      for (let i = 0; i < prompts.length; i++) {
        const b = buildStepBatch([{ tokens: prompts[i], start: 0, blockTable: tables[i], logits: "all" }], bs);
        solo.push(await runner.logits(b));
      }
      const chunks: SequenceChunk[] = prompts.map((p, i) => ({ tokens: p, start: 0, blockTable: tables[i], logits: "all" }));
      const together = await runner.logits(buildStepBatch(chunks, bs));
      let row = 0;
      prompts.forEach((p, i) => {
        const got = together.subarray(row * V, (row + p.length) * V);
        assertEquals(maxAbsDiff(got, solo[i]), 0, `${name} seq ${i} differs in a batch`);
        row += p.length;
      });

      // Chunked prefill of the longest prompt (longer than the window for mistral/gemma2):
      // the last position's logits match the one-pass run.
      const longest = prompts.reduce((a, b) => (b.length > a.length ? b : a));
      const li = prompts.indexOf(longest);
      let last: Float32Array | null = null;
      for (let start = 0; start < longest.length; start += 13) {
        const tokens = longest.slice(start, start + 13);
        const done = start + tokens.length === longest.length;
        const b = buildStepBatch([{ tokens, start, blockTable: tables[li], logits: done ? "last" : "none" }], bs);
        const out = await runner.logits(b);
        if (done) last = out;
      }
      const ref = solo[li].subarray((longest.length - 1) * V, longest.length * V);
      // Each token's math is independent of how the prompt was split: exactly equal.
      assertEquals(maxAbsDiff(last!, ref), 0, `${name}: chunked prefill differs`);
      pool.release(blocks);
    } finally {
      runner.close();
    }
  });
}
