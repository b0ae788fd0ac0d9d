/**
 * Embeddings in the engine: prefill-only sequences in the continuous batch, their pooled final
 * hidden states against transformers (qwen3-tiny's embedding golden: last-token pooled,
 * L2-normalized, end-of-text appended) on both kernel families, chunked prefill, mean pooling
 * against a second path, and generation beside them unchanged.
 *
 * Tolerance: max |ours - HF| <= 1e-4 per component of the unit vector, with an f32 KV cache
 * (the logits' reference bound; we measure ~1e-6).
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { Engine } from "../src/engine/engine.ts";
import type { Pooling } from "../src/types/api.ts";
import { greedyIds, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { readTextFile } from "../src/runtime/runtime.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const TOL = 1e-4;

interface EmbeddingGolden {
  cases: { input: string; input_ids: number[]; embedding: number[] }[];
}

const golden: EmbeddingGolden = JSON.parse(await readTextFile(`${modelDir("qwen3-tiny")}/embedding-golden.json`));

/** Raw pooled hidden states of `inputs` from the engine (not normalized). */
function embedRaw(engine: Engine, inputs: number[][], pooling: Pooling = "last"): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let left = inputs.length;
  return new Promise((resolve, reject) => {
    engine.submitEmbedding({ inputs, pooling }, {
      embedding: (index, embedding) => {
        if (!embedding) return reject(new Error(`input ${index} cancelled`));
        out[index] = embedding;
        if (--left === 0) resolve(out);
      },
      fail: (_i, e) => reject(e),
    });
  });
}

function normalized(v: ArrayLike<number>): Float32Array {
  const norm = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / norm);
}

/** Runners for both kernel families on one device; a budget of 5 tokens chunks the long input. */
async function engines(): Promise<[string, Engine][]> {
  const opts = { maxTokens: 5, maxSeqs: 8, blockSize: 4, numBlocks: 64, kvDtype: "f32" as const };
  const cpu = await ModelRunner.load(modelDir("qwen3-tiny"), { ...opts, kernelFamily: "cpu" });
  const gpu = await ModelRunner.load(modelDir("qwen3-tiny"), { ...opts, kernelFamily: "gpu", gpu: cpu.gpu });
  return [["cpu", Engine.start(cpu)], ["gpu", Engine.start(gpu)]];
}

test("embeddings: qwen3-tiny matches transformers (last token, both kernel families, chunked prefill), mean pooling matches its prefixes, generation beside them is unchanged", async (t) => {
  const all = await engines();
  try {
    for (const [family, engine] of all) {
      await t.step(`${family}: golden`, async () => {
        const together = await embedRaw(engine, golden.cases.map((c) => c.input_ids));
        golden.cases.forEach((c, i) => {
          const err = maxAbsDiff(normalized(together[i]), c.embedding);
          assert(err <= TOL, `${family} case ${i}: max error ${err} > ${TOL}`);
        });
        const s = engine.stats();
        assertEquals(s.kvBlocksUsed, 0);
        assertEquals(s.embeddingsFinished, golden.cases.length);
      });
      // The rest is scheduling, the same for both families: run it once.
      if (family !== "gpu") continue;

      await t.step(`${family}: mean pooling equals the mean of its prefixes' last-token states`, async () => {
        const ids = golden.cases[1].input_ids;
        const [mean] = await embedRaw(engine, [ids], "mean");
        const prefixes = await embedRaw(engine, ids.map((_, k) => ids.slice(0, k + 1)), "last");
        const ref = new Float64Array(mean.length);
        for (const p of prefixes) p.forEach((v, j) => (ref[j] += v / ids.length));
        const err = maxAbsDiff(mean, ref);
        assert(err <= 1e-5 * Math.max(...Array.from(ref, Math.abs)), `${family} mean pooling: max error ${err}`);
        assert(maxAbsDiff(normalized(mean), golden.cases[1].embedding) > 1e-2, "mean pooling differs from last-token pooling");
      });

      await t.step(`${family}: embeddings concurrent with generation leave its tokens unchanged`, async () => {
        const prompt = golden.cases[0].input_ids.slice(0, -1);
        const solo = await greedyIds(engine, prompt, 12);
        const gen = greedyIds(engine, prompt, 12);
        // Embeddings join while the generation decodes (several steps, chunked, both poolings).
        const inputs = golden.cases.map((c) => c.input_ids);
        const embedded = await Promise.all([embedRaw(engine, inputs), embedRaw(engine, inputs, "mean"), embedRaw(engine, [...inputs].reverse())]);
        assertEquals(await gen, solo);
        golden.cases.forEach((c, i) => {
          assert(maxAbsDiff(normalized(embedded[0][i]), c.embedding) <= TOL, `${family} case ${i} beside generation`);
          // Batch-invariant kernels: the same bits whatever runs beside it.
          assertEquals(Array.from(embedded[2][inputs.length - 1 - i]), Array.from(embedded[0][i]));
        });
        assertEquals(engine.stats().kvBlocksUsed, 0);
      });

      await t.step(`${family}: cancelled embeddings end with no vector and return their blocks`, async () => {
        const inputs = Array.from({ length: 8 }, (_, i) => golden.cases[i % 3].input_ids);
        const got: (Float32Array | null)[] = [];
        let left = inputs.length;
        const done = new Promise<void>((resolve, reject) => {
          const handle = engine.submitEmbedding({ inputs, pooling: "mean" }, {
            embedding: (index, embedding) => {
              got[index] = embedding;
              if (--left === 0) resolve();
            },
            fail: (_i, e) => reject(e),
          });
          for (let i = 1; i < inputs.length; i += 2) handle.cancel(i);
        });
        await done;
        got.forEach((v, i) => assertEquals(v === null, i % 2 === 1, `input ${i}`));
        assertEquals(engine.stats().kvBlocksUsed, 0);
      });
    }
  } finally {
    for (const [, e] of all) await e.close();
    all[0][1].runner.gpu.device.destroy();
  }
});
