/**
 * Offline batches: many requests through one engine with a bounded number in flight, results
 * in input order, progress, and cancellation. `ordered` is the pool both
 * `engine.generateBatch` and `cli batch` use.
 * @module
 */
import type { ErrorCode } from "../types/api.ts";
import { LlmError } from "../types/api.ts";

/** Where a batch is. */
export interface BatchProgress {
  /** Items finished (succeeded or failed). */
  done: number;
  /** Items that failed. */
  failed: number;
  /** Items in all, when known. */
  total: number | null;
  /** Generated tokens so far. */
  tokens: number;
  /** Generated tokens per second since the batch started. */
  tokensPerSecond: number;
  elapsedSeconds: number;
  /** Seconds left at the current item rate, when the total is known. */
  etaSeconds: number | null;
}

/** Options of a batch. */
export interface BatchOptions {
  /** Called after each finished item. */
  onProgress?: (progress: BatchProgress) => void;
  /** Cancels the batch: in-flight items leave the engine and nothing more starts. */
  signal?: AbortSignal;
  /** Items in flight at most (default: twice the engine's sequence slots). */
  concurrency?: number;
}

/** One item of a batch that failed, in place of its result. */
export interface BatchItemError {
  error: { code: ErrorCode; message: string; param?: string };
}

/** Turns an item's failure into its place in the results. */
export function batchItemError(e: unknown): BatchItemError {
  const err = e instanceof Error ? e : new Error(String(e));
  const code: ErrorCode = err instanceof LlmError ? err.code : "internal";
  const param = err instanceof LlmError ? err.param : undefined;
  return { error: { code, message: err.message, ...(param === undefined ? {} : { param }) } };
}

/** Counts finished items and tokens, and reports progress. */
export class BatchProgressTracker {
  #progress: BatchProgress;
  #started = performance.now();
  #report?: (p: BatchProgress) => void;

  constructor(total: number | null, report?: (p: BatchProgress) => void) {
    this.#progress = { done: 0, failed: 0, total, tokens: 0, tokensPerSecond: 0, elapsedSeconds: 0, etaSeconds: null };
    this.#report = report;
  }

  /** Records one finished item with its generated tokens. */
  finished(tokens: number, failed: boolean): void {
    const p = this.#progress;
    p.done++;
    if (failed) p.failed++;
    p.tokens += tokens;
    p.elapsedSeconds = (performance.now() - this.#started) / 1000;
    p.tokensPerSecond = p.elapsedSeconds > 0 ? p.tokens / p.elapsedSeconds : 0;
    p.etaSeconds = p.total === null ? null : (p.elapsedSeconds / p.done) * Math.max(0, p.total - p.done);
    this.#report?.({ ...p });
  }

  /** The progress so far (elapsed time and rate as of now). */
  get progress(): BatchProgress {
    const p = { ...this.#progress };
    p.elapsedSeconds = (performance.now() - this.#started) / 1000;
    p.tokensPerSecond = p.elapsedSeconds > 0 ? p.tokens / p.elapsedSeconds : 0;
    return p;
  }
}

/**
 * Runs `work` on every item with at most `concurrency` running, and yields the results in
 * input order. Finished results wait in a reorder buffer of at most `8 * concurrency` while an
 * earlier item runs on, so memory stays bounded however many items come (items are pulled
 * from the iterable only as room frees up). Stops pulling when `signal` aborts; work already
 * started is awaited, then the signal's reason is thrown.
 */
export async function* ordered<T, R>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  work: (item: T, index: number) => Promise<R>,
  signal?: AbortSignal,
): AsyncGenerator<R> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  const source = Symbol.asyncIterator in items
    ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
    : (items as Iterable<T>)[Symbol.iterator]();
  const maxBuffered = 8 * concurrency;
  const results = new Map<number, R>();
  const running = new Map<number, Promise<void>>();
  let next = 0; // next index to pull
  let emit = 0; // next index to yield
  let exhausted = false;
  // A holder, not a variable: it is set from callbacks.
  const failed: { error?: unknown; set: boolean } = { set: false };
  const start = (item: T, index: number) => {
    const p = work(item, index).then(
      (r) => void results.set(index, r),
      (error) => {
        if (!failed.set) Object.assign(failed, { error, set: true });
      },
    ).finally(() => running.delete(index));
    running.set(index, p);
  };
  try {
    while (true) {
      while (!exhausted && !signal?.aborted && !failed.set && running.size < concurrency && results.size + running.size < maxBuffered) {
        const r = await source.next();
        if (r.done) exhausted = true;
        else start(r.value, next++);
      }
      if (failed.set) throw failed.error;
      if (results.has(emit)) {
        const r = results.get(emit)!;
        results.delete(emit++);
        yield r;
        continue;
      }
      if (running.size === 0) {
        if (signal?.aborted) throw signal.reason;
        if (exhausted) return;
        continue;
      }
      await Promise.race(running.values());
    }
  } finally {
    // An early exit (abort, a consumer that stops, a failure) waits for the work it started.
    await Promise.allSettled(running.values());
    await source.return?.();
  }
}
