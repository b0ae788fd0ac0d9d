/**
 * Hybrid models (Qwen3.5: Gated DeltaNet layers with a recurrent state per sequence beside
 * the paged KV cache of its attention layers), on the qwen35-tiny reference model.
 *
 * Runner level, both kernel families, f32 and f16 KV, both forms of the delta rule (the
 * chunkwise default everywhere, the sequential scan with f32 KV): a sequence's logits in a
 * ragged batch of 8 mixed prefill/decode rows equal its solo logits for the same chunk bit for
 * bit (state slots never mix); chunked prefill with several chunk sizes equals one-shot
 * prefill (the state carries across chunks in the slot): bit for bit with the scan and with
 * chunks that are multiples of the delta rule's chunk, within float rounding otherwise (the
 * chunkwise form sums a chunk in another order than token by token).
 * Engine level (mod.ts, engine in a Worker): 8 concurrent requests equal their solo runs,
 * chunked prefill in the scheduler, preemption under a tiny cache (recompute) gives the same
 * greedy text, prefix caching is off, and cancel frees the state slot (stats back to zero).
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { DEFAULT_DELTA_RULE_FORM, DELTA_RULE_FORMS, type DeltaRuleForm } from "../src/runner/forward.ts";
import { deltaChunk } from "../src/kernels/family.ts";
import { buildStepBatch, type SequenceChunk } from "../src/runner/step_meta.ts";
import { KERNEL_FAMILIES, KV_DTYPES } from "../src/types/api.ts";
import { createGpu } from "../src/gpu/device.ts";
import { createEngine, type EngineClient, type GenerateOptions } from "../mod.ts";
import { loadGolden, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const MODEL = "qwen35-tiny";

test(`hybrid ${MODEL}: ragged batches of mixed prefill/decode rows and chunked prefill equal solo one-shot runs`, async (t) => {
  const golden = await loadGolden(MODEL);
  const prompts = golden.cases.map((c) => c.prompt_ids);
  const gpu = await createGpu();
  try {
    for (const kernelFamily of KERNEL_FAMILIES) {
      for (const kvDtype of KV_DTYPES) {
        for (const form of DELTA_RULE_FORMS) {
          // The default form on every configuration, the other with f32 KV.
          if (form !== DEFAULT_DELTA_RULE_FORM && kvDtype !== "f32") continue;
          await t.step(`${kernelFamily} family, ${kvDtype} KV, ${form} delta rule`, async () => {
          const runner = await ModelRunner.load(modelDir(MODEL), {
            gpu,
            kernelFamily,
            kvDtype,
            deltaRuleForm: form,
            maxTokens: 256,
            maxLogitRows: 256,
            maxSeqs: 8,
            blockSize: 8,
            numBlocks: 128,
          });
          try {
            await checkHybrid(runner, prompts, form);
          } finally {
            runner.close();
          }
          });
        }
      }
    }
  } finally {
    gpu.device.destroy();
  }
});

/** Largest |a - b| relative to the largest |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (const v of b) m = Math.max(m, Math.abs(v));
  return maxAbsDiff(a, b) / Math.max(m, 1e-30);
}

async function checkHybrid(runner: ModelRunner, prompts: number[][], form: DeltaRuleForm): Promise<void> {
  const bs = runner.cache.options.blockSize;
  const V = runner.spec.vocabSize;
  // The chunkwise form's rounding differences, amplified where K/V are rounded to f16.
  const tol = runner.cache.dtype === "f16" ? 2e-4 : 2e-5;
  // 8 sequences: the 4 prompts twice, each with its own blocks and state slot.
  const seqs = [...prompts, ...prompts.map((p) => p.slice(0, Math.max(2, p.length - 3)))];
  let next = 0;
  const tables = seqs.map((p) => Array.from({ length: Math.ceil(p.length / bs) }, () => next++));
  const solo: Float32Array[] = [];
  for (let i = 0; i < seqs.length; i++) {
    solo.push(await runner.logits(buildStepBatch([{ tokens: seqs[i], start: 0, blockTable: tables[i], logits: "all", stateSlot: i }], bs)));
  }
  const row = (i: number, pos: number) => solo[i].subarray(pos * V, (pos + 1) * V);

  // Sequences 0..3 prefill all but their last token; then one step of 8 rows: their last
  // tokens as decode rows (continuing their state) and sequences 4..7 as fresh prefills.
  const head = [0, 1, 2, 3];
  const warm: SequenceChunk[] = head.map((i) => ({ tokens: seqs[i].slice(0, -1), start: 0, blockTable: tables[i], logits: "none", stateSlot: i }));
  const decodes = head.map((i): SequenceChunk => ({ tokens: seqs[i].slice(-1), start: seqs[i].length - 1, blockTable: tables[i], logits: "last", stateSlot: i }));
  // Each decode row alone, after its prefill: the solo run of that chunk.
  await runner.logits(buildStepBatch(warm.filter((c) => c.tokens.length > 0), bs));
  const soloDecode: Float32Array[] = [];
  for (const d of decodes) soloDecode.push(await runner.logits(buildStepBatch([d], bs)));
  await runner.logits(buildStepBatch(warm.filter((c) => c.tokens.length > 0), bs));
  const mixed: SequenceChunk[] = [
    ...decodes,
    ...[4, 5, 6, 7].map((i): SequenceChunk => ({ tokens: seqs[i], start: 0, blockTable: tables[i], logits: "last", stateSlot: i })),
  ];
  // Interleave decode and prefill rows.
  const order = [0, 4, 1, 5, 2, 6, 3, 7];
  const out = await runner.logits(buildStepBatch(order.map((k) => mixed[k]), bs));
  order.forEach((k, r) => {
    const i = k < 4 ? head[k] : k;
    const got = out.subarray(r * V, (r + 1) * V);
    const oneShot = row(i, seqs[i].length - 1);
    // Batch invariance: the same chunk alone gives the same bits.
    assertEquals(maxAbsDiff(got, k < 4 ? soloDecode[k] : oneShot), 0, `seq ${i} differs in a mixed batch`);
    // Prefill then decode equals one-shot prefill (chunked form: within rounding).
    const d = relDiff(got, oneShot);
    assert(form === "scan" ? d === 0 : d < tol, `seq ${i}: prefill + decode differs from one-shot by ${d}`);
  });

  // Chunked prefill of the longest prompt, several chunk sizes: the state carries over.
  const li = seqs.reduce((a, p, i) => (p.length > seqs[a].length ? i : a), 0);
  const longest = seqs[li];
  const lin = runner.spec.linearAttention!;
  const chunk = deltaChunk(lin.keyHeadDim, lin.valueHeadDim, runner.gpu.limits.maxComputeWorkgroupStorageSize);
  for (const size of [1, 5, chunk, 33]) {
    const logits: Float32Array[] = [];
    for (let start = 0; start < longest.length; start += size) {
      const tokens = longest.slice(start, start + size);
      logits.push(await runner.logits(buildStepBatch([{ tokens, start, blockTable: tables[li], logits: "all", stateSlot: 7 }], bs)));
    }
    const all = new Float32Array(logits.reduce((n, l) => n + l.length, 0));
    let at = 0;
    for (const l of logits) {
      all.set(l, at);
      at += l.length;
    }
    // Bit for bit where every step covers whole chunks of the chunkwise form (or with the scan).
    const d = relDiff(all, solo[li]);
    const exact = form === "scan" || size % chunk === 0;
    assert(exact ? d === 0 : d < tol, `chunks of ${size} differ from one-shot prefill by ${d}`);
  }
}

const PROMPTS = [
  "Once upon a time",
  "The little dog ran to the park and saw a",
  "Lily and Tom were friends. They liked to play in the garden every day. One day,",
  "A",
  "Tom had a big red ball. He liked to",
  "One day, a girl named Sue went to the store with her mom. She wanted to buy",
  "The sun was",
  "Ben",
];

function workload(maxTokens: (i: number) => number): GenerateOptions[] {
  return PROMPTS.map((prompt, i) => ({ prompt, maxTokens: maxTokens(i), ignoreEos: true }));
}

async function solo(engine: EngineClient, reqs: GenerateOptions[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const r of reqs) out.push((await engine.generate(r)).ids);
  return out;
}

async function waitIdle(engine: EngineClient, timeoutMs = 20000): Promise<void> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0 && s.kvBlocksUsed === 0 && s.stateSlotsUsed === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  const s = engine.stats();
  throw new Error(`engine not idle: running ${s.running}, waiting ${s.waiting}, blocks ${s.kvBlocksUsed}, slots ${s.stateSlotsUsed}`);
}

test(`hybrid ${MODEL} engine: 8 concurrent requests equal solo runs; chunked prefill; no prefix cache; preemption recomputes`, async () => {
  const engine = await createEngine({ model: modelDir(MODEL), maxBatchTokens: 64, maxSeqs: 8, blockSize: 8 });
  // Chunks of 5 tokens per step, and a cache too small for the load (preemption).
  const chunked = await createEngine({ model: modelDir(MODEL), maxBatchTokens: 5, maxSeqs: 8, blockSize: 8 });
  const tiny = await createEngine({ model: modelDir(MODEL), maxBatchTokens: 64, maxSeqs: 8, blockSize: 8, numBlocks: 14 });
  try {
    const reqs = workload((i) => 6 + ((i * 5) % 13));
    const alone = await solo(engine, reqs);
    const together = await Promise.all(reqs.map((r) => engine.generate(r)));
    together.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i} in a batch of 8`));
    // The same prompt again: prefix caching is off for hybrid models (no state snapshots).
    const again = await engine.generate(reqs[2]);
    assertEquals(again.ids, alone[2]);
    assertEquals(again.usage.cachedTokens, 0);
    assertEquals(engine.stats().prefixCacheHits, 0);
    await waitIdle(engine);
    const s = engine.stats();
    assertEquals(s.stateSlotsTotal, 8);

    const viaChunks = await Promise.all(reqs.map((r) => chunked.generate(r)));
    viaChunks.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i} with chunked prefill`));

    const long = reqs.map((r) => ({ ...r, maxTokens: 40 }));
    const longAlone = await solo(engine, long);
    const squeezed = await Promise.all(long.map((r) => tiny.generate(r)));
    squeezed.forEach((r, i) => assertEquals(r.ids, longAlone[i], `request ${i} under preemption`));
    assert(tiny.stats().preemptions > 0, "expected preemptions");
    await waitIdle(tiny);
  } finally {
    await engine.close();
    await chunked.close();
    await tiny.close();
  }
});

test(`hybrid ${MODEL} engine: cancel frees the state slot and blocks; usage counts slots`, async () => {
  const engine = await createEngine({ model: modelDir(MODEL), maxBatchTokens: 64, maxSeqs: 4 });
  try {
    const ac = new AbortController();
    const stream = engine.stream({ prompt: PROMPTS[2], maxTokens: 500, ignoreEos: true, signal: ac.signal });
    let busy = null;
    let n = 0;
    for await (const _ of stream) {
      if (++n === 3) {
        busy = engine.stats();
        ac.abort();
      }
    }
    assert(busy !== null, "the stream ended early");
    assertEquals([busy.stateSlotsUsed, busy.stateSlotsTotal], [1, 4]);
    // One slot of four plus a few blocks: the usage covers the state too.
    assert(busy.kvUsage > busy.kvBlocksUsed / busy.kvBlocksTotal, `usage ${busy.kvUsage} ignores the state slot`);
    await waitIdle(engine);
    const s = engine.stats();
    assertEquals([s.stateSlotsUsed, s.kvBlocksUsed, s.kvBytesUsed, s.kvUsage], [0, 0, 0, 0]);
    assertEquals(s.requestsFinished.cancelled, 1);
  } finally {
    await engine.close();
  }
});
