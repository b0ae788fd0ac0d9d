/**
 * The one validation of an embedding request (mod.ts's `embed`, serve.ts's /v1/embeddings):
 * the inputs in OpenAI's shapes, their tokens (the end-of-text token appended for last-token
 * pooling, Qwen3-Embedding's recipe), the context and KV cache each must fit, and
 * `dimensions`. Also the finishing touch on the engine's pooled vectors: truncation and L2
 * normalization.
 * @module
 */
import { type EmbedOptions, type EmbedRequest, type EngineInfo, InvalidRequestError } from "../types/api.ts";

/** The limits an embedding request is checked against (an {@link EngineInfo}, or part of one). */
export type EmbedLimits =
  & Pick<EngineInfo, "vocabSize" | "maxContext" | "hiddenSize" | "pooling" | "eosTokenIds">
  & Partial<Pick<EngineInfo, "kvBlocksTotal" | "blockSize">>;

/** A validated embedding request and the width its vectors are cut to. */
export interface ValidEmbedRequest {
  request: EmbedRequest;
  dimensions: number;
}

/** Whether `input` is one input (a string or a flat array of token ids), not a list of them. */
export function isSingleInput(input: unknown): boolean {
  return typeof input === "string" || (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === "number"));
}

/**
 * Each input of `input` (a string, strings, token ids, or token-id arrays), unchecked inside:
 * a flat array of numbers is one input of token ids.
 */
export function embedInputs(input: unknown): (string | unknown[])[] {
  if (typeof input === "string") return [input];
  if (!Array.isArray(input)) {
    throw new InvalidRequestError("input", "must be a string, an array of strings, an array of token ids or an array of token-id arrays");
  }
  if (input.length === 0) throw new InvalidRequestError("input", "is empty");
  if (isSingleInput(input)) return [input];
  return input.map((x, i) => {
    if (typeof x === "string" || Array.isArray(x)) return x;
    throw new InvalidRequestError("input", `[${i}] must be a string or an array of token ids, got ${JSON.stringify(x)}`);
  });
}

/**
 * Validates an embedding request; `tokenize` encodes a text input (with the special tokens
 * its tokenizer config adds). Throws {@link InvalidRequestError} naming the option (code
 * `context_length_exceeded` when an input cannot fit).
 */
export function validateEmbedRequest(
  options: EmbedOptions,
  tokenize: (text: string) => number[],
  limits: EmbedLimits,
): ValidEmbedRequest {
  const pooling = limits.pooling;
  if (pooling === null) {
    throw new InvalidRequestError(
      "input",
      "cannot be embedded by this model: its sentence-transformers pooling is not one this server implements (start it with --pooling last|mean)",
    );
  }
  const dims = options.dimensions;
  if (dims !== undefined && (typeof dims !== "number" || !Number.isInteger(dims) || dims < 1 || dims > limits.hiddenSize)) {
    throw new InvalidRequestError("dimensions", `must be an integer in [1, ${limits.hiddenSize}], got ${JSON.stringify(dims)}`);
  }
  const inputs = embedInputs(options.input);
  const many = !isSingleInput(options.input);
  const eos = limits.eosTokenIds[0];
  const ids = inputs.map((input, i) => {
    const param = many ? `input[${i}]` : "input";
    if (input === "") throw new InvalidRequestError(param, "is an empty string");
    const raw = typeof input === "string" ? tokenize(input) : input;
    const out = raw.map((id) => {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
        throw new InvalidRequestError(param, `has token id ${JSON.stringify(id)}, outside the vocabulary (0..${limits.vocabSize - 1})`);
      }
      return id;
    });
    if (typeof input !== "string" && out.length === 0) throw new InvalidRequestError(param, "is an empty array of token ids");
    // The pooled last token is the end-of-text token (unless the input already ends with it).
    if (pooling === "last" && eos !== undefined && out.at(-1) !== eos) out.push(eos);
    if (out.length > limits.maxContext) {
      throw new InvalidRequestError(param, `has ${out.length} tokens; the context holds ${limits.maxContext}`, "context_length_exceeded");
    }
    if (limits.kvBlocksTotal !== undefined && limits.blockSize !== undefined) {
      const need = Math.ceil(out.length / limits.blockSize);
      if (need > limits.kvBlocksTotal) {
        throw new InvalidRequestError(param, `has ${out.length} tokens, ${need} KV blocks; the cache has ${limits.kvBlocksTotal}`, "context_length_exceeded");
      }
    }
    return out;
  });
  return { request: { inputs: ids, pooling }, dimensions: dims ?? limits.hiddenSize };
}

/** The first `dimensions` values of a pooled vector, L2-normalized (OpenAI's `dimensions`). */
export function finishEmbedding(pooled: ArrayLike<number>, dimensions: number): Float32Array {
  let ss = 0;
  for (let i = 0; i < dimensions; i++) ss += pooled[i] * pooled[i];
  const scale = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  const out = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) out[i] = pooled[i] * scale;
  return out;
}
