/**
 * Offline batches: the ordered pool (input order, bounded concurrency, lazy pulling,
 * cancellation) on the CPU, and `engine.generateBatch` on stories260K: results equal solo
 * runs, a bad request fails alone, progress is reported, a signal cancels cleanly.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { ordered } from "../src/api/batch.ts";
import { createEngine, type GenerateOptions, type GenerateResult } from "../mod.ts";
import type { BatchItemError, BatchProgress } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("batch pool: results in input order, at most `concurrency` running, items pulled lazily", async () => {
  let running = 0;
  let maxRunning = 0;
  let pulled = 0;
  let yielded = 0;
  let maxAhead = 0;
  function* items() {
    for (let i = 0; i < 200; i++) {
      pulled++;
      maxAhead = Math.max(maxAhead, pulled - yielded);
      yield i;
    }
  }
  const out: number[] = [];
  for await (
    const r of ordered(items(), 4, async (x) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep((x * 7919) % 5); // finish out of order
      running--;
      return x * 2;
    })
  ) {
    out.push(r);
    yielded++;
  }
  assertEquals(out, Array.from({ length: 200 }, (_, i) => i * 2));
  assertEquals(maxRunning, 4);
  // Never more than the running window plus the reorder buffer (8 x concurrency) ahead.
  assert(maxAhead <= 4 * 9, `pulled ${maxAhead} items ahead of the consumer`);
});

test("batch pool: an abort stops pulling, waits for started work, and throws the reason", async () => {
  const ac = new AbortController();
  let started = 0;
  let settled = 0;
  const seen: number[] = [];
  const run = async () => {
    for await (
      const r of ordered(Array.from({ length: 100 }, (_, i) => i), 3, async (x) => {
        started++;
        await sleep(5);
        settled++;
        return x;
      }, ac.signal)
    ) {
      seen.push(r);
      if (r === 5) ac.abort(new Error("stop here"));
    }
  };
  await assertRejects(run, Error, "stop here");
  assert(started < 20, `started ${started} items after the abort`);
  assertEquals(settled, started, "work still running after the pool returned");
  assertEquals(seen.slice(0, 6), [0, 1, 2, 3, 4, 5]);
});

test("engine.generateBatch: input order, equal to solo runs, a bad request fails alone, progress", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 64, maxSeqs: 8 });
  try {
    const prompts = ["Once upon a time", "The little dog", "Lily and Tom were friends.", "A", "Tom had a big red ball."];
    const requests: GenerateOptions[] = Array.from({ length: 20 }, (_, i) => ({
      prompt: prompts[i % prompts.length],
      maxTokens: 3 + ((i * 5) % 17),
      ignoreEos: true,
    }));
    requests[6] = { prompt: "Once", maxTokens: 0 };
    requests[13] = { prompt: [1, 99999] };
    const progress: BatchProgress[] = [];
    const results = await engine.generateBatch(requests, { concurrency: 6, onProgress: (p) => progress.push(p) });
    assertEquals(results.length, requests.length);
    for (const [i, r] of results.entries()) {
      if (i === 6 || i === 13) {
        const e = (r as BatchItemError).error;
        assertEquals([e.code, e.param], ["invalid_request", i === 6 ? "maxTokens" : "prompt"], JSON.stringify(r));
        continue;
      }
      const solo = await engine.generate(requests[i]);
      assertEquals((r as GenerateResult).ids, solo.ids, `request ${i}`);
      assertEquals((r as GenerateResult).text, solo.text, `request ${i}`);
    }
    assertEquals(progress.length, requests.length);
    assertEquals(progress.map((p) => p.done), requests.map((_, i) => i + 1));
    const last = progress.at(-1)!;
    assertEquals([last.total, last.failed, last.etaSeconds], [20, 2, 0]);
    const tokens = requests.reduce((n, r, i) => n + (i === 6 || i === 13 ? 0 : r.maxTokens!), 0);
    assertEquals(last.tokens, tokens);
    assert(last.tokensPerSecond > 0);
  } finally {
    await engine.close();
  }
});

test("engine.generateBatch: a signal cancels the batch and every block comes back", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 64, maxSeqs: 4 });
  try {
    const ac = new AbortController();
    let done = 0;
    // A lazy source of many long requests: cancellation must not drain it.
    let pulled = 0;
    const requests = async function* (): AsyncGenerator<GenerateOptions> {
      for (let i = 0; i < 10_000; i++) {
        pulled++;
        yield { prompt: "Once upon a time", maxTokens: 200, ignoreEos: true };
      }
    };
    const batch = engine.generateBatch(requests(), {
      signal: ac.signal,
      concurrency: 4,
      onProgress: (p) => (done = p.done),
    });
    setTimeout(() => ac.abort(new Error("user cancelled")), 300);
    await assertRejects(() => batch, Error, "user cancelled");
    assert(pulled < 100, `pulled ${pulled} requests`);
    for (let i = 0; i < 200 && (engine.stats().kvBlocksUsed > 0 || engine.stats().running > 0); i++) await sleep(20);
    assertEquals([engine.stats().kvBlocksUsed, engine.stats().running, engine.stats().waiting], [0, 0, 0]);
    assert(done < 10_000);
  } finally {
    await engine.close();
  }
});
