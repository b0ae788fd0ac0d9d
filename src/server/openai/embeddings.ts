/**
 * `POST /v1/embeddings` in OpenAI's shape: the body's types (input, encoding_format,
 * dimensions, model, user) are checked here; the inputs' contents, their fit and `dimensions`'
 * range are the engine's one validation (`api/embed_request.ts`). Vectors come back as JSON
 * floats (9 significant digits: every f32 exactly) or base64 of little-endian f32 bytes.
 * @module
 */
import type { EmbedResult } from "../../../mod.ts";
import { badParam } from "../api_error.ts";

/** A parsed `/v1/embeddings` body. */
export interface EmbeddingRequest {
  model: string | null;
  /** OpenAI's `input`, checked further by the engine's validation. */
  input: unknown;
  encodingFormat: "float" | "base64";
  dimensions?: number;
}

/** Checks an `/v1/embeddings` body's shape. */
export function parseEmbeddingRequest(body: unknown): EmbeddingRequest {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw badParam("body", "the request body must be a JSON object");
  const b = body as Record<string, unknown>;
  if (b.input === undefined || b.input === null) throw badParam("input", "input is required", "missing_required_parameter");
  if (b.model !== undefined && b.model !== null && typeof b.model !== "string") throw badParam("model", "model must be a string");
  const format = b.encoding_format ?? "float";
  if (format !== "float" && format !== "base64") {
    throw badParam("encoding_format", `encoding_format must be "float" or "base64", got ${JSON.stringify(format)}`);
  }
  const dims = b.dimensions;
  if (dims !== undefined && dims !== null && (typeof dims !== "number" || !Number.isInteger(dims))) {
    throw badParam("dimensions", `dimensions must be an integer, got ${JSON.stringify(dims)}`);
  }
  if (b.user !== undefined && b.user !== null && typeof b.user !== "string") throw badParam("user", "user must be a string");
  return {
    model: (b.model as string | undefined) ?? null,
    input: b.input,
    encodingFormat: format,
    ...(typeof dims === "number" ? { dimensions: dims } : {}),
  };
}

/** The response body of an embedding request. */
export function embeddingResponse(result: EmbedResult, format: "float" | "base64", model: string): unknown {
  return {
    object: "list",
    data: result.embeddings.map((v, index) => ({
      object: "embedding",
      index,
      embedding: format === "base64" ? base64(v) : Array.from(v, (x) => Number(x.toPrecision(9))),
    })),
    model,
    usage: { prompt_tokens: result.usage.promptTokens, total_tokens: result.usage.promptTokens },
  };
}

/** Base64 of a vector's little-endian f32 bytes (what OpenAI's clients decode). */
function base64(v: Float32Array): string {
  const le = new DataView(new ArrayBuffer(v.length * 4));
  v.forEach((x, i) => le.setFloat32(i * 4, x, true));
  const bytes = new Uint8Array(le.buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
