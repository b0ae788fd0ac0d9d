/** Validation of request options: every bad value names its option. */
import { test } from "./helpers/test.ts";
import { validateRequest } from "../src/api/validate.ts";
import { InvalidRequestError } from "../src/types/api.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

const LIMITS = { vocabSize: 512, maxContext: 64, maxTopLogprobs: 20, maxN: 8 };

test("request: defaults are greedy with room-limited max tokens", () => {
  const r = validateRequest({ prompt: "x" }, [1, 2, 3], LIMITS);
  assertEquals([r.sampling.temperature, r.sampling.topK, r.sampling.topP, r.maxTokens, r.n, r.sampling.logprobs], [0, 0, 1, 61, 1, false]);
  assertEquals(validateRequest({ prompt: "x", seed: 3 }, [1], LIMITS).sampling.temperature, 1);
});

test("request: bad options are refused with the option named", () => {
  const bad: [Record<string, unknown>, string][] = [
    [{ maxTokens: 0 }, "maxTokens"],
    [{ maxTokens: 1.5 }, "maxTokens"],
    [{ maxTokens: 62 }, "maxTokens"],
    [{ temperature: -1 }, "temperature"],
    [{ temperature: "hot" }, "temperature"],
    [{ topK: -1 }, "topK"],
    [{ topP: 0 }, "topP"],
    [{ topP: 1.5 }, "topP"],
    [{ minP: 2 }, "minP"],
    [{ repetitionPenalty: 0 }, "repetitionPenalty"],
    [{ presencePenalty: 3 }, "presencePenalty"],
    [{ frequencyPenalty: -3 }, "frequencyPenalty"],
    [{ seed: 1.5 }, "seed"],
    [{ n: 0 }, "n"],
    [{ n: 9 }, "n"],
    [{ logprobs: 21 }, "logprobs"],
    [{ stop: [1] }, "stop"],
    [{ stopTokenIds: [600] }, "stopTokenIds"],
  ];
  for (const [opts, param] of bad) {
    const e = assertThrows(() => validateRequest({ prompt: "x", ...opts } as never, [1, 2, 3], LIMITS), InvalidRequestError);
    assertEquals(e.param, param, JSON.stringify(opts));
  }
  assertThrows(() => validateRequest({ prompt: "" }, [], LIMITS), InvalidRequestError, "empty");
  assertThrows(() => validateRequest({ prompt: [9999] }, [9999], LIMITS), InvalidRequestError, "vocabulary");
  assertThrows(() => validateRequest({ prompt: "x" }, new Array(64).fill(1), LIMITS), InvalidRequestError, "context");
});

test("request: one that can never fit the context or the KV cache is refused with its code", () => {
  const limits = { ...LIMITS, maxContext: 100, kvBlocksTotal: 4, blockSize: 4 };
  const ids = (n: number) => new Array(n).fill(1);
  const kv = assertThrows(() => validateRequest({ prompt: "x", maxTokens: 10 }, ids(10), limits), InvalidRequestError, "KV blocks");
  assertEquals([kv.code, kv.param], ["context_length_exceeded", "maxTokens"]);
  const ctx = assertThrows(() => validateRequest({ prompt: "x", maxTokens: 20 }, ids(90), limits), InvalidRequestError, "context");
  assertEquals([ctx.code, ctx.param], ["context_length_exceeded", "maxTokens"]);
  validateRequest({ prompt: "x", maxTokens: 8 }, ids(8), limits);
  assertEquals(assertThrows(() => validateRequest({ prompt: "x", topK: -1 }, [1], LIMITS), InvalidRequestError).code, "invalid_request");
});

test("request: EOS ends a request unless ignored; a missing seed is drawn", () => {
  const limits = { ...LIMITS, eosTokenIds: [2] };
  assertEquals(validateRequest({ prompt: "x", stopTokenIds: [7] }, [1], limits).stopTokenIds, [7, 2]);
  assertEquals(validateRequest({ prompt: "x", stopTokenIds: [7], ignoreEos: true }, [1], limits).stopTokenIds, [7]);
  const seeds = new Set(Array.from({ length: 8 }, () => validateRequest({ prompt: "x" }, [1], limits).sampling.seed));
  assert(seeds.size > 1, "every request drew the same seed");
  assertEquals(validateRequest({ prompt: "x", seed: -1 }, [1], limits).sampling.seed, 0xffffffff);
});
