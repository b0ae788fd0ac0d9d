/**
 * The request side of the engine, on the caller's thread: starts the engine Worker, and runs
 * each request as an actor with its own MessageChannel. The actor tokenizes the prompt,
 * detokenizes incrementally, applies stop strings and turns an AbortSignal into a cancel.
 * Embedding requests go the same way ({@link EngineClient.embed}).
 * @module
 */
import { stopWorker } from "../runtime/runtime.ts";
import { checkSpeculativeConfig } from "../engine/speculative_config.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import { GrammarError } from "../grammar/errors.ts";
import { loadModelVocabulary, modelToolFormat } from "../grammar/model_vocabulary.ts";
import { type CheckedSpec, SpecChecker, type SpecCheckOptions, type SpecCheckStats } from "../grammar/spec_check.ts";
import { ToolCallStreamParser } from "../grammar/tool_calls.ts";
import { FORMAT_SYNTAX } from "../grammar/tool_format.ts";
import { type Decoder, IncrementalDetokenizer, StopStringMatcher } from "./detokenizer.ts";
import type { FromWorker, ToRequest, ToWorker } from "./protocol.ts";
import {
  type Completion,
  type EmbedOptions,
  type EmbedResult,
  type EngineInfo,
  EngineError,
  type EngineOptions,
  type EngineStats,
  errorFromWire,
  type FinishReason,
  type GenerateDelta,
  type GenerateOptions,
  type GenerateResult,
  type GrammarSpec,
  InvalidRequestError,
  type OutputFinishReason,
  type TokenLogprob,
  type ToolCall,
  type ToolCallDelta,
  type ToolCallFormat,
  type Usage,
} from "../types/api.ts";
import { detectReasoningParser, reasoningFormatOf, reasoningStart } from "./reasoning.ts";
import { type CompletionParser, HarmonyOutputParser, OutputParser } from "./output_parser.ts";
import { grammarParam, grammarRequestError, parsesToolCalls, stopStrings, validateRequest } from "./validate.ts";
import { finishEmbedding, validateEmbedRequest } from "./embed_request.ts";
import { type BatchItemError, batchItemError, type BatchOptions, BatchProgressTracker, ordered } from "./batch.ts";

/** Options of `createEngine`. */
export interface CreateEngineOptions extends EngineOptions {
  /** Called with the engine's stats whenever they change (about every 50 ms under load). */
  onStats?: (stats: EngineStats) => void;
  /** Weight upload progress while the model loads (bytes or tensors done, of total). */
  onLoadProgress?: (done: number, total: number) => void;
  /**
   * How output constraints are compiled before the engine sees them: the deadline
   * (`compileTimeoutMs`, default 10 000), the fast lane's budget (`fastLaneMs`, default 500)
   * and the caches' size (`cacheSize`, default 64). See docs/grammar_compile.md.
   */
  grammar?: GrammarCheckOptions;
}

/** The grammar check's options a client may set (see {@link SpecCheckOptions}). */
export type GrammarCheckOptions = Pick<SpecCheckOptions, "compileTimeoutMs" | "fastLaneMs" | "cacheSize">;

interface CompletionState {
  detok: IncrementalDetokenizer;
  stop: StopStringMatcher;
  /** Reasoning and tool calls out of the text (requests with a reasoning parser or tools). */
  output: CompletionParser;
  ids: number[];
  text: string;
  logprobs: TokenLogprob[];
  finishReason: FinishReason | null;
}

/** Folds tool-call deltas into calls (what a client rebuilds from a stream). */
function foldCalls(calls: ToolCall[], deltas: readonly ToolCallDelta[]): void {
  for (const d of deltas) {
    const call = (calls[d.index] ??= { id: "", name: "", arguments: "" });
    if (d.id) call.id = d.id;
    if (d.function.name) call.name += d.function.name;
    if (d.function.arguments) call.arguments += d.function.arguments;
  }
}

/** A running engine, seen from the caller's thread. */
export class EngineClient {
  readonly info: EngineInfo;
  readonly tokenizer: Tokenizer;
  /**
   * The model's tool-call format (from its chat template and architecture), or null when it
   * has none this engine knows; requests with tool calls need one.
   */
  readonly toolCallFormat: ToolCallFormat | null;
  /** The reasoning parser the model's chat template calls for (e.g. "think"), or null. */
  readonly reasoningParser: string | null;
  #model: string;
  /** Checks output constraints before the engine sees them (made on first use). */
  #checker: Promise<SpecChecker> | null = null;
  #grammarOptions: GrammarCheckOptions;
  /** Special tokens a constrained or tool-calling output keeps as text (tool-call markers). */
  #markerIds: Set<number>;
  #worker: Worker;
  #stats: EngineStats | null = null;
  #statsAt = performance.now();
  #onStats?: (stats: EngineStats) => void;
  #closed: Promise<void> | null = null;
  #closedResolve: (() => void) | null = null;
  /** Open requests, each with how to fail it if the engine Worker dies. */
  #open = new Map<MessagePort, (error: Error) => void>();
  #dead: Error | null = null;

  private constructor(
    worker: Worker,
    info: EngineInfo,
    tokenizer: Tokenizer,
    model: string,
    onStats: ((s: EngineStats) => void) | undefined,
    grammarOptions: GrammarCheckOptions,
  ) {
    this.#worker = worker;
    this.#grammarOptions = grammarOptions;
    this.info = info;
    this.tokenizer = tokenizer;
    this.#model = model;
    this.#onStats = onStats;
    this.toolCallFormat = modelToolFormat(tokenizer, info.architecture);
    this.reasoningParser = detectReasoningParser(tokenizer, info.architecture);
    const markers = this.toolCallFormat ? FORMAT_SYNTAX[this.toolCallFormat].literalTokens : [];
    this.#markerIds = new Set(
      markers.map((p) => tokenizer.pieceToToken(p)).filter((id): id is number => id !== undefined && tokenizer.isSpecial(id)),
    );
  }

  /**
   * Starts the engine Worker and loads the model in it. A model that cannot be loaded
   * rejects with the loader's error (its `code` says why, e.g. `checkpoint_invalid`).
   */
  static async create(options: CreateEngineOptions): Promise<EngineClient> {
    const { onStats, onLoadProgress, grammar, ...engineOptions } = options;
    // A bad setting is the caller's error (naming the field), not a failed engine start.
    if (engineOptions.speculative) engineOptions.speculative = checkSpeculativeConfig(engineOptions.speculative);
    const tokenizer = await Tokenizer.load(options.model);
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    const first = await new Promise<FromWorker>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<FromWorker>) => {
        if (e.data.type === "ready" || e.data.type === "init_error") resolve(e.data);
        else if (e.data.type === "load_progress") onLoadProgress?.(e.data.done, e.data.total);
      };
      worker.onerror = (e) => {
        e.preventDefault();
        reject(new EngineError("engine_start_failed", `engine worker failed to start: ${e.message}`));
      };
      worker.postMessage({ type: "init", options: engineOptions } satisfies ToWorker);
    }).catch((e) => {
      stopWorker(worker);
      throw e;
    });
    if (first.type === "init_error") {
      worker.postMessage({ type: "close" } satisfies ToWorker);
      stopWorker(worker);
      throw errorFromWire(first.error);
    }
    if (first.type !== "ready") throw new EngineError("engine_start_failed", "unexpected first message from the engine");
    const client = new EngineClient(worker, first.info, tokenizer, options.model, onStats, grammar ?? {});
    client.#stats = first.stats;
    worker.onmessage = (e: MessageEvent<FromWorker>) => client.#onMessage(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      client.#workerDied(new EngineError("engine_failed", `engine worker died: ${e.message}`));
    };
    return client;
  }

  /** The latest metrics the engine reported. */
  stats(): EngineStats {
    return this.#stats!;
  }

  /** Counters of the grammar check (failure cache, compile lanes); null before the first constrained request. */
  async grammarStats(): Promise<SpecCheckStats | null> {
    return this.#checker ? (await this.#checker).stats : null;
  }

  /**
   * Milliseconds since the engine last reported. It reports at least once per readback while
   * it has work, so a large age with requests running means the step loop is stuck.
   */
  get statsAgeMs(): number {
    return performance.now() - this.#statsAt;
  }

  /** Generates to completion. */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    let usage: Usage | undefined;
    let warnings: string[] | undefined;
    const states = new Map<number, Completion>();
    for await (const d of this.stream(options)) {
      let c = states.get(d.index);
      if (!c) states.set(d.index, c = { index: d.index, ids: [], text: "", finishReason: "length" });
      c.ids.push(...d.ids);
      c.text += d.text;
      if (options.reasoningParser) c.reasoning = (c.reasoning ?? "") + (d.reasoning ?? "");
      if (d.logprobs) (c.logprobs ??= []).push(...d.logprobs);
      if (d.toolCalls) foldCalls(c.toolCalls ??= [], d.toolCalls);
      if (d.finishReason) c.finishReason = d.finishReason;
      if (d.usage) usage = d.usage;
      if (d.warnings) warnings = d.warnings;
    }
    const choices = [...states.values()].sort((a, b) => a.index - b.index);
    const promptIds = this.#promptIds(options.prompt);
    return { ...choices[0], usage: usage!, promptIds, choices, ...(warnings ? { warnings } : {}) };
  }

  /**
   * Generates for many requests, keeping the engine's batch full without queueing them all
   * at once (at most `concurrency` in flight; requests are pulled from the iterable as room
   * frees up). Results come in input order, each what `generate` returns or, for a request
   * that failed, a {@link BatchItemError} in its place: one bad request never sinks the
   * batch. `signal` cancels: in-flight requests leave at the next step, nothing more starts,
   * and the promise rejects with the signal's reason once the engine has let them go.
   */
  async generateBatch(
    requests: Iterable<GenerateOptions> | AsyncIterable<GenerateOptions>,
    options: BatchOptions = {},
  ): Promise<(GenerateResult | BatchItemError)[]> {
    const total = Array.isArray(requests) ? requests.length : null;
    const tracker = new BatchProgressTracker(total, options.onProgress);
    const batchSignal = options.signal;
    const run = async (request: GenerateOptions): Promise<GenerateResult | BatchItemError> => {
      const signal = batchSignal && request.signal ? AbortSignal.any([batchSignal, request.signal]) : batchSignal ?? request.signal;
      try {
        const r = await this.generate({ ...request, signal });
        tracker.finished(r.usage.completionTokens, false);
        return r;
      } catch (e) {
        tracker.finished(0, true);
        return batchItemError(e);
      }
    };
    const out: (GenerateResult | BatchItemError)[] = [];
    for await (const r of ordered(requests, options.concurrency ?? 2 * this.info.maxSeqs, run, batchSignal)) out.push(r);
    return out;
  }

  /**
   * Streams text deltas as tokens arrive. Options are validated at once (throws
   * {@link InvalidRequestError}); an output constraint is then compiled in a probe Worker
   * before the engine sees it, and one that cannot be enforced ends the stream with an
   * {@link InvalidRequestError} of code `invalid_grammar` before any delta.
   */
  stream(options: GenerateOptions): AsyncIterable<GenerateDelta> {
    const promptIds = this.#promptIds(options.prompt);
    const request = validateRequest(options, promptIds, { ...this.info, toolCallFormat: this.toolCallFormat });
    if (this.#closed) throw new EngineError("engine_closed", "the engine is closed");
    if (this.#dead) throw this.#dead;
    const stops = stopStrings(options);
    const reasoningFormat = options.reasoningParser ? reasoningFormatOf(options.reasoningParser) : null;
    const reasoning = reasoningFormat ? reasoningStart(reasoningFormat, this.tokenizer, promptIds) : null;
    // The output's grammar starts after its reasoning. A harmony tool-call grammar writes its
    // own message headers (the commentary channel's), so it is not gated on the final one.
    const gate = reasoning?.gate;
    if (request.grammar && gate && !(reasoningFormat?.answer && request.grammar.type === "tool_calls")) request.reasoning = gate;
    const channel = new MessageChannel();
    const port = channel.port1;
    const toolFormat = parsesToolCalls(options) ? this.toolCallFormat : null;
    // Tool-call markers that are special tokens stay in the text of outputs that may hold them.
    const keep = new Set((request.grammar || toolFormat) ? this.#markerIds : []);
    // Reasoning markers that are special tokens stay in the text the parser reads.
    for (const id of gate ? [gate.startTokenId, ...gate.endTokenIds] : []) {
      if (id !== undefined && this.tokenizer.isSpecial(id)) keep.add(id);
    }
    for (const piece of reasoningFormat?.markers ?? []) {
      const id = this.tokenizer.pieceToToken(piece);
      if (id !== undefined && this.tokenizer.isSpecial(id)) keep.add(id);
    }
    const decoder = keep.size > 0 ? this.#keepMarkers(keep) : null;
    const states: CompletionState[] = Array.from({ length: request.n }, () => ({
      detok: decoder ? new IncrementalDetokenizer(decoder, promptIds, false) : new IncrementalDetokenizer(this.tokenizer, promptIds),
      stop: new StopStringMatcher(stops),
      // harmony calls are messages of their own: one parser splits reasoning, answer and calls.
      output: toolFormat === "harmony" ? new HarmonyOutputParser(reasoningFormat !== null) : new OutputParser(
        reasoningFormat ? reasoningFormat.parser(reasoning!.start) : null,
        toolFormat ? new ToolCallStreamParser(toolFormat) : null,
      ),
      ids: [],
      text: "",
      logprobs: [],
      finishReason: null,
    }));
    /** Reasoning, content and tool-call deltas of some decoded text (all content without a parser). */
    const parse = (s: CompletionState, decoded: string, final: boolean) => s.output.push(decoded, final);
    const queue: (GenerateDelta | Error)[] = [];
    let notify: (() => void) | null = null;
    let remaining = request.n;
    let promptTokens = promptIds.length;
    let cachedTokens = 0;
    const push = (d: GenerateDelta | Error) => {
      queue.push(d);
      notify?.();
    };
    const finish = () => {
      port.onmessage = null;
      port.close();
      this.#open.delete(port);
      options.signal?.removeEventListener("abort", onAbort);
    };
    const onAbort = () => port.postMessage({ type: "cancel" });
    options.signal?.addEventListener("abort", onAbort);
    this.#open.set(port, (error) => {
      push(error);
      remaining = 0;
      finish();
    });
    port.onmessage = (e: MessageEvent<ToRequest>) => {
      const m = e.data;
      if (m.type === "error") {
        push(errorFromWire(m.error));
        finish();
        return;
      }
      const s = states[m.index];
      if (m.type === "tokens") {
        if (s.finishReason) return; // stopped by a stop string; late tokens are dropped
        let text = "";
        const ids: number[] = [];
        const lps: TokenLogprob[] = [];
        for (let k = 0; k < m.ids.length && !s.stop.stopped; k++) {
          ids.push(m.ids[k]);
          if (m.logprobs) lps.push(m.logprobs[k]);
          text += s.stop.push(s.detok.push([m.ids[k]]));
        }
        s.ids.push(...ids);
        if (s.stop.stopped) {
          s.finishReason = "stop";
          port.postMessage({ type: "cancel", index: m.index });
        }
        const out = parse(s, text, false);
        push({
          index: m.index,
          text: out.text,
          ids,
          ...(out.reasoning !== undefined ? { reasoning: out.reasoning } : {}),
          logprobs: m.logprobs ? lps : undefined,
          ...(out.calls ? { toolCalls: out.calls } : {}),
        });
      } else if (m.type === "done") {
        this.#updateStats(m.stats);
        promptTokens = m.promptTokens;
        cachedTokens = Math.max(cachedTokens, m.cachedTokens);
        const reason = s.finishReason ?? m.finishReason;
        const tail = parse(s, s.finishReason ? "" : s.stop.push(s.detok.flush()) + s.stop.flush(), true);
        s.finishReason = reason;
        // A completion that called tools and stopped ends with "tool_calls" (OpenAI's reason).
        const shown: OutputFinishReason = reason === "stop" && s.output.calls > 0 ? "tool_calls" : reason;
        const last: GenerateDelta = { index: m.index, text: tail.text, ids: [], finishReason: shown };
        if (tail.reasoning !== undefined) last.reasoning = tail.reasoning;
        if (tail.calls) last.toolCalls = tail.calls;
        if (--remaining === 0) {
          last.usage = {
            promptTokens,
            completionTokens: states.reduce((n, st) => n + st.ids.length, 0),
            cachedTokens,
          };
          finish();
        }
        push(last);
      }
    };
    const join = () => {
      this.#worker.postMessage({ type: "join", request, port: channel.port2 } satisfies ToWorker, [channel.port2]);
      if (options.signal?.aborted) onAbort();
    };
    if (!request.grammar) join();
    else {
      // The engine sees only a grammar the probe compiled: a bad one ends here, before any delta.
      this.#check(request.grammar).then(({ warnings, compileMs }) => {
        if (remaining === 0) return; // the engine died meanwhile
        if (compileMs !== undefined) request.grammarCompileMs = compileMs;
        if (warnings.length) push({ index: 0, text: "", ids: [], warnings });
        join();
      }, (e) => {
        push(e instanceof Error ? e : new Error(String(e)));
        remaining = 0;
        finish();
        channel.port2.close();
      });
    }
    const cancel = () => {
      if (remaining > 0) port.postMessage({ type: "cancel" });
    };
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<GenerateDelta>> => {
          while (queue.length === 0) {
            if (remaining === 0 && !port.onmessage) return { done: true, value: undefined };
            await new Promise<void>((r) => (notify = r));
            notify = null;
          }
          const d = queue.shift()!;
          if (d instanceof Error) throw d;
          return { done: false, value: d };
        },
        // A consumer that stops iterating leaves: its blocks return at the next step.
        return: (): Promise<IteratorResult<GenerateDelta>> => {
          cancel();
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
  }

  /**
   * Embeds each input (a string, strings, token ids or token-id arrays): the final hidden
   * state after the model's final norm, pooled as `info.pooling` says (the last token, with
   * the end-of-text token appended, or the mean over all tokens) and L2-normalized, cut to
   * `dimensions` first when given. The inputs run in the same batch as generation, as
   * prefill-only sequences. Options are validated at once ({@link InvalidRequestError}).
   */
  async embed(options: EmbedOptions): Promise<EmbedResult> {
    const { request, dimensions } = validateEmbedRequest(options, (text) => this.tokenizer.encode(text), this.info);
    if (this.#closed) throw new EngineError("engine_closed", "the engine is closed");
    if (this.#dead) throw this.#dead;
    const signal = options.signal;
    const channel = new MessageChannel();
    const port = channel.port1;
    const embeddings: Float32Array[] = [];
    let left = request.inputs.length;
    let promptTokens = 0;
    return await new Promise<EmbedResult>((resolve, reject) => {
      const finish = () => {
        port.onmessage = null;
        port.close();
        this.#open.delete(port);
        signal?.removeEventListener("abort", onAbort);
      };
      const fail = (error: unknown) => {
        finish();
        reject(error);
      };
      const onAbort = () => {
        port.postMessage({ type: "cancel" });
        fail(signal!.reason);
      };
      this.#open.set(port, fail);
      port.onmessage = (e: MessageEvent<ToRequest>) => {
        const m = e.data;
        if (m.type === "error") return fail(errorFromWire(m.error));
        if (m.type !== "embedding") return;
        this.#updateStats(m.stats);
        if (!m.embedding) return fail(new EngineError("engine_closed", "the engine closed before the embedding was done"));
        embeddings[m.index] = finishEmbedding(m.embedding, dimensions);
        promptTokens += m.promptTokens;
        if (--left > 0) return;
        finish();
        resolve({ embeddings, usage: { promptTokens } });
      };
      if (signal?.aborted) return fail(signal.reason);
      signal?.addEventListener("abort", onAbort);
      this.#worker.postMessage({ type: "embed", request, port: channel.port2 } satisfies ToWorker, [channel.port2]);
    });
  }

  /** Checks a grammar in the probe Worker; resolves to the checked spec, rejects with the request error. */
  async #check(spec: GrammarSpec): Promise<CheckedSpec> {
    this.#checker ??= loadModelVocabulary(this.#model, this.tokenizer, {
      vocabSize: this.info.vocabSize,
      architecture: this.info.architecture,
    }).then(({ vocabulary }) => new SpecChecker(vocabulary, this.#grammarOptions));
    const checker = await this.#checker;
    try {
      return await checker.check(spec);
    } catch (e) {
      if (e instanceof GrammarError) throw grammarRequestError(e, grammarParam(spec));
      throw e;
    }
  }

  /** A decoder that skips special tokens other than `keep` (tool-call and reasoning markers). */
  #keepMarkers(keep: ReadonlySet<number>): Decoder {
    const tok = this.tokenizer;
    return { decode: (ids) => tok.decode(ids.filter((id) => !tok.isSpecial(id) || keep.has(id))) };
  }

  /** Cancels all requests, stops the engine and its Worker. */
  close(): Promise<void> {
    if (this.#dead) return Promise.resolve();
    this.#closeChecker();
    if (!this.#closed) {
      this.#closed = new Promise<void>((resolve) => (this.#closedResolve = resolve));
      this.#worker.postMessage({ type: "close" } satisfies ToWorker);
    }
    return this.#closed;
  }

  #promptIds(prompt: GenerateOptions["prompt"]): number[] {
    if (typeof prompt === "string") return this.tokenizer.encode(prompt);
    if (Array.isArray(prompt)) return [...prompt];
    throw new InvalidRequestError("prompt", "must be a string or an array of token ids");
  }

  /** Keeps the newest snapshot (stats arrive on the Worker's channel and on request ports). */
  #updateStats(stats: EngineStats): void {
    if (this.#stats && this.#stats.at > stats.at) return;
    this.#stats = stats;
    this.#statsAt = performance.now();
    this.#onStats?.(stats);
  }

  #closeChecker(): void {
    this.#checker?.then((c) => c.close(), () => {});
  }

  #workerDied(error: Error): void {
    this.#closeChecker();
    this.#dead = error;
    for (const fail of [...this.#open.values()]) fail(error);
    stopWorker(this.#worker);
    this.#closedResolve?.();
  }

  #onMessage(m: FromWorker): void {
    if (m.type === "stats") {
      this.#updateStats(m.stats);
    } else if (m.type === "closed") {
      stopWorker(this.#worker);
      this.#closedResolve?.();
    }
  }
}
