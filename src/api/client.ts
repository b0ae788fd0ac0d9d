/**
 * The request side of the engine, on the caller's thread: starts the engine Worker, and runs
 * each request as an actor with its own MessageChannel. The actor tokenizes the prompt,
 * detokenizes incrementally, applies stop strings and turns an AbortSignal into a cancel.
 * @module
 */
import { stopWorker } from "../runtime/runtime.ts";
import { Tokenizer } from "../model/tokenizer.ts";
import { IncrementalDetokenizer, StopStringMatcher } from "./detokenizer.ts";
import type { FromWorker, ToRequest, ToWorker } from "./protocol.ts";
import {
  type Completion,
  type EngineInfo,
  EngineError,
  type EngineOptions,
  type EngineStats,
  errorFromWire,
  type FinishReason,
  type GenerateDelta,
  type GenerateOptions,
  type GenerateResult,
  InvalidRequestError,
  type TokenLogprob,
  type Usage,
} from "./types.ts";
import { stopStrings, validateRequest } from "./validate.ts";
import { type BatchItemError, batchItemError, type BatchOptions, BatchProgressTracker, ordered } from "./batch.ts";

/** Options of `createEngine`. */
export interface CreateEngineOptions extends EngineOptions {
  /** Called with the engine's stats whenever they change (about every 50 ms under load). */
  onStats?: (stats: EngineStats) => void;
  /** Weight upload progress while the model loads (bytes or tensors done, of total). */
  onLoadProgress?: (done: number, total: number) => void;
}

interface CompletionState {
  detok: IncrementalDetokenizer;
  stop: StopStringMatcher;
  ids: number[];
  text: string;
  logprobs: TokenLogprob[];
  finishReason: FinishReason | null;
}

/** A running engine, seen from the caller's thread. */
export class EngineClient {
  readonly info: EngineInfo;
  readonly tokenizer: Tokenizer;
  #worker: Worker;
  #stats: EngineStats | null = null;
  #statsAt = performance.now();
  #onStats?: (stats: EngineStats) => void;
  #closed: Promise<void> | null = null;
  #closedResolve: (() => void) | null = null;
  /** Open requests, each with how to fail it if the engine Worker dies. */
  #open = new Map<MessagePort, (error: Error) => void>();
  #dead: Error | null = null;

  private constructor(worker: Worker, info: EngineInfo, tokenizer: Tokenizer, onStats?: (s: EngineStats) => void) {
    this.#worker = worker;
    this.info = info;
    this.tokenizer = tokenizer;
    this.#onStats = onStats;
  }

  /**
   * Starts the engine Worker and loads the model in it. A model that cannot be loaded
   * rejects with the loader's error (its `code` says why, e.g. `checkpoint_invalid`).
   */
  static async create(options: CreateEngineOptions): Promise<EngineClient> {
    const { onStats, onLoadProgress, ...engineOptions } = options;
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
    const client = new EngineClient(worker, first.info, tokenizer, onStats);
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
    const states = new Map<number, Completion>();
    for await (const d of this.stream(options)) {
      let c = states.get(d.index);
      if (!c) states.set(d.index, c = { index: d.index, ids: [], text: "", finishReason: "length" });
      c.ids.push(...d.ids);
      c.text += d.text;
      if (d.logprobs) (c.logprobs ??= []).push(...d.logprobs);
      if (d.finishReason) c.finishReason = d.finishReason;
      if (d.usage) usage = d.usage;
    }
    const choices = [...states.values()].sort((a, b) => a.index - b.index);
    const promptIds = this.#promptIds(options.prompt);
    return { ...choices[0], usage: usage!, promptIds, choices };
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

  /** Streams text deltas as tokens arrive. */
  stream(options: GenerateOptions): AsyncIterable<GenerateDelta> {
    const promptIds = this.#promptIds(options.prompt);
    const request = validateRequest(options, promptIds, this.info);
    if (this.#closed) throw new EngineError("engine_closed", "the engine is closed");
    if (this.#dead) throw this.#dead;
    const stops = stopStrings(options);
    const channel = new MessageChannel();
    const port = channel.port1;
    const states: CompletionState[] = Array.from({ length: request.n }, () => ({
      detok: new IncrementalDetokenizer(this.tokenizer, promptIds),
      stop: new StopStringMatcher(stops),
      ids: [],
      text: "",
      logprobs: [],
      finishReason: null,
    }));
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
        push({ index: m.index, text, ids, logprobs: m.logprobs ? lps : undefined });
      } else if (m.type === "done") {
        this.#updateStats(m.stats);
        promptTokens = m.promptTokens;
        cachedTokens = Math.max(cachedTokens, m.cachedTokens);
        const reason = s.finishReason ?? m.finishReason;
        const tail = s.finishReason ? "" : s.stop.push(s.detok.flush()) + s.stop.flush();
        s.finishReason = reason;
        const last: GenerateDelta = { index: m.index, text: tail, ids: [], finishReason: reason };
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
    this.#worker.postMessage({ type: "join", request, port: channel.port2 } satisfies ToWorker, [channel.port2]);
    if (options.signal?.aborted) onAbort();
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

  /** Cancels all requests, stops the engine and its Worker. */
  close(): Promise<void> {
    if (this.#dead) return Promise.resolve();
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

  #workerDied(error: Error): void {
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
