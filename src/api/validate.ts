/**
 * The one validation of a request: option types and ranges, the context and the KV cache it
 * must fit, and the defaults. Every entry point (mod.ts, serve.ts, the CLI) goes through it.
 * @module
 */
import { GrammarError } from "../grammar/errors.ts";
import { staticCheck } from "../grammar/spec_check.ts";
import { normalizeSpec } from "../grammar/spec.ts";
import {
  DEFAULT_MAX_TOKENS,
  type EngineInfo,
  type EngineRequest,
  type GenerateOptions,
  type GrammarSpec,
  InvalidRequestError,
  SAMPLING_DEFAULTS,
  type ToolCallFormat,
  type ToolChoiceOption,
} from "../types/api.ts";

/** The limits a request is validated against (an {@link EngineInfo}, or part of one). */
export type RequestLimits =
  & Pick<EngineInfo, "vocabSize" | "maxContext" | "maxTopLogprobs" | "maxN">
  & Partial<Pick<EngineInfo, "kvBlocksTotal" | "blockSize" | "eosTokenIds">>
  & {
    /** The model's tool-call format (null: none; requests with tool calls are refused). */
    toolCallFormat?: ToolCallFormat | null;
  };

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
  if (options.speculative !== undefined && typeof options.speculative !== "boolean") {
    throw new InvalidRequestError("speculative", "must be a boolean");
  }
  if (!options.ignoreEos) {
    for (const id of limits.eosTokenIds ?? []) if (!stopTokenIds.includes(id)) stopTokenIds.push(id);
  }
  const grammar = outputGrammar(options, limits.toolCallFormat ?? null);
  return {
    promptIds: prompt,
    n,
    maxTokens,
    sampling: { temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, seed, logprobs, topLogprobs },
    stopTokenIds,
    ...(grammar ? { grammar } : {}),
    ...(options.speculative === false ? { speculative: false } : {}),
  };
}

/** The effective tool choice: "auto" with tools, "none" without, unless given. */
function toolChoiceOf(options: GenerateOptions): ToolChoiceOption {
  return options.toolChoice ?? (options.tools && options.tools.length > 0 ? "auto" : "none");
}

/** Whether tool calls are parsed out of the request's output (tools offered, choice not "none"). */
export function parsesToolCalls(options: GenerateOptions): boolean {
  return (options.tools?.length ?? 0) > 0 && toolChoiceOf(options) !== "none";
}

/** A GrammarError as the request error naming the option at fault. */
export function grammarRequestError(e: GrammarError, param: string): InvalidRequestError {
  if (e.code === "invalid_spec") return new InvalidRequestError(param, `is invalid: ${e.message}`);
  return new InvalidRequestError(param, `cannot be enforced (${e.code}): ${e.message}`, "invalid_grammar");
}

/** The option a spec comes from (for errors). */
export function grammarParam(spec: GrammarSpec): "tools" | "responseFormat" {
  return spec.type === "tool_calls" ? "tools" : "responseFormat";
}

/**
 * The output constraint of a request, normalized and statically checked (shape, size, the
 * schema audit; the compile check runs on the caller's side before the engine sees it):
 * `responseFormat`, or the grammar of `toolChoice` "required" or a named function (a tool
 * choice "auto" is parsed, not constrained: the row keeps the GPU-resident multi-step decode).
 * Throws {@link InvalidRequestError} naming the option.
 */
export function outputGrammar(options: GenerateOptions, toolFormat: ToolCallFormat | null): GrammarSpec | undefined {
  const { tools, responseFormat } = options;
  if (tools !== undefined && !Array.isArray(tools)) throw new InvalidRequestError("tools", "must be an array of functions");
  if (options.parallelToolCalls !== undefined && typeof options.parallelToolCalls !== "boolean") {
    throw new InvalidRequestError("parallelToolCalls", "must be a boolean");
  }
  const choice = toolChoiceOf(options);
  const named = typeof choice === "object" && choice !== null;
  if (!named && choice !== "none" && choice !== "auto" && choice !== "required") {
    throw new InvalidRequestError("toolChoice", `must be "none", "auto", "required" or {name}, got ${JSON.stringify(choice)}`);
  }
  if (choice !== "none" && !(tools && tools.length > 0)) {
    throw new InvalidRequestError("toolChoice", `${JSON.stringify(choice)} needs tools`);
  }
  if (named && (typeof choice.name !== "string" || !tools!.some((t) => t?.name === choice.name))) {
    throw new InvalidRequestError("toolChoice", `names ${JSON.stringify(choice.name)}, which is not in tools`);
  }
  const calls = choice !== "none";
  if (calls && toolFormat === null) {
    throw new InvalidRequestError("tools", "cannot be used: this model has no tool-call format this engine knows (hermes, llama3_json, mistral, harmony)");
  }
  const forced = choice === "required" || named;
  if (forced && responseFormat !== undefined) {
    throw new InvalidRequestError("toolChoice", `${JSON.stringify(choice)} cannot be combined with responseFormat`);
  }
  let spec: unknown = null;
  let param: "tools" | "responseFormat" = "tools";
  if (tools && tools.length > 0) {
    const toolSpec = {
      type: "tool_calls",
      format: toolFormat ?? "hermes",
      tools,
      choice: choice === "none" ? "auto" : choice,
      parallel: options.parallelToolCalls,
    };
    // The tools' shapes are checked whatever the choice; only a forced choice constrains.
    if (forced) spec = toolSpec;
    else {
      try {
        normalizeSpec(toolSpec);
      } catch (e) {
        if (e instanceof GrammarError) throw grammarRequestError(e, "tools");
        throw e;
      }
    }
  }
  if (!spec && responseFormat !== undefined) {
    spec = responseFormatSpec(responseFormat);
    param = "responseFormat";
  }
  if (!spec) return undefined;
  try {
    return staticCheck(spec).spec;
  } catch (e) {
    if (e instanceof GrammarError) throw grammarRequestError(e, param);
    throw e;
  }
}

/** `responseFormat` as a spec; OpenAI's nested `{type: "json_schema", json_schema: {schema, strict}}` is accepted too. */
function responseFormatSpec(rf: unknown): unknown {
  if (typeof rf !== "object" || rf === null) throw new InvalidRequestError("responseFormat", "must be an object with a type");
  const r = rf as Record<string, unknown>;
  if (r.type === "json_schema" && r.schema === undefined && typeof r.json_schema === "object" && r.json_schema !== null) {
    const js = r.json_schema as Record<string, unknown>;
    return { type: "json_schema", schema: js.schema ?? { type: "object" }, strict: js.strict ?? undefined };
  }
  return rf;
}

/** The stop strings of a request as a list. */
export function stopStrings(options: Pick<GenerateOptions, "stop">): string[] {
  const s = options.stop;
  return s === undefined ? [] : typeof s === "string" ? [s] : [...s];
}
