/**
 * Compiles specs in a Worker, with a deadline: the bound on compile time. xgrammar compiles
 * synchronously, and some schemas take seconds on a 50k-token vocabulary (`maxLength` on
 * strings above all); a compile that passes its deadline is abandoned by terminating the
 * Worker mid-compile, which frees everything it made (its whole WebAssembly memory). A spare
 * Worker, started ahead, takes over at once, so the specs queued behind do not wait for a
 * restart (where `spare` is on). A spec that makes xgrammar abort costs only the Worker's instance; a Worker whose
 * memory grew past `maxHeapBytes` (WebAssembly memory never shrinks) is replaced too.
 * @module
 */
import type { ProbeReply, ProbeRequest } from "./compile_protocol.ts";
import type { GrammarSpec } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** The outcome of one probe. */
export type ProbeOutcome =
  | { kind: "ok"; ms: number }
  | { kind: "failed"; message: string; log: string[] }
  | { kind: "timeout" };

/** Options of {@link CompileProbe}. */
export interface CompileProbeOptions {
  /** A Worker whose WebAssembly memory grew past this is replaced (default 256 MiB). */
  maxHeapBytes?: number;
  /** Keep a spare Worker started, to take over at once from a terminated one (default true). */
  spare?: boolean;
}

/** Counters of a probe (for tests and metrics). */
export interface CompileProbeStats {
  /** Workers started, spares included. */
  started: number;
  /** Workers terminated: deadlines passed, or grown too large. */
  terminated: number;
  /** Compiles abandoned at their deadline. */
  timeouts: number;
}

type Reply = ProbeReply & { type: "result" };

/** A started Worker and its readiness. */
class ProbeWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly pending = new Map<number, (r: Reply) => void>();

  constructor(vocabulary: Vocabulary) {
    this.worker = new Worker(new URL("./compile_worker.ts", import.meta.url).href, { type: "module" });
    this.ready = new Promise<void>((resolve, reject) => {
      this.worker.onmessage = (e: MessageEvent<ProbeReply>) => {
        const m = e.data;
        if (m.type === "ready") resolve();
        else if (m.type === "failed") reject(new Error(`grammar compile worker failed to start: ${m.message}`));
        else this.pending.get(m.id)?.(m);
      };
      this.worker.onerror = (e: ErrorEvent) => {
        e.preventDefault?.();
        reject(new Error(`grammar compile worker failed: ${e.message}`));
      };
    });
    // A spare nobody waits on yet must not be an unhandled rejection.
    this.ready.catch(() => {});
    this.worker.postMessage({ type: "init", vocabulary } satisfies ProbeRequest);
  }

  terminate(): void {
    this.worker.terminate();
    this.pending.clear();
  }
}

/** A Worker that compiles specs against a vocabulary with a deadline, one at a time. */
export class CompileProbe {
  #vocabulary: Vocabulary;
  #maxHeapBytes: number;
  #keepSpare: boolean;
  #current: ProbeWorker | null = null;
  #spare: ProbeWorker | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 0;
  #closed = false;
  #stats: CompileProbeStats = { started: 0, terminated: 0, timeouts: 0 };

  constructor(vocabulary: Vocabulary, options: CompileProbeOptions = {}) {
    this.#vocabulary = vocabulary;
    this.#maxHeapBytes = options.maxHeapBytes ?? 256 * 1024 * 1024;
    this.#keepSpare = options.spare ?? true;
  }

  /** Counters since creation. */
  get stats(): CompileProbeStats {
    return { ...this.#stats };
  }

  /** Workers alive now (the current one and the spare). */
  get liveWorkers(): number {
    return (this.#current ? 1 : 0) + (this.#spare ? 1 : 0);
  }

  #startOne(): ProbeWorker {
    this.#stats.started++;
    return new ProbeWorker(this.#vocabulary);
  }

  /** The Worker to compile on: the current one, else the spare, else a new one; a spare is kept ready. */
  #worker(): ProbeWorker {
    if (!this.#current) {
      this.#current = this.#spare ?? this.#startOne();
      this.#spare = null;
    }
    if (this.#keepSpare) this.#spare ??= this.#startOne();
    return this.#current;
  }

  /** Terminates the current Worker (the spare takes over on the next compile). */
  #retire(): void {
    if (!this.#current) return;
    this.#current.terminate();
    this.#current = null;
    this.#stats.terminated++;
  }

  /** Compiles `spec` in the Worker; a compile past `timeoutMs` terminates the Worker. */
  check(spec: GrammarSpec, timeoutMs: number): Promise<ProbeOutcome> {
    const run = async (): Promise<ProbeOutcome> => {
      if (this.#closed) throw new Error("the grammar compile probe is closed");
      const w = this.#worker();
      await w.ready;
      const id = this.#nextId++;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        return await new Promise<ProbeOutcome>((resolve) => {
          w.pending.set(id, (r) => {
            if (r.heapBytes > this.#maxHeapBytes) this.#retire();
            resolve(r.ok ? { kind: "ok", ms: r.ms } : { kind: "failed", message: r.message ?? "", log: r.log });
          });
          timer = setTimeout(() => {
            this.#stats.timeouts++;
            if (this.#current === w) this.#retire();
            else w.terminate();
            resolve({ kind: "timeout" });
          }, timeoutMs);
          w.worker.postMessage({ type: "compile", id, spec } satisfies ProbeRequest);
        });
      } finally {
        clearTimeout(timer);
        w.pending.delete(id);
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Terminates the Workers. */
  close(): void {
    this.#closed = true;
    this.#current?.terminate();
    this.#spare?.terminate();
    this.#current = this.#spare = null;
  }
}
