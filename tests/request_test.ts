/** Validation of request options: every bad value names its option. */
import { test } from "./helpers/test.ts";
import { InvalidRequestError, validateRequest } from "../src/engine/request.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";

const LIMITS = { vocabSize: 512, maxContext: 64, maxTopLogprobs: 20, maxN: 8 };

test("request: defaults are greedy with room-limited max tokens", () => {
  const r = validateRequest({ prompt: "x" }, [1, 2, 3], LIMITS);
  assertEquals([r.temperature, r.topK, r.topP, r.maxTokens, r.n, r.logprobs], [0, 0, 1, 61, 1, false]);
  assertEquals(validateRequest({ prompt: "x", seed: 3 }, [1], LIMITS).temperature, 1);
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
