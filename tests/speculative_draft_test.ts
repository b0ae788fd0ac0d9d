/**
 * Speculative decoding with a draft model (method "draft"): the config surface, the
 * tokenizer check at load, and end to end that it changes no greedy output (with logprobs; 8
 * concurrent streams with mixed lengths, a stop string and max_tokens cut mid-draft;
 * preemption), that a model drafting for itself gets its drafts accepted (greedy, and sampled
 * from q, where min(1, p/q) keeps them), and that neither model's KV keeps a block after the
 * run. The sampled distribution is tested in speculative_sampling_test.ts.
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type GenerateOptions, type SpeculativeConfig } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { parseSpeculativeConfig } from "../src/engine/speculative_config.ts";
import { SpeculationState } from "../src/scheduler/speculation.ts";
import { checkDraftTokenizer } from "../src/engine/draft_model.ts";
import { DraftModelMismatchError, LlmError } from "../src/types/api.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { parseArgs } from "../src/cli/main.ts";
import { post, testServer } from "./helpers/server.ts";
import { VLLM_METRICS } from "../src/server/vllm_metrics.ts";

const draftOf = (model: string, k = 4): SpeculativeConfig => ({ method: "draft", numSpeculativeTokens: k, model: modelDir(model) });

test("draft config: vLLM's JSON with a model; errors name the field", () => {
  assertEquals(parseSpeculativeConfig('{"method":"draft","num_speculative_tokens":3,"model":"/m/small"}'), {
    method: "draft",
    numSpeculativeTokens: 3,
    model: "/m/small",
  });
  const param = (json: string) => assertThrows(() => parseSpeculativeConfig(json), LlmError).param;
  assertEquals(param('{"method":"draft","num_speculative_tokens":3}'), "speculative.model");
  assertEquals(param('{"method":"draft","num_speculative_tokens":3,"model":""}'), "speculative.model");
  assertEquals(param('{"method":"draft","num_speculative_tokens":3,"model":"/m","prompt_lookup_max":2}'), "speculative.promptLookupMax");
  assertEquals(param('{"method":"ngram","num_speculative_tokens":3,"model":"/m"}'), "speculative.model");
  const json = '{"method":"draft","num_speculative_tokens":4,"model":"/m/small"}';
  assertEquals(parseServeArgs(["--speculative-config", json], () => undefined)!.tuning!.speculative, { method: "draft", numSpeculativeTokens: 4, model: "/m/small" });
  const e = assertThrows(() => parseServeArgs(["--speculative-config", '{"method":"draft","num_speculative_tokens":4}'], () => undefined), UsageError);
  assert(/model/.test(e.message), e.message);
  assertEquals(parseArgs(["generate", "--speculative-config", json]).flags.get("speculative-config"), json);
});

test("SpeculationState (draft): speculates from the start, takes a proposal made for its known tokens once, backs off and re-arms", () => {
  const s = new SpeculationState({ method: "draft", numSpeculativeTokens: 3, model: "/m" });
  assert(s.active, "a draft model drafts for any text: on from the start");
  s.propose(5, [7, 8, 9]);
  assertEquals(s.proposalAt, 5);
  assertEquals(s.draft([1, 2, 3, 4, 5], 2), [7, 8], "cut to the limit");
  assertEquals(s.proposalAt, -1, "used once");
  s.propose(5, [7, 8, 9]);
  assertEquals(s.draft([1, 2, 3, 4, 5, 6], 3), [], "made for other tokens: not used");
  assert(!s.active, "no draft: backs off to plain decoding");
  for (let i = 0; i < 8; i++) s.plainStep(() => [], 0);
  assert(!s.active, "during the backoff");
  s.plainStep(() => [], 0);
  assert(s.active, "drafts again after it (no hindsight test without running the draft model)");
  s.observe(3, 1);
  assertEquals(s.k, 1);
});

test("draft model: another vocabulary is refused at load with DraftModelMismatchError", async () => {
  // Same size (512), but ids 3 and 4 are <think> and </think> in qwen3-think-tiny.
  const pieces = await assertRejects(() => checkDraftTokenizer(modelDir("qwen3-tiny"), modelDir("qwen3-think-tiny")), DraftModelMismatchError);
  assertEquals([pieces.code, pieces.param], ["invalid_request", "speculative.model"]);
  // One more added token: the vocabulary sizes differ.
  const dir = await sys.makeTempDir({ prefix: "draft-vocab-" });
  try {
    const src = modelDir("stories260K");
    for (const f of ["config.json", "model.safetensors", "tokenizer_config.json"]) await sys.copyFile(`${src}/${f}`, `${dir}/${f}`);
    const tok = JSON.parse(await sys.readTextFile(`${src}/tokenizer.json`));
    tok.added_tokens.push({ id: 512, content: "<extra>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    await sys.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tok));
    const size = await assertRejects(() => checkDraftTokenizer(src, dir), DraftModelMismatchError);
    assert(/513/.test(size.message) && /512/.test(size.message), size.message);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
  // Different weights and merges, the same vocabulary: accepted.
  await checkDraftTokenizer(modelDir("llama-tiny"), modelDir("llama3-rope-tiny"));
  await checkDraftTokenizer(modelDir("llama-tiny"), modelDir("stories260K"));
  // createEngine refuses it (through the engine Worker: the error keeps its name and code).
  const e = await createEngine({ model: modelDir("qwen3-tiny"), speculative: draftOf("qwen3-think-tiny") }).catch((x) => x);
  assert(e instanceof LlmError, String(e));
  assertEquals([e.name, e.code, e.param], ["DraftModelMismatchError", "invalid_request", "speculative.model"]);
});

/** A passage the greedy continuation copies from. */
const COPY = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat";

const PROMPTS = [
  "Once upon a time",
  "The little dog ran to the park and saw a",
  COPY,
  "A",
  "Tom had a big red ball. He liked to",
  "One day, a girl named Sue went to the store with her mom. She wanted to buy",
  "The sun was",
  "Ben",
];

/** 8 streams of mixed lengths; some cut by a stop string or a max_tokens inside a draft. */
function workload(extra: Partial<GenerateOptions> = {}): GenerateOptions[] {
  return PROMPTS.map((prompt, i) => ({
    prompt,
    maxTokens: 3 + ((i * 11) % 37),
    ignoreEos: true,
    ...(i === 5 ? { stop: ["the"] } : {}),
    ...(prompt === COPY ? { maxTokens: 50 } : {}),
    ...extra,
    ...(extra.seed !== undefined ? { seed: extra.seed + i } : {}),
  }));
}

async function idle(engine: EngineClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0 && s.kvBlocksUsed === 0 && s.specDraftKvBlocksUsed === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function sameOutputs(plain: EngineClient, spec: EngineClient, reqs: GenerateOptions[], label: string): Promise<void> {
  const want = await Promise.all(reqs.map((r) => plain.generate(r)));
  const got = await Promise.all(reqs.map((r) => spec.generate(r)));
  got.forEach((r, i) => {
    assertEquals(r.ids, want[i].ids, `${label} request ${i}`);
    assertEquals(r.text, want[i].text);
    assertEquals(r.finishReason, want[i].finishReason);
    if (reqs[i].logprobs) {
      const lp = (x: typeof r) => x.logprobs!.map((t) => t.logprob);
      lp(r).forEach((v, j) => assert(Math.abs(v - lp(want[i])[j]) < 1e-3, `logprob ${j}: ${v} vs ${lp(want[i])[j]}`));
    }
  });
}

for (const kernelFamily of ["cpu", "gpu"] as const) {
  test(`draft model (${kernelFamily} kernels): stories260K drafting for itself: same outputs, drafts accepted, no block left in either model`, async () => {
    const opts = { model: modelDir("stories260K"), maxBatchTokens: 64, maxSeqs: 8, kernelFamily, blockSize: 8 };
    const plain = await createEngine(opts);
    const spec = await createEngine({ ...opts, speculative: draftOf("stories260K") });
    try {
      await sameOutputs(plain, spec, workload(), "greedy");
      const g = spec.stats();
      assert(g.specDrafts > 0, "no verification step");
      // The same model drafts what it then samples greedily (rows may differ in the last bits).
      assert(g.specAcceptedTokens >= 0.9 * g.specDraftTokens, `acceptance ${g.specAcceptedTokens}/${g.specDraftTokens}`);
      assert(g.specAcceptedPerPosition[3] > 0, `accepted per position ${g.specAcceptedPerPosition}`);
      // Sampled at temperature 1: drafts are sampled from the draft's q, here p up to
      // rounding, so min(1, p/q) keeps nearly all (a greedy draft would be kept only where the
      // target's sample is the argmax). The tokens are not plain decoding's (other draws; the
      // distribution is tested in speculative_sampling_test.ts).
      const reqs = workload({ temperature: 1, seed: 11 });
      const outs = await Promise.all(reqs.map((r) => spec.generate(r)));
      outs.forEach((r, i) => reqs[i].stop || assertEquals(r.ids.length, reqs[i].maxTokens, `sampled request ${i}`));
      const s = spec.stats();
      const [drafted, accepted] = [s.specDraftTokens - g.specDraftTokens, s.specAcceptedTokens - g.specAcceptedTokens];
      assert(drafted > 20 && accepted >= 0.9 * drafted, `sampled run: ${accepted}/${drafted} accepted`);
      // (Once: the slower gpu family on a CPU Vulkan driver would double the test's time.)
      if (kernelFamily === "cpu") await sameOutputs(plain, spec, workload({ logprobs: 2 }), "logprobs");
      await idle(spec);
      const end = spec.stats();
      assertEquals([end.kvBlocksUsed, end.specDraftKvBlocksUsed], [0, 0]);
      assert(end.specDraftKvBlocksTotal > 0);
      assertEquals(plain.stats().specDraftKvBlocksTotal, 0);
    } finally {
      await plain.close();
      await spec.close();
    }
  });
}

test("draft model: llama-tiny drafted by llama3-rope-tiny (other weights): same greedy outputs under preemption, sampled drafts accepted; no block left", async () => {
  // 20 blocks of 8 tokens for 8 streams: sequences are preempted and recomputed.
  const opts = { model: modelDir("llama-tiny"), maxBatchTokens: 64, maxSeqs: 8, blockSize: 8, numBlocks: 20 };
  const plain = await createEngine(opts);
  const spec = await createEngine({ ...opts, speculative: draftOf("llama3-rope-tiny", 3) });
  try {
    const reqs: GenerateOptions[] = [
      ...workload().slice(0, 6),
      { prompt: [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8, 5, 6], maxTokens: 40, ignoreEos: true },
      { prompt: "Ben", maxTokens: 33, ignoreEos: true },
    ];
    await sameOutputs(plain, spec, reqs, "greedy");
    const s = spec.stats();
    assert(s.specDraftTokens > 0, "no drafts");
    assert(s.preemptions > 0, "no preemption: the test does not cover it");
    // Sampled: drafts d ~ q in the same tight pool (preempted sequences drop their proposals,
    // whose q rows their slot's next owner may overwrite); these two models share some of
    // their mass, so q drafts are accepted where greedy ones never are.
    const sampled = reqs.map((r, i) => ({ ...r, temperature: 1, seed: 40 + i }));
    const outs = await Promise.all(sampled.map((r) => spec.generate(r)));
    outs.forEach((r, i) => sampled[i].stop || assertEquals(r.ids.length, sampled[i].maxTokens, `sampled request ${i}`));
    const t = spec.stats();
    assert(t.specAcceptedTokens > s.specAcceptedTokens, `sampled run: ${t.specAcceptedTokens - s.specAcceptedTokens} of ${t.specDraftTokens - s.specDraftTokens} drafts accepted`);
    await idle(spec);
    assertEquals([spec.stats().kvBlocksUsed, spec.stats().specDraftKvBlocksUsed], [0, 0]);
  } finally {
    await plain.close();
    await spec.close();
  }
});

test("draft model server: --speculative-config with a model; spec_decode counters in /metrics", async () => {
  const s = await testServer("stories260K", { maxSeqs: 4, tuning: { speculative: draftOf("stories260K") } });
  try {
    const body = { model: "stories260K", prompt: "Once upon a time", max_tokens: 40, temperature: 0, ignore_eos: true };
    const on = await post(`${s.base}/v1/completions`, body);
    const off = await post(`${s.base}/v1/completions`, { ...body, speculative: false });
    assertEquals([on.status, off.status], [200, 200]);
    assertEquals(on.json.choices[0].text, off.json.choices[0].text);
    const text = await (await fetch(`${s.base}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text)?.[1]);
    assert(value(VLLM_METRICS.specDraftTokens) > 0, "draft tokens");
    assert(value(VLLM_METRICS.specAcceptedTokens) > 0, "accepted tokens");
  } finally {
    await s.close();
  }
});

test("draft model: requests cancelled at random (and n = 2 siblings) give back every block of both models", async () => {
  const engine = await createEngine({ model: modelDir("stories260K"), maxBatchTokens: 64, maxSeqs: 8, numBlocks: 48, blockSize: 8, speculative: draftOf("stories260K") });
  try {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const jobs: Promise<{ finishReason: string }>[] = [];
    for (let i = 0; i < 24; i++) {
      const ac = new AbortController();
      const n = i % 5 === 0 ? 2 : 1;
      jobs.push(engine.generate({ prompt: PROMPTS[i % PROMPTS.length], maxTokens: 30, n, temperature: n > 1 ? 1 : 0, ignoreEos: true, signal: ac.signal }));
      if (rand() < 0.5) setTimeout(() => ac.abort(), rand() * 300);
      if (rand() < 0.3) await new Promise((r) => setTimeout(r, 10));
    }
    const results = await Promise.all(jobs);
    assert(results.some((r) => r.finishReason === "cancelled"), "nothing was cancelled");
    assert(results.some((r) => r.finishReason === "length"), "nothing finished");
    assert(engine.stats().specDraftTokens > 0, "no drafts");
    await idle(engine);
    assertEquals([engine.stats().kvBlocksUsed, engine.stats().specDraftKvBlocksUsed], [0, 0]);
  } finally {
    await engine.close();
  }
});

test("draft model and hybrid models: a hybrid target speculates (rejections restore its state: same outputs); a hybrid draft is refused", async () => {
  const opts = { model: modelDir("qwen35-tiny"), maxBatchTokens: 64, maxSeqs: 4 };
  const plain = await createEngine(opts);
  const engine = await createEngine({ ...opts, speculative: draftOf("qwen3-tiny") });
  try {
    const reqs: GenerateOptions[] = [
      { prompt: [5, 6, 7, 8, 5, 6, 7, 8], maxTokens: 30, ignoreEos: true },
      { prompt: [9, 10, 11], maxTokens: 17, ignoreEos: true },
      { prompt: "Once upon a time", maxTokens: 23, ignoreEos: true },
    ];
    await sameOutputs(plain, engine, reqs, "hybrid target");
    const s = engine.stats();
    // Another model's drafts are mostly rejected: the snapshot restore and replay ran.
    assert(s.specDraftTokens > 0 && s.specReplayTokens > 0, JSON.stringify([s.specDraftTokens, s.specReplayTokens]));
    await idle(engine);
    const end = engine.stats();
    assertEquals([end.kvBlocksUsed, end.stateSlotsUsed, end.specDraftKvBlocksUsed], [0, 0, 0]);
  } finally {
    await engine.close();
    await plain.close();
  }
  const e = await createEngine({ model: modelDir("qwen3-tiny"), maxSeqs: 4, speculative: draftOf("qwen35-tiny") }).catch((x) => x);
  assert(e instanceof LlmError, String(e));
  assertEquals([e.code, e.param], ["unsupported_architecture", "speculative.model"]);
});
