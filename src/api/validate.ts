/**
 * The one validation of a request: option types and ranges, the context and the KV cache it
 * must fit, and the defaults. Every entry point (mod.ts, serve.ts, the CLI) goes through it.
 * @module
 */
import {
  DEFAULT_MAX_TOKENS,
  type EngineInfo,
  type EngineRequest,
  type GenerateOptions,
  InvalidRequestError,
  SAMPLING_DEFAULTS,
} from "./types.ts";

/** The limits a request is validated against (an {@link EngineInfo}, or part of one). */
export type RequestLimits =
  & Pick<EngineInfo, "vocabSize" | "maxContext" | "maxTopLogprobs" | "maxN">
  & Partial<Pick<EngineInfo, "kvBlocksTotal" | "blockSize" | "eosTokenIds">>;

function num(
  value: unknown,
  param: string,
  fallback: number,
  check: (v: number) => boolean,
  rule: string,
): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || !check(value)) {
    throw new InvalidRequestError(param, `must be ${rule}, got ${JSON.stringify(value)}`);
  }
  return value;
}

const int = (v: number) => Number.isInteger(v);

function tokenIds(ids: readonly unknown[], param: string, vocabSize: number): number[] {
  return ids.map((id) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InvalidRequestError(param, `has token id ${id}, outside the vocabulary (0..${vocabSize - 1})`);
    }
    return id;
  });
}

/** A fresh u32 seed for a request that gave none. */
function drawSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * Validates options against the engine's limits; `promptIds` is the tokenized prompt.
 * Throws {@link InvalidRequestError} naming the option (code `context_length_exceeded` when
 * the prompt and output cannot fit the context or the KV cache).
 */
export function validateRequest(
  options: GenerateOptions,
  promptIds: readonly number[],
  limits: RequestLimits,
): EngineRequest {
  if (promptIds.length === 0) throw new InvalidRequestError("prompt", "is empty");
  const prompt = tokenIds(promptIds, "prompt", limits.vocabSize);
  if (prompt.length >= limits.maxContext) {
    throw new InvalidRequestError(
      "prompt",
      `has ${prompt.length} tokens; the context holds ${limits.maxContext} including the output`,
      "context_length_exceeded",
    );
  }
  const room = limits.maxContext - prompt.length;
  const maxTokens = num(options.maxTokens, "maxTokens", Math.min(DEFAULT_MAX_TOKENS, room), (v) => int(v) && v >= 1, "a positive integer");
  if (maxTokens > room) {
    throw new InvalidRequestError(
      "maxTokens",
      `(${maxTokens}) plus the prompt (${prompt.length} tokens) exceeds the context of ${limits.maxContext} tokens`,
      "context_length_exceeded",
    );
  }
  if (limits.kvBlocksTotal !== undefined && limits.blockSize !== undefined) {
    const need = Math.ceil((prompt.length + maxTokens) / limits.blockSize);
    if (need > limits.kvBlocksTotal) {
      throw new InvalidRequestError(
        "maxTokens",
        `(${maxTokens}) plus the prompt (${prompt.length} tokens) needs ${need} KV blocks; the cache has ${limits.kvBlocksTotal}`,
        "context_length_exceeded",
      );
    }
  }
  const d = SAMPLING_DEFAULTS;
  // Any sampling option (or a seed) without a temperature means "sample", i.e. temperature 1.
  const sampling = options.topK !== undefined || options.topP !== undefined || options.minP !== undefined ||
    options.seed !== undefined;
  const temperature = num(options.temperature, "temperature", sampling ? 1 : d.temperature, (v) => v >= 0 && v <= 100, "between 0 and 100");
  const topK = num(options.topK, "topK", d.topK, (v) => int(v) && v >= 0, "a non-negative integer (0 = off)");
  const topP = num(options.topP, "topP", d.topP, (v) => v > 0 && v <= 1, "in (0, 1]");
  const minP = num(options.minP, "minP", d.minP, (v) => v >= 0 && v <= 1, "in [0, 1]");
  const repetitionPenalty = num(options.repetitionPenalty, "repetitionPenalty", d.repetitionPenalty, (v) => v > 0 && v <= 10, "in (0, 10]");
  const presencePenalty = num(options.presencePenalty, "presencePenalty", d.presencePenalty, (v) => v >= -2 && v <= 2, "in [-2, 2]");
  const frequencyPenalty = num(options.frequencyPenalty, "frequencyPenalty", d.frequencyPenalty, (v) => v >= -2 && v <= 2, "in [-2, 2]");
  const seed = options.seed === undefined
    ? drawSeed()
    : num(options.seed, "seed", 0, (v) => int(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER, "an integer") >>> 0;
  const n = num(options.n, "n", 1, (v) => int(v) && v >= 1 && v <= limits.maxN, `an integer in [1, ${limits.maxN}]`);
  if (options.stopTokenIds !== undefined && !Array.isArray(options.stopTokenIds)) {
    throw new InvalidRequestError("stopTokenIds", "must be an array of token ids");
  }
  const stopTokenIds = tokenIds(options.stopTokenIds ?? [], "stopTokenIds", limits.vocabSize);
  const stop = options.stop;
  if (stop !== undefined && typeof stop !== "string" && !(Array.isArray(stop) && stop.every((s) => typeof s === "string"))) {
    throw new InvalidRequestError("stop", "must be a string or an array of strings");
  }
  let logprobs = false;
  let topLogprobs = 0;
  if (options.logprobs !== undefined && options.logprobs !== false) {
    logprobs = true;
    if (typeof options.logprobs === "number") {
      topLogprobs = num(options.logprobs, "logprobs", 0, (v) => int(v) && v >= 0 && v <= limits.maxTopLogprobs, `an integer in [0, ${limits.maxTopLogprobs}]`);
    } else if (options.logprobs !== true) {
      throw new InvalidRequestError("logprobs", "must be a boolean or a number");
    }
  }
  if (!options.ignoreEos) {
    for (const id of limits.eosTokenIds ?? []) if (!stopTokenIds.includes(id)) stopTokenIds.push(id);
  }
  return {
    promptIds: prompt,
    n,
    maxTokens,
    sampling: { temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, seed, logprobs, topLogprobs },
    stopTokenIds,
  };
}

/** The stop strings of a request as a list. */
export function stopStrings(options: Pick<GenerateOptions, "stop">): string[] {
  const s = options.stop;
  return s === undefined ? [] : typeof s === "string" ? [s] : [...s];
}
