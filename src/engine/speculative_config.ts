/**
 * The speculative-decoding setting: checked engine options, and vLLM's
 * `--speculative-config` JSON (snake_case) turned into them.
 * @module
 */
import { LlmError, type SpeculativeConfig } from "../types/api.ts";

/** Most tokens drafted per step. */
export const MAX_SPECULATIVE_TOKENS = 16;
/** Longest n-gram looked up. */
export const MAX_PROMPT_LOOKUP = 64;

/** Methods named by vLLM that this engine does not implement yet. */
const NOT_YET = new Set(["eagle", "eagle3", "medusa", "mlp_speculator", "suffix"]);

/** Fields each method takes. */
const FIELDS: Record<SpeculativeConfig["method"], readonly string[]> = {
  ngram: ["method", "numSpeculativeTokens", "disableByBatchSize", "promptLookupMax", "promptLookupMin"],
  draft: ["method", "numSpeculativeTokens", "disableByBatchSize", "model"],
  mtp: ["method", "numSpeculativeTokens", "disableByBatchSize"],
};

function invalid(param: string, message: string): LlmError {
  return new LlmError("invalid_request", `speculative ${param} ${message}`, { param: `speculative.${param}` });
}

function intIn(v: unknown, param: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(param, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Checks a {@link SpeculativeConfig} (from `createEngine` or the Worker): a plain object
 * with a supported method, the fields of that method and sane sizes. Throws an
 * `invalid_request` {@link LlmError} whose `param` names the field.
 */
export function checkSpeculativeConfig(c: SpeculativeConfig): SpeculativeConfig {
  if (typeof c !== "object" || c === null || Array.isArray(c)) throw invalid("config", "must be an object");
  const method = (c as { method?: unknown }).method;
  if (typeof method === "string" && NOT_YET.has(method)) {
    throw invalid("method", `"${method}" is not supported yet (only "ngram", "draft" and "mtp")`);
  }
  if (method !== "ngram" && method !== "draft" && method !== "mtp") throw invalid("method", `must be "ngram", "draft" or "mtp", got ${JSON.stringify(method)}`);
  const known = new Set(Object.values(FIELDS).flat());
  for (const key of Object.keys(c)) {
    if (!FIELDS[method].includes(key)) throw invalid(key, known.has(key) ? `is not a field of method "${method}"` : "is not a known field");
  }
  const k = intIn(c.numSpeculativeTokens, "numSpeculativeTokens", 1, MAX_SPECULATIVE_TOKENS);
  const limit = c.disableByBatchSize;
  if (limit !== undefined && (typeof limit !== "number" || !Number.isSafeInteger(limit) || limit < 1)) {
    throw invalid("disableByBatchSize", `must be a positive integer, got ${JSON.stringify(limit)}`);
  }
  const base = limit === undefined ? { numSpeculativeTokens: k } : { numSpeculativeTokens: k, disableByBatchSize: limit };
  if (c.method === "mtp") return { method: "mtp", ...base };
  if (c.method === "draft") {
    if (typeof c.model !== "string" || c.model === "") throw invalid("model", `must name the draft model's directory, got ${JSON.stringify(c.model)}`);
    return { method: "draft", ...base, model: c.model };
  }
  const max = intIn(c.promptLookupMax ?? 4, "promptLookupMax", 1, MAX_PROMPT_LOOKUP);
  const min = intIn(c.promptLookupMin ?? Math.min(2, max), "promptLookupMin", 1, max);
  return { method: "ngram", ...base, promptLookupMax: max, promptLookupMin: min };
}

/** vLLM's field names and ours. */
const VLLM_FIELDS: Record<string, string> = {
  method: "method",
  num_speculative_tokens: "numSpeculativeTokens",
  disable_by_batch_size: "disableByBatchSize",
  prompt_lookup_max: "promptLookupMax",
  prompt_lookup_min: "promptLookupMin",
  model: "model",
};

/**
 * Parses vLLM's `--speculative-config` JSON, e.g.
 * `{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}` or
 * `{"method":"draft","num_speculative_tokens":4,"model":"path/to/small-model"}` or
 * `{"method":"mtp","num_speculative_tokens":2}` (the checkpoint's own MTP head); any of them may
 * add `"disable_by_batch_size": N` (no new verification while N sequences decode).
 * Throws an `invalid_request` {@link LlmError} naming the field at fault.
 */
export function parseSpeculativeConfig(json: string): SpeculativeConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw invalid("config", `is not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw invalid("config", "must be a JSON object");
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const ours = VLLM_FIELDS[key];
    if (!ours) throw invalid(key, "is not a known field");
    out[ours] = value;
  }
  return checkSpeculativeConfig(out as unknown as SpeculativeConfig);
}
