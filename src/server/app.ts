/**
 * The HTTP application: routes, authentication, body limits, backpressure and error
 * mapping around the engine. It answers from the moment the server listens: 503 while the
 * model loads, and again once it drains for shutdown or the engine has failed.
 * @module
 */
import { InvalidRequestError, LlmError } from "../../mod.ts";
import { ApiError, badParam } from "./api_error.ts";
import { ChatTemplate, ChatTemplateError } from "./chat_template.ts";
import { dashboardHtml } from "./dashboard.ts";
import { completeJson, completeStream, type PreparedRequest, type PromptJob } from "./openai/render.ts";
import { type ChatRequest, type CompletionRequest, PARAM_NAMES, parseChatRequest, parseCompletionRequest } from "./openai/parse.ts";
import { CHAT_FIELDS, COMPLETION_FIELDS, EMBEDDINGS_FIELDS, type KnownFields, MESSAGES_FIELDS } from "./openai/fields.ts";
import { embeddingResponse, parseEmbeddingRequest } from "./openai/embeddings.ts";
import { embedInputs, isSingleInput } from "../api/embed_request.ts";
import { renderMetrics, ServerCounters } from "./prometheus.ts";
import type { ServedEngine } from "./served_engine.ts";
import type { PromptTokenizer } from "./prompt_tokenizer.ts";
import { renderVllmMetrics } from "./vllm_metrics.ts";
import { detectReasoningParser } from "../api/reasoning.ts";
import type { ChatApi } from "./chat_api.ts";
import { RESPONSES_API } from "./responses/render.ts";
import { anthropicError, MESSAGES_API } from "./anthropic/render.ts";
import { parseMessagesRequest } from "./anthropic/parse.ts";
import { detokenize, tokenize } from "./tokenize.ts";
import { type ListenerStats, renderListenerMetrics } from "./listener_metrics.ts";

/** Options of {@link App}. */
export interface AppOptions {
  /** The model name clients send and see. */
  modelName: string;
  /** Other names accepted in `model` (e.g. the checkpoint path). */
  modelAliases?: string[];
  /** Health turns 503 when the engine has work but has not reported for this long (default 60 s). */
  stallMs?: number;
  /** Bearer key required on /v1 when set. */
  apiKey?: string;
  /** Reasoning parser of chat answers: a name, "none", or absent (the chat template's). */
  reasoningParser?: string;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** Sequences allowed to wait beyond the running batch before 429. */
  maxQueue: number;
  /** Sequences one request may ask for (prompts x n; default: the engine's max-seqs). */
  maxRequestSeqs?: number;
  /** Ignore request fields a route does not know instead of answering 400 (default false). */
  lenientFields?: boolean;
}

/** Route label of paths under /v1/models/ (metrics labels are route templates, never raw paths). */
const MODEL_ROUTE = "/v1/models/{model}";

/** Status counted for a request whose client went away before its answer (nginx's 499). */
const CLIENT_GONE = 499;

/** Where the server is in its life. */
export type AppState = "loading" | "ready" | "draining" | "failed";

type Handler = (req: Request) => Promise<Response> | Response;

const JSON_HEADERS = { "content-type": "application/json" };

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

/** Constant-time string comparison (the API key). */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** The HTTP application. */
export class App {
  readonly options: AppOptions;
  readonly counters: ServerCounters = new ServerCounters();
  /** What the HTTP listener refused or cut off, for /metrics (set by the server that owns it). */
  listenerCounters: (() => ListenerStats) | null = null;
  #state: AppState = "loading";
  #engine: ServedEngine | null = null;
  #chat: ChatTemplate | null = null;
  #chatError: string | null = null;
  #tokenizer: PromptTokenizer | null = null;
  #reasoningParser: string | null = null;
  /** New generation requests are accepted (false once drain() was called). */
  #admitting = false;
  #loadError: string | null = null;
  /** Sequences of requests being served (prompts x n). */
  #activeSeqs = 0;
  #activeRequests = 0;
  #idle: (() => void)[] = [];
  #routes: Map<string, Map<string, Handler>>;
  #nextId = 0;

  constructor(options: AppOptions) {
    this.options = options;
    this.#routes = new Map<string, Map<string, Handler>>([
      ["/", new Map<string, Handler>([["GET", () => this.#dashboard()]])],
      ["/dashboard/stats", new Map<string, Handler>([["GET", () => this.#statsJson()]])],
      ["/health", new Map<string, Handler>([["GET", () => this.#health()]])],
      ["/metrics", new Map<string, Handler>([["GET", () => this.#metrics()]])],
      ["/v1/models", new Map<string, Handler>([["GET", () => this.#models()]])],
      ["/v1/completions", new Map<string, Handler>([["POST", (r: Request) => this.#generate(r, "completion")]])],
      ["/v1/chat/completions", new Map<string, Handler>([["POST", (r: Request) => this.#generate(r, "chat")]])],
      ["/v1/responses", new Map<string, Handler>([["POST", (r: Request) => this.#generateApi(r, RESPONSES_API)]])],
      ["/v1/messages", new Map<string, Handler>([["POST", (r: Request) => this.#generateApi(r, MESSAGES_API)]])],
      ["/v1/messages/count_tokens", new Map<string, Handler>([["POST", (r: Request) => this.#countMessageTokens(r)]])],
      ["/tokenize", new Map<string, Handler>([["POST", (r: Request) => this.#tokenize(r, "tokenize")]])],
      ["/detokenize", new Map<string, Handler>([["POST", (r: Request) => this.#tokenize(r, "detokenize")]])],
      ["/v1/embeddings", new Map<string, Handler>([["POST", (r: Request) => this.#embeddings(r)]])],
    ]);
  }

  get state(): AppState {
    return this.#state;
  }

  /** Requests being served now. */
  get activeRequests(): number {
    return this.#activeRequests;
  }

  /**
   * The engine is loaded: start serving. `tokenizer` tokenizes prompts off this thread (without
   * one, prompts are tokenized by the engine client on this thread).
   */
  setEngine(engine: ServedEngine, tokenizer?: PromptTokenizer): void {
    this.#engine = engine;
    this.#tokenizer = tokenizer ?? null;
    const parser = this.options.reasoningParser;
    this.#reasoningParser = parser === undefined ? detectReasoningParser(engine.tokenizer, engine.info.architecture) : parser === "none" ? null : parser;
    try {
      this.#chat = ChatTemplate.of(engine.tokenizer);
    } catch (e) {
      // Completions can still be served; chat requests are told why they cannot.
      if (!(e instanceof ChatTemplateError)) throw e;
      this.#chatError = e.message;
    }
    this.#state = "ready";
    this.#admitting = true;
  }

  /** Why chat requests are refused (the model's chat template does not parse), or null. */
  get chatTemplateError(): string | null {
    return this.#chatError;
  }

  /**
   * Announces a shutdown: /health answers 503 so load balancers stop sending, while requests
   * are still admitted until {@link drain}.
   */
  announceDrain(): void {
    if (this.#state === "ready") this.#state = "draining";
  }

  /** Loading failed; /health says why. */
  setLoadError(message: string): void {
    this.#loadError = message;
    this.#state = "failed";
  }

  /** Stops admitting requests; resolves when those in flight have ended. */
  drain(): Promise<void> {
    if (this.#state === "ready") this.#state = "draining";
    this.#admitting = false;
    if (this.#activeRequests === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Handles one HTTP request. */
  async handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    const model = path.startsWith("/v1/models/");
    const methods = this.#routes.get(path) ?? (model ? new Map<string, Handler>([["GET", () => this.#model(path)]]) : undefined);
    const route = !methods ? "other" : model ? MODEL_ROUTE : path;
    let res: Response;
    try {
      // The key first: without it, no answer tells which /v1 routes or methods exist.
      if (path === "/v1" || path.startsWith("/v1/") || path === "/tokenize" || path === "/detokenize") this.#authorize(req);
      if (!methods) throw new ApiError(404, `no route ${req.method} ${path}`, { code: "not_found", type: "not_found_error" });
      const handler = methods.get(req.method) ?? (req.method === "HEAD" ? methods.get("GET") : undefined);
      if (!handler) {
        throw new ApiError(405, `method ${req.method} not allowed on ${path}`, {
          code: "method_not_allowed",
          headers: { allow: [...methods.keys()].join(", ") },
        });
      }
      res = await handler(req);
      if (req.method === "HEAD") res = new Response(null, { status: res.status, headers: res.headers });
    } catch (e) {
      // A client that went away (mid-upload, or while waiting) is no server error.
      res = req.signal.aborted || isBodyError(e, "client_gone")
        ? new ApiError(CLIENT_GONE, "the client closed the connection", { code: "client_gone" }).toResponse()
        : this.#errorResponse(e);
      // The Messages API answers errors in Anthropic's shape.
      if (route.startsWith("/v1/messages") && res.status >= 400) res = anthropicError(await apiErrorOf(res));
    }
    this.counters.count(route, res.status);
    return res;
  }

  #authorize(req: Request): void {
    const key = this.options.apiKey;
    if (!key) return;
    const auth = req.headers.get("authorization") ?? "";
    // Anthropic's clients send the key as x-api-key.
    const m = /^Bearer\s+(.+)$/i.exec(auth) ?? (req.headers.has("x-api-key") ? [auth, req.headers.get("x-api-key")!] : null);
    if (!m || !sameSecret(m[1].trim(), key)) {
      throw new ApiError(401, m ? "invalid API key" : "missing API key: send Authorization: Bearer KEY (or x-api-key: KEY)", {
        type: "authentication_error",
        code: "invalid_api_key",
        headers: { "www-authenticate": "Bearer" },
      });
    }
  }

  #errorResponse(e: unknown): Response {
    if (e instanceof ApiError) return e.toResponse();
    if (isBodyError(e, "body_timeout")) return new ApiError(408, (e as Error).message, { code: "body_timeout" }).toResponse();
    if (isBodyError(e, "malformed_body")) return badParam("body", (e as Error).message, "malformed_body").toResponse();
    if (e instanceof InvalidRequestError) return requestError(e).toResponse();
    if (e instanceof ChatTemplateError) return badParam("messages", e.message).toResponse();
    if (e instanceof LlmError) {
      const unavailable = e.code === "engine_failed" || e.code === "engine_closed";
      return new ApiError(unavailable ? 503 : 500, e.message, { param: e.param ?? null, code: e.code }).toResponse();
    }
    console.error("unexpected error:", e);
    return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`).toResponse();
  }

  #dashboard(): Response {
    return new Response(dashboardHtml(this.options.modelName), { headers: { "content-type": "text/html; charset=utf-8" } });
  }

  #ready(): ServedEngine {
    if (this.#state === "loading") throw new ApiError(503, "the model is loading", { code: "loading", headers: { "retry-after": "5" } });
    if (this.#state === "failed") throw new ApiError(503, `the model failed to load: ${this.#loadError}`, { code: "load_failed" });
    const engine = this.#engine!;
    const error = engine.stats().error;
    if (error) throw new ApiError(503, `the engine has stopped: ${error}`, { code: "engine_failed" });
    return engine;
  }

  #statsJson(): Response {
    const engine = this.#ready();
    return json({ ...engine.stats(), routes: this.counters.byRoute() }, 200, { "cache-control": "no-store" });
  }

  #health(): Response {
    if (this.#state !== "ready") {
      const status = this.#state === "loading" ? "loading" : this.#state === "draining" ? "shutting down" : "failed";
      return json({ status, error: this.#loadError }, 503);
    }
    const engine = this.#engine!;
    const stats = engine.stats();
    if (stats.error) return json({ status: "failed", error: stats.error }, 503);
    const stallMs = this.options.stallMs ?? 60_000;
    if (stats.running + stats.waiting > 0 && engine.statsAgeMs > stallMs) {
      const seconds = Math.round(engine.statsAgeMs / 1000);
      return json({ status: "stalled", error: `the engine has not stepped for ${seconds} s with requests in flight` }, 503);
    }
    return json({ status: "ok" });
  }

  #metrics(): Response {
    const engine = this.#ready();
    const stats = engine.stats();
    const listener = this.listenerCounters?.();
    const text = renderMetrics(stats, this.counters, this.options.modelName) +
      (listener ? renderListenerMetrics(listener) : "") +
      renderVllmMetrics(stats, engine.info, this.options.modelName);
    return new Response(text, {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }

  #modelCard() {
    const engine = this.#engine;
    return {
      id: this.options.modelName,
      object: "model",
      created: 0,
      owned_by: "webgpu-llm",
      max_model_len: engine?.info.maxContext ?? null,
    };
  }

  #models(): Response {
    return json({ object: "list", data: [this.#modelCard()] });
  }

  #model(path: string): Response {
    let id: string;
    try {
      id = decodeURIComponent(path.slice("/v1/models/".length));
    } catch {
      throw new ApiError(400, "the path is not valid percent-encoded UTF-8", { code: "invalid_path" });
    }
    if (!this.#knownModel(id)) throw new ApiError(404, `model ${id} does not exist`, { param: "model", code: "model_not_found" });
    return json(this.#modelCard());
  }

  /** 404 unless `name` (a body's `model`, null when absent) is the served model. */
  #checkModel(name: string | null): void {
    if (name !== null && !this.#knownModel(name)) {
      throw new ApiError(404, `model ${name} does not exist; this server serves ${this.options.modelName}`, {
        param: "model",
        code: "model_not_found",
      });
    }
  }

  #knownModel(name: string): boolean {
    return name === this.options.modelName || (this.options.modelAliases ?? []).includes(name);
  }

  async #readJson(req: Request): Promise<unknown> {
    const max = this.options.maxBodyBytes;
    const declared = Number(req.headers.get("content-length") ?? NaN);
    const tooLarge = () => new ApiError(413, `request body larger than ${max} bytes`, { code: "body_too_large" });
    if (Number.isFinite(declared) && declared > max) {
      await req.body?.cancel();
      throw tooLarge();
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    if (req.body) {
      const reader = req.body.getReader();
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        size += chunk.length;
        if (size > max) {
          await reader.cancel();
          throw tooLarge();
        }
        chunks.push(chunk);
      }
    }
    const bytes = new Uint8Array(size);
    let off = 0;
    for (const c of chunks) {
      bytes.set(c, off);
      off += c.length;
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw badParam("body", "the request body is not valid UTF-8", "invalid_encoding");
    }
    if (!text.trim()) throw badParam("body", "the request body is empty; send a JSON object");
    try {
      return JSON.parse(text);
    } catch (e) {
      throw badParam("body", `the request body is not valid JSON: ${(e as Error).message}`, "invalid_json");
    }
  }

  /** Refuses a body with a field the route does not know (400), unless fields are lenient. */
  #checkFields(body: unknown, fields: KnownFields): void {
    if (!this.options.lenientFields) fields.check(body);
  }

  async #prepare(request: CompletionRequest | ChatRequest, engine: ServedEngine): Promise<PreparedRequest> {
    this.#checkModel(request.model);
    const n = request.options.n ?? 1;
    this.#checkSeqs(request.kind === "completion" ? request.prompts.length * n : n, engine);
    if (request.kind === "completion") {
      const prompts = await Promise.all(request.prompts.map((prompt) => this.#encode(prompt, true, "prompt", engine)));
      const jobs: PromptJob[] = prompts.map((prompt, p) => ({ prompt, options: request.options, firstChoice: p * n }));
      return { request, jobs, choices: jobs.length * n };
    }
    if (this.#chatError) throw badParam("messages", this.#chatError, "chat_template_error");
    if (!this.#chat) {
      throw badParam("messages", `model ${this.options.modelName} has no chat template; use /v1/completions`, "no_chat_template");
    }
    // Tools reach the template as transformers' apply_chat_template(tools=...) passes them
    // (whatever the tool choice, as vLLM does).
    const text = this.#chat.render(request.messages, true, {
      ...(request.tools ? { tools: request.tools } : {}),
      ...(request.templateKwargs ? { kwargs: request.templateKwargs } : {}),
    });
    const ids = await this.#encode(text, false, "messages", engine) as number[];
    const options = this.#reasoningParser ? { ...request.options, reasoningParser: this.#reasoningParser } : request.options;
    return { request, jobs: [{ prompt: ids, options, firstChoice: 0 }], choices: n };
  }

  /** Refuses a request that alone asks for more sequences than one request may (400). */
  #checkSeqs(seqs: number, engine: ServedEngine): void {
    const limit = engine.info.maxSeqs + this.options.maxQueue;
    const max = Math.min(this.options.maxRequestSeqs ?? engine.info.maxSeqs, limit);
    if (seqs > max) {
      throw badParam("n", `the request asks for ${seqs} sequences (prompts x n); one request may ask for at most ${max}`, "too_many_sequences");
    }
  }

  /**
   * A prompt's token ids. Text longer in bytes than any context could hold is refused
   * before tokenizing; the rest is tokenized off this thread when a tokenizer Worker is set.
   */
  async #encode(prompt: string | number[], special: boolean, param: string, engine: ServedEngine): Promise<string | number[]> {
    if (typeof prompt !== "string") return prompt;
    const tok = this.#tokenizer;
    if (tok) {
      const maxBytes = tok.maxBytesFor(engine.info.maxContext);
      // UTF-16 length is at most the UTF-8 length: only long strings need counting.
      const bytes = prompt.length > maxBytes / 3 ? new TextEncoder().encode(prompt).length : 0;
      if (bytes > maxBytes) {
        throw badParam(param, `the prompt is ${bytes} bytes; a context of ${engine.info.maxContext} tokens holds at most ${maxBytes} bytes of text`, "context_length_exceeded");
      }
      return await tok.encode(prompt, special);
    }
    return special ? prompt : engine.tokenizer.encode(prompt, { addSpecialTokens: false });
  }

  async #generate(req: Request, kind: "completion" | "chat"): Promise<Response> {
    const engine = this.#ready();
    if (!this.#admitting) throw new ApiError(503, "the server is shutting down", { code: "shutting_down" });
    const body = await this.#readJson(req);
    this.#checkFields(body, kind === "completion" ? COMPLETION_FIELDS : CHAT_FIELDS);
    const request = kind === "completion" ? parseCompletionRequest(body) : parseChatRequest(body);
    try {
      return await this.#run(req, request, engine);
    } catch (e) {
      // The engine names its options; answer with the body's names (e.g. guided_json).
      if (e instanceof InvalidRequestError) throw requestError(e, request.paramNames);
      throw e;
    }
  }

  /** A request of a chat-like API (Responses, Messages): parsed to a chat request, answered its way. */
  async #generateApi(req: Request, api: ChatApi): Promise<Response> {
    const engine = this.#ready();
    if (!this.#admitting) throw new ApiError(503, "the server is shutting down", { code: "shutting_down" });
    const body = await this.#readJson(req);
    this.#checkFields(body, api.fields);
    const request = api.parse(body);
    try {
      return await this.#run(req, request, engine, api);
    } catch (e) {
      if (e instanceof InvalidRequestError) throw requestError(e, request.paramNames);
      throw e;
    }
  }

  /** POST /v1/messages/count_tokens: the prompt tokens a Messages body would take. */
  async #countMessageTokens(req: Request): Promise<Response> {
    const engine = this.#ready();
    const body = await this.#readJson(req);
    this.#checkFields(body, MESSAGES_FIELDS);
    // The same body as /v1/messages, less max_tokens (counting generates nothing).
    const request = parseMessagesRequest(isObject(body) ? { ...body, max_tokens: 1, stream: false } : body);
    const prep = await this.#prepare(request, engine);
    return json({ input_tokens: prep.jobs[0].prompt.length });
  }

  /** POST /tokenize and /detokenize (vLLM's shapes). */
  async #tokenize(req: Request, op: "tokenize" | "detokenize"): Promise<Response> {
    const engine = this.#ready();
    const body = await this.#readJson(req);
    if (op === "detokenize") return json(detokenize(body, engine));
    return json(tokenize(body, engine, {
      chat: () => {
        if (this.#chatError) throw badParam("messages", this.#chatError, "chat_template_error");
        if (!this.#chat) throw badParam("messages", `model ${this.options.modelName} has no chat template`, "no_chat_template");
        return this.#chat;
      },
      checkModel: (model) => this.#checkModel(model),
    }));
  }

  async #run(req: Request, request: CompletionRequest | ChatRequest, engine: ServedEngine, api?: ChatApi): Promise<Response> {
    const kind = request.kind;
    const prep = await this.#prepare(request, engine);
    if (req.signal.aborted) throw new ApiError(CLIENT_GONE, "the client closed the connection", { code: "client_gone" });
    const seqs = prep.choices;
    this.#checkQueue(seqs, engine);
    const meta = {
      id: `${api ? api.idPrefix : kind === "chat" ? "chatcmpl-" : "cmpl-"}${Date.now().toString(36)}${(this.#nextId++).toString(36)}`,
      created: Math.floor(Date.now() / 1000),
      model: this.options.modelName,
    };
    this.#begin(seqs);
    const abort = new AbortController();
    const onClientGone = () => abort.abort();
    req.signal.addEventListener("abort", onClientGone);
    let ended = false;
    const end = (clientGone: boolean) => {
      if (ended) return;
      ended = true;
      req.signal.removeEventListener("abort", onClientGone);
      if (clientGone) this.counters.clientDisconnects++;
      this.#end(seqs);
    };
    try {
      if (api) {
        const run = { engine, prep, meta, abort, onEnd: end };
        if (request.stream) return new Response(await api.stream(run), { headers: SSE_HEADERS });
        const body = await api.json(run);
        end(req.signal.aborted);
        return json(body);
      }
      if (request.stream) {
        const stream = await completeStream(engine, prep, meta, abort, end);
        return new Response(stream, { headers: SSE_HEADERS });
      }
      const body = await completeJson(engine, prep, meta, abort.signal);
      end(req.signal.aborted);
      return json(body);
    } catch (e) {
      end(req.signal.aborted);
      throw e;
    }
  }

  /** `POST /v1/embeddings`: one prefill-only sequence per input, in the generation batch. */
  async #embeddings(req: Request): Promise<Response> {
    const engine = this.#ready();
    if (!this.#admitting) throw new ApiError(503, "the server is shutting down", { code: "shutting_down" });
    const body = await this.#readJson(req);
    this.#checkFields(body, EMBEDDINGS_FIELDS);
    const request = parseEmbeddingRequest(body);
    this.#checkModel(request.model);
    const inputs = embedInputs(request.input);
    this.#checkSeqs(inputs.length, engine);
    this.#checkQueue(inputs.length, engine);
    this.#begin(inputs.length);
    try {
      // Text is tokenized off this thread; the engine appends the end-of-text token to ids too.
      const ids = await Promise.all(inputs.map((x) => typeof x === "string" && x !== "" ? this.#encode(x, true, "input", engine) : x));
      // One input stays one input (its errors name `input`, not `input[0]`).
      const input = isSingleInput(request.input) ? ids[0] as string | number[] : ids as (string | number[])[];
      const result = await engine.embed({ input, dimensions: request.dimensions, signal: req.signal });
      return json(embeddingResponse(result, request.encodingFormat, this.options.modelName));
    } finally {
      this.#end(inputs.length);
    }
  }

  /** 429 when `seqs` more sequences would overfill the running batch and the queue. */
  #checkQueue(seqs: number, engine: ServedEngine): void {
    const limit = engine.info.maxSeqs + this.options.maxQueue;
    if (this.#activeSeqs + seqs > limit) {
      this.counters.rejectedQueueFull++;
      throw new ApiError(429, `the server is busy (${this.#activeSeqs} sequences in flight, limit ${limit}); retry later`, {
        type: "rate_limit_error",
        code: "queue_full",
        headers: { "retry-after": "1" },
      });
    }
  }

  #begin(seqs: number): void {
    this.#activeSeqs += seqs;
    this.#activeRequests++;
  }

  #end(seqs: number): void {
    this.#activeSeqs -= seqs;
    this.#activeRequests--;
    if (this.#activeRequests === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }
}

/** Headers of a server-sent event stream (no proxy buffering). */
const SSE_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" };

/** The error an OpenAI-shaped error response carries (to answer it in another API's shape). */
async function apiErrorOf(res: Response): Promise<ApiError> {
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k !== "content-type" && k !== "content-length") headers[k] = v;
  });
  let message = res.statusText;
  try {
    message = (await res.json())?.error?.message ?? message;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(res.status, message, { headers });
}

/** A request error as a 400 naming the body's parameter (`names`: the request's own names first). */
function requestError(e: InvalidRequestError, names: Record<string, string> = {}): ApiError {
  const param = names[e.param] ?? PARAM_NAMES[e.param] ?? e.param;
  const code = e.code === "invalid_request" ? null : e.code;
  return badParam(param, `${param} ${e.detail}`, code);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether `e` is the HTTP layer's RequestBodyError of this code (checked by code: Request may wrap). */
function isBodyError(e: unknown, code: "client_gone" | "body_timeout" | "malformed_body"): boolean {
  return (e as { name?: string; code?: string } | null)?.name === "RequestBodyError" && (e as { code?: string }).code === code;
}
