/**
 * The top-level request fields each route accepts, as data: every field of OpenAI's API
 * reference for the route (implemented, or accepted and ignored where it means nothing here:
 * `user`, `store`, `metadata`...) plus the documented vLLM / llama.cpp extensions this server
 * implements. Anything else is answered 400 naming the field, as OpenAI does, so a typo such as
 * `max_token` is not silently ignored (serve.ts `--lenient-fields` turns the check off).
 * A new route declares its own {@link KnownFields} here and calls {@link KnownFields.check}.
 * @module
 */
import { badParam } from "../api_error.ts";

/** Fields of both OpenAI generation routes that mean the same on each. */
const OPENAI_SAMPLING = [
  "model",
  "frequency_penalty",
  "logit_bias",
  "logprobs",
  "max_tokens",
  "n",
  "presence_penalty",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "temperature",
  "top_p",
  "user",
] as const;

/** vLLM's sampling extensions implemented by both generation routes. */
const VLLM_SAMPLING = ["top_k", "min_p", "repetition_penalty", "ignore_eos", "stop_token_ids", "speculative"] as const;

/** vLLM's guided decoding (structured output) fields. */
const VLLM_GUIDED = ["guided_json", "guided_regex", "guided_choice", "guided_grammar"] as const;

/** The accepted top-level fields of one route's JSON body. */
export class KnownFields {
  /** The route, as named in error messages. */
  readonly route: string;
  /** Fields of the API's own reference for the route (OpenAI's, or Anthropic's for /v1/messages). */
  readonly openai: readonly string[];
  /** Documented extensions (vLLM, llama.cpp) implemented here. */
  readonly extensions: readonly string[];
  readonly #all: ReadonlySet<string>;

  constructor(route: string, fields: { openai: readonly string[]; extensions?: readonly string[] }) {
    this.route = route;
    this.openai = fields.openai;
    this.extensions = fields.extensions ?? [];
    this.#all = new Set([...this.openai, ...this.extensions]);
  }

  /** Whether `name` is accepted. */
  has(name: string): boolean {
    return this.#all.has(name);
  }

  /**
   * Throws a 400 (`unknown_parameter`, param: the first unknown field) when a JSON object body
   * holds a field this route does not know. Bodies that are no object are left to the parser.
   */
  check(body: unknown): void {
    if (typeof body !== "object" || body === null || Array.isArray(body)) return;
    const unknown = Object.keys(body).filter((k) => !this.#all.has(k));
    if (unknown.length === 0) return;
    const named = unknown.map((k) => {
      const near = this.#nearest(k);
      return near ? `${k} (did you mean ${near}?)` : k;
    });
    throw badParam(
      unknown[0],
      `Unrecognized request argument${unknown.length > 1 ? "s" : ""} supplied to ${this.route}: ${named.join(", ")}`,
      "unknown_parameter",
    );
  }

  /** The accepted field closest to `name` (a typo's likely meaning), if any is close. */
  #nearest(name: string): string | null {
    let best: string | null = null;
    let bestDistance = Math.min(3, Math.ceil(name.length / 3));
    for (const known of this.#all) {
      const d = editDistance(name.toLowerCase(), known);
      if (d < bestDistance) [best, bestDistance] = [known, d];
    }
    return best;
  }
}

/** Levenshtein distance (field names are short). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/** `/v1/completions` (legacy completions). */
export const COMPLETION_FIELDS: KnownFields = new KnownFields("/v1/completions", {
  openai: [...OPENAI_SAMPLING, "prompt", "best_of", "echo", "suffix"],
  extensions: [...VLLM_SAMPLING, ...VLLM_GUIDED, "response_format"],
});

/** `/v1/chat/completions`. */
export const CHAT_FIELDS: KnownFields = new KnownFields("/v1/chat/completions", {
  openai: [
    ...OPENAI_SAMPLING,
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    // Accepted and ignored: they mean nothing to a local server.
    "audio",
    "function_call",
    "functions",
    "metadata",
    "modalities",
    "prediction",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "store",
    "verbosity",
    "web_search_options",
  ],
  extensions: [...VLLM_SAMPLING, ...VLLM_GUIDED, "chat_template_kwargs"],
});

/** `/v1/embeddings`. */
export const EMBEDDINGS_FIELDS: KnownFields = new KnownFields("/v1/embeddings", {
  openai: ["model", "input", "encoding_format", "dimensions", "user"],
});

/** `/v1/responses` (OpenAI's Responses API). */
export const RESPONSES_FIELDS: KnownFields = new KnownFields("/v1/responses", {
  openai: [
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "stream",
    "store",
    "previous_response_id",
    // Accepted and ignored (or refused by the parser where they ask for what is not kept).
    "background",
    "conversation",
    "include",
    "max_tool_calls",
    "metadata",
    "prompt",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
    "stream_options",
    "top_logprobs",
    "truncation",
    "user",
  ],
});

/** `/v1/messages` and `/v1/messages/count_tokens` (Anthropic's Messages API). */
export const MESSAGES_FIELDS: KnownFields = new KnownFields("/v1/messages", {
  openai: [
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    // Accepted and ignored.
    "metadata",
    "service_tier",
    "container",
    "context_management",
    "mcp_servers",
  ],
});
