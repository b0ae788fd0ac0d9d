/**
 * The forward pass over a ragged batch, for every kernel family and KV-cache type, with
 * attention split every 16 keys (so the combine runs): each sequence's logits equal its solo
 * run exactly (rows never mix), prompts longer than the sliding window included; prefill
 * split into chunks gives the same logits as one pass; and a prompt run as one prefill step
 * gives bit for bit the logits of the same prompt fed one decode step per token (the matmul
 * and attention variants a step picks by its shape never change a row's bits).
 */
import { shared, sharedTest } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, type SequenceChunk } from "../src/runner/step_meta.ts";
import { BlockManager } from "../src/scheduler/block_manager.ts";
import { KERNEL_FAMILIES, KV_DTYPES } from "../src/types/api.ts";
import { createGpu } from "../src/gpu/device.ts";
import { loadGolden, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { assertEquals } from "./helpers/assert.ts";

// One device for the file: its pipelines, compiled once, serve every test's runners.
const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

for (const name of ["stories260K", "gemma2-tiny", "mistral-tiny", "qwen3-tiny", "gemma3-tiny"]) {
  sharedTest(`ragged batch ${name}: per-sequence logits equal solo runs; chunked prefill and token-by-token decode equal one prefill`, async (t) => {
    const golden = await loadGolden(name);
    const gpu = await sharedGpu();
    try {
      for (const kernelFamily of KERNEL_FAMILIES) {
        for (const kvDtype of KV_DTYPES) {
          await t.step(`${kernelFamily} family, ${kvDtype} KV`, async () => {
            const runner = await ModelRunner.load(modelDir(name), {
              gpu,
              kernelFamily,
              kvDtype,
              attentionSplit: 16,
              maxTokens: 256,
              maxLogitRows: 256,
              maxSeqs: 8,
              blockSize: 8,
              numBlocks: 96,
            });
            try {
              await checkRagged(runner, golden.cases.map((c) => c.prompt_ids), name);
            } finally {
              runner.close();
            }
          });
        }
      }
    } finally {
      // The file's shared device is destroyed after its last test.
    }
  });
}

async function checkRagged(runner: ModelRunner, prompts: number[][], name: string): Promise<void> {
  const bs = runner.cache.options.blockSize;
  const V = runner.spec.vocabSize;
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

  // The same prompt one token per step (decode-shaped steps: 1-row matmuls, query tile 1)
  // next to the other prompts' last tokens re-run as decode rows: every row's bits equal.
  for (let i = 0; i < longest.length; i++) {
    const others = prompts.map((p, j) => ({ p, j })).filter(({ j }) => j !== li).slice(0, 3);
    const step: SequenceChunk[] = [
      { tokens: [longest[i]], start: i, blockTable: tables[li], logits: "last" },
      ...others.map(({ p, j }) => ({ tokens: [p[p.length - 1]], start: p.length - 1, blockTable: tables[j], logits: "last" as const })),
    ];
    const out = await runner.logits(buildStepBatch(step, bs));
    assertEquals(maxAbsDiff(out.subarray(0, V), solo[li].subarray(i * V, (i + 1) * V)), 0, `${name}: decode step ${i} differs from the prefill row`);
    others.forEach(({ p, j }, r) => {
      const want = solo[j].subarray((p.length - 1) * V, p.length * V);
      assertEquals(maxAbsDiff(out.subarray((r + 1) * V, (r + 2) * V), want), 0, `${name}: seq ${j} as a decode row differs`);
    });
  }
  pool.release(blocks);
}
