/**
 * The continuous-batching engine end to end through `mod.ts` (engine in a Worker, each
 * request an actor on its own MessageChannel): batch invariance (both kernel families),
 * joins mid-flight, preemption, chunked prefill, prefix caching, cancellation and finish reasons.
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type GenerateOptions } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";
import { SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

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

/** 16+ requests with mixed prompt lengths and max tokens. */
function workload(n: number, extra: Partial<GenerateOptions> = {}): GenerateOptions[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: PROMPTS[i % PROMPTS.length] + (i >= PROMPTS.length ? " and" : ""),
    maxTokens: 4 + ((i * 7) % 29),
    ignoreEos: true,
    ...extra,
    ...(extra.seed !== undefined ? { seed: (extra.seed as number) + i } : {}),
  }));
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
    if (s.running === 0 && s.waiting === 0 && s.kvBlocksUsed === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`engine not idle: ${JSON.stringify({ ...engine.stats(), batchFill: 0, stepTokens: 0, ttft: 0, interTokenLatency: 0, e2eLatency: 0, queueTime: 0 })}`);
}

for (const [model, kernelFamily] of [["stories260K", "cpu"], ["stories260K", "gpu"], ["gemma2-tiny", "cpu"], ["gemma2-tiny", "gpu"]] as const) {
  test(`engine ${model} (${kernelFamily} kernels): 20 concurrent greedy requests equal their solo runs`, async () => {
    const engine = await createEngine({ model: modelDir(model), maxBatchTokens: 64, maxSeqs: 32, kernelFamily });
    try {
      const reqs = workload(20);
      const alone = await solo(engine, reqs);
      const together = await Promise.all(reqs.map((r) => engine.generate(r)));
      together.forEach((r, i) => {
        assertEquals(r.ids, alone[i], `request ${i}`);
        assertEquals(r.finishReason, "length");
        assertEquals(r.usage.completionTokens, reqs[i].maxTokens);
      });
      const s = engine.stats();
      assert(s.batchFill.p95 > 0.2, `batches were not filled: ${s.batchFill.p95}`);
      await waitIdle(engine);
    } finally {
      await engine.close();
    }
  });
}

test("engine: seeded sampling gives the same output whatever else is in the batch", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 64 });
  try {
    const reqs = workload(16, { temperature: 0.9, topP: 0.95, topK: 50, seed: 1234 });
    const alone = await solo(engine, reqs);
    const together = await Promise.all(reqs.map((r) => engine.generate(r)));
    together.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i}`));
    // Different seeds really sample differently.
    const longer = { ...reqs[2], maxTokens: 32 };
    const a = await engine.generate({ ...longer, seed: 99 });
    const b = await engine.generate({ ...longer, seed: 100 });
    assert(JSON.stringify(a.ids) !== JSON.stringify(b.ids), "seed had no effect");
  } finally {
    await engine.close();
  }
});

test("engine: a request joining mid-flight changes no one else's output", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 32, stepsPerSync: 2 });
  try {
    const base = workload(6).map((r) => ({ ...r, maxTokens: 48 }));
    const alone = await solo(engine, base);
    const late = { prompt: "Lily and Tom were friends. They liked to", maxTokens: 20, ignoreEos: true };
    const lateAlone = (await engine.generate(late)).ids;
    const running = base.map((r) => engine.generate(r));
    // Join once the others have produced tokens.
    let joined: Promise<{ ids: number[] }> | null = null;
    for await (const d of engine.stream({ ...base[0], maxTokens: 10 })) {
      if (d.ids.length && !joined) joined = engine.generate(late);
    }
    const results = await Promise.all(running);
    results.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i}`));
    assertEquals((await joined!).ids, lateAlone);
  } finally {
    await engine.close();
  }
});

test("engine: a cache too small for the load preempts, and outputs still equal solo runs", async () => {
  // 12 blocks of 8 tokens: four sequences of ~90 tokens cannot all fit at once.
  const engine = await createEngine({ model: modelDir("stories260K"), numBlocks: 14, blockSize: 8, maxBatchTokens: 64 });
  try {
    const reqs = workload(8).map((r) => ({ ...r, maxTokens: 40 }));
    const alone = await solo(engine, reqs);
    const together = await Promise.all(reqs.map((r) => engine.generate(r)));
    together.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i}`));
    assert(engine.stats().preemptions > 0, "expected preemptions");
    await waitIdle(engine);
    // A request that can never fit alone is refused at admission with a clear error.
    let refused: Error | null = null;
    try {
      await engine.generate({ prompt: "Once upon a time", maxTokens: 200, ignoreEos: true });
    } catch (e) {
      refused = e as Error;
    }
    assert(refused && /context of 112 tokens/.test(refused.message), String(refused));
  } finally {
    await engine.close();
  }
});

test("engine: chunked prefill equals unchunked; prefix-cache hits cut prefill and change nothing", async () => {
  const long = "Lily and Tom were friends. They liked to play in the garden every day. One day, they found a big box.";
  const chunked = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 8 });
  const whole = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 256 });
  try {
    const a = await chunked.generate({ prompt: long, maxTokens: 24, ignoreEos: true });
    const b = await whole.generate({ prompt: long, maxTokens: 24, ignoreEos: true });
    assertEquals(a.ids, b.ids);
    assertEquals(a.usage.cachedTokens, 0);
    const before = whole.stats().prefillTokens;
    const again = await whole.generate({ prompt: long, maxTokens: 24, ignoreEos: true });
    assertEquals(again.ids, b.ids);
    assert(again.usage.cachedTokens >= 16, `cached ${again.usage.cachedTokens}`);
    await waitIdle(whole);
    const prefill = whole.stats().prefillTokens - before;
    assert(prefill < b.promptIds.length, `prefill ${prefill} not cut below ${b.promptIds.length}`);
    assert(whole.stats().prefixCacheHits > 0);
  } finally {
    await chunked.close();
    await whole.close();
  }
});

test("engine: a storm of requests with random cancellations returns every block", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 64, numBlocks: 64, blockSize: 8 });
  try {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const ac = new AbortController();
      const p = engine.generate({ ...workload(40)[i], maxTokens: 30, signal: ac.signal });
      jobs.push(p);
      if (rand() < 0.5) setTimeout(() => ac.abort(), rand() * 200);
      if (rand() < 0.3) await new Promise((r) => setTimeout(r, 10));
    }
    const results = await Promise.all(jobs) as { finishReason: string }[];
    assert(results.some((r) => r.finishReason === "cancelled"), "nothing was cancelled");
    assert(results.some((r) => r.finishReason === "length"), "nothing finished");
    await waitIdle(engine);
    assertEquals(engine.stats().kvBlocksUsed, 0);
  } finally {
    await engine.close();
  }
});

test("engine: stop strings, EOS, max tokens and cancellation end with the right reason", async () => {
  const engine = await createEngine({ model: modelDir("stories260K") });
  try {
    const full = await engine.generate({ prompt: "Once upon a time", maxTokens: 24, ignoreEos: true });
    assertEquals(full.text, ", there was a little girl named Lily. She loved to play outside in the p");
    assertEquals(full.finishReason, "length");

    const stopped = await engine.generate({ prompt: "Once upon a time", maxTokens: 24, stop: ["Lily"] });
    assertEquals(stopped.finishReason, "stop");
    assertEquals(stopped.text, ", there was a little girl named ");

    // A stop string is never partly streamed: no delta ends with a prefix of it.
    let streamed = "";
    for await (const d of engine.stream({ prompt: "Once upon a time", maxTokens: 24, stop: "little girl" })) {
      streamed += d.text;
      assert(!streamed.endsWith(" little"), `partial stop string streamed: ${JSON.stringify(streamed)}`);
    }
    assertEquals(streamed, ", there was a ");

    // EOS: use the second greedy token as an extra stop token id.
    const eos = await engine.generate({ prompt: "Once upon a time", maxTokens: 24, stopTokenIds: [full.ids[1]] });
    assertEquals(eos.finishReason, "stop");
    assertEquals(eos.ids, full.ids.slice(0, 2));

    const ac = new AbortController();
    const pending = engine.generate({ prompt: "Once upon a time", maxTokens: 400, ignoreEos: true, signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    const cancelled = await pending;
    assertEquals(cancelled.finishReason, "cancelled");
    assert(cancelled.ids.length < 400);
    await waitIdle(engine);
  } finally {
    await engine.close();
  }
});

test("engine: n > 1 shares the prompt; logprobs come with top alternatives", async () => {
  const engine = await createEngine({ model: modelDir("stories260K") });
  try {
    const r = await engine.generate({ prompt: "Lily and Tom were friends. They liked to play in the garden every day. One day, they", maxTokens: 12, n: 3, temperature: 1, seed: 5, logprobs: 3, ignoreEos: true });
    assertEquals(r.choices.length, 3);
    assertEquals(r.usage.completionTokens, 36);
    for (const c of r.choices) {
      assertEquals(c.logprobs!.length, 12);
      for (const lp of c.logprobs!) {
        assert(lp.logprob <= 0 && lp.top!.length === 3, JSON.stringify(lp));
        assert(lp.top![0].logprob >= lp.logprob - 1e-6);
      }
    }
    // The siblings reused the first one's full prompt blocks.
    assert(engine.stats().prefixCacheHits > 0);
    const greedy = await engine.generate({ prompt: "Once upon a time", maxTokens: 5, logprobs: true });
    for (const lp of greedy.logprobs!) assert(lp.top === undefined && lp.logprob <= 0);
  } finally {
    await engine.close();
  }
});

test("engine: a failing step loop fails its requests with an error and reports it in stats", async () => {
  const { Engine } = await import("../src/engine/engine.ts");
  const engine = await Engine.load({ model: modelDir("stories260K"), maxBatchTokens: 32 });
  try {
    engine.runner.forward.encode = () => {
      throw new Error("simulated GPU failure");
    };
    const failed = await new Promise<Error>((resolve, reject) => {
      engine.submit(
        { promptIds: [1, 2, 3], n: 1, maxTokens: 4, sampling: { ...SAMPLING_DEFAULTS, seed: 1 }, stopTokenIds: [] },
        { tokens: () => reject(new Error("no tokens expected")), done: () => reject(new Error("no finish expected")), fail: (_i, e) => resolve(e) },
      );
    });
    assert(failed.message.includes("simulated GPU failure"), failed.message);
    assert(engine.stats().error?.includes("simulated GPU failure"), String(engine.stats().error));
    assertEquals(engine.stats().kvBlocksUsed, 0);
  } finally {
    await engine.close();
  }
});
