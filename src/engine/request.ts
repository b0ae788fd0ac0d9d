/**
 * The public request options of the engine, their validation, and the plain-data form a
 * request takes when it crosses to the engine Worker.
 * @module
 */
import type { SamplingParams } from "./gpu_sampler.ts";

/** Options of one generation request (the `mod.ts` API). */
export interface GenerateOptions {
  /** Prompt text (tokenized with BOS as the model's tokenizer config says) or token ids. */
  prompt: string | readonly number[];
  /** Tokens to generate at most (default 256, bounded by the context). */
  maxTokens?: number;
  /** 0 = greedy (default 1 when any other sampling option is set, else 0). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Seed of this request's random stream: same seed, same output, whatever the batch. */
  seed?: number;
  /** Stop strings: the text ends before the first match. */
  stop?: string | readonly string[];
  /** Extra token ids that end the request. */
  stopTokenIds?: readonly number[];
  /** Keep going past EOS. */
  ignoreEos?: boolean;
  /** true = the logprob of each sampled token; a number = also that many alternatives. */
  logprobs?: boolean | number;
  /** Independent completions of the same prompt (they share the prompt's KV blocks). */
  n?: number;
  /** Cancels the request: it leaves at the next step and its blocks return to the pool. */
  signal?: AbortSignal;
}

/** Raised for invalid request options. */
export class InvalidRequestError extends Error {
  /** The offending option. */
  readonly param: string;
  constructor(param: string, message: string) {
    super(message);
    this.name = "InvalidRequestError";
    this.param = param;
  }
}

/** A validated request as posted to the engine Worker. */
export interface EngineRequest extends SamplingParams {
  promptIds: number[];
  n: number;
  maxTokens: number;
  /** Undefined = the engine draws one. */
  seed: number | undefined;
  stopTokenIds: number[];
  ignoreEos: boolean;
  logprobs: boolean;
  topLogprobs: number;
}

/** Limits a request is validated against. */
export interface RequestLimits {
  vocabSize: number;
  maxContext: number;
  maxTopLogprobs: number;
  maxN: number;
  /** KV-cache size, when known: a request that could never fit alone is refused here. */
  kvBlocksTotal?: number;
  blockSize?: number;
}

function num(
  value: unknown,
  param: string,
  fallback: number,
  check: (v: number) => boolean,
  rule: string,
): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || !check(value)) {
    throw new InvalidRequestError(param, `${param} must be ${rule}, got ${JSON.stringify(value)}`);
  }
  return value;
}

const int = (v: number) => Number.isInteger(v);

/** Validates options against the model's limits; `promptIds` is the tokenized prompt. */
export function validateRequest(
  options: GenerateOptions,
  promptIds: readonly number[],
  limits: RequestLimits,
): EngineRequest {
  if (promptIds.length === 0) throw new InvalidRequestError("prompt", "prompt is empty");
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError("prompt", `token id ${id} is outside the vocabulary (0..${limits.vocabSize - 1})`);
    }
  }
  if (promptIds.length >= limits.maxContext) {
    throw new InvalidRequestError(
      "prompt",
      `prompt has ${promptIds.length} tokens; the context holds ${limits.maxContext} including the output`,
    );
  }
  const room = limits.maxContext - promptIds.length;
  const maxTokens = num(options.maxTokens, "maxTokens", Math.min(256, room), (v) => int(v) && v >= 1, "a positive integer");
  if (maxTokens > room) {
    throw new InvalidRequestError(
      "maxTokens",
      `prompt (${promptIds.length} tokens) plus maxTokens (${maxTokens}) exceeds the context of ${limits.maxContext} tokens`,
    );
  }
  if (limits.kvBlocksTotal !== undefined && limits.blockSize !== undefined) {
    const need = Math.ceil((promptIds.length + maxTokens) / limits.blockSize);
    if (need > limits.kvBlocksTotal) {
      throw new InvalidRequestError(
        "maxTokens",
        `prompt (${promptIds.length} tokens) plus maxTokens (${maxTokens}) needs ${need} KV blocks; the cache has ${limits.kvBlocksTotal}`,
      );
    }
  }
  const sampling = options.topK !== undefined || options.topP !== undefined || options.minP !== undefined ||
    options.seed !== undefined;
  const temperature = num(options.temperature, "temperature", sampling ? 1 : 0, (v) => v >= 0 && v <= 100, "between 0 and 100");
  const topK = num(options.topK, "topK", 0, (v) => int(v) && v >= 0, "a non-negative integer (0 = off)");
  const topP = num(options.topP, "topP", 1, (v) => v > 0 && v <= 1, "in (0, 1]");
  const minP = num(options.minP, "minP", 0, (v) => v >= 0 && v <= 1, "in [0, 1]");
  const repetitionPenalty = num(options.repetitionPenalty, "repetitionPenalty", 1, (v) => v > 0 && v <= 10, "in (0, 10]");
  const presencePenalty = num(options.presencePenalty, "presencePenalty", 0, (v) => v >= -2 && v <= 2, "in [-2, 2]");
  const frequencyPenalty = num(options.frequencyPenalty, "frequencyPenalty", 0, (v) => v >= -2 && v <= 2, "in [-2, 2]");
  const seed = options.seed === undefined
    ? undefined
    : num(options.seed, "seed", 0, (v) => int(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER, "an integer") >>> 0;
  const n = num(options.n, "n", 1, (v) => int(v) && v >= 1 && v <= limits.maxN, `an integer in [1, ${limits.maxN}]`);
  const stopTokenIds = (options.stopTokenIds ?? []).map((id) => {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError("stopTokenIds", `stop token id ${id} is outside the vocabulary`);
    }
    return id;
  });
  const stop = options.stop;
  if (stop !== undefined && typeof stop !== "string" && !(Array.isArray(stop) && stop.every((s) => typeof s === "string"))) {
    throw new InvalidRequestError("stop", "stop must be a string or an array of strings");
  }
  let logprobs = false;
  let topLogprobs = 0;
  if (options.logprobs !== undefined && options.logprobs !== false) {
    logprobs = true;
    if (typeof options.logprobs === "number") {
      topLogprobs = num(options.logprobs, "logprobs", 0, (v) => int(v) && v >= 0 && v <= limits.maxTopLogprobs, `an integer in [0, ${limits.maxTopLogprobs}]`);
    } else if (options.logprobs !== true) {
      throw new InvalidRequestError("logprobs", "logprobs must be a boolean or a number");
    }
  }
  return {
    promptIds: [...promptIds],
    n,
    maxTokens,
    temperature,
    topK,
    topP,
    minP,
    repetitionPenalty,
    presencePenalty,
    frequencyPenalty,
    seed,
    stopTokenIds,
    ignoreEos: options.ignoreEos ?? false,
    logprobs,
    topLogprobs,
  };
}
