/**
 * Compiles specs first in a Worker, with a deadline: the bound on compile time. xgrammar
 * compiles synchronously, and some ordinary schemas take seconds on a 50k-token vocabulary
 * (`maxLength` on strings above all); a spec whose compile passes the deadline is rejected and
 * the Worker is terminated mid-compile. A spec that makes xgrammar abort costs only the
 * Worker's instance. What passes here is then compiled on the engine's own instance.
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

/** A Worker that compiles specs against a vocabulary with a deadline, one at a time. */
export class CompileProbe {
  #vocabulary: Vocabulary;
  #worker: Worker | null = null;
  #ready: Promise<void> | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 0;
  #pending = new Map<number, (r: ProbeReply & { type: "result" }) => void>();

  constructor(vocabulary: Vocabulary) {
    this.#vocabulary = vocabulary;
  }

  #start(): Promise<void> {
    if (this.#ready) return this.#ready;
    const worker = new Worker(new URL("./compile_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker = worker;
    this.#ready = new Promise<void>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<ProbeReply>) => {
        const m = e.data;
        if (m.type === "ready") resolve();
        else if (m.type === "failed") {
          reject(new Error(`grammar compile worker failed to start: ${m.message}`));
        } else this.#pending.get(m.id)?.(m);
      };
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault?.();
        reject(new Error(`grammar compile worker failed: ${e.message}`));
      };
    });
    worker.postMessage({ type: "init", vocabulary: this.#vocabulary } satisfies ProbeRequest);
    return this.#ready;
  }

  #stop(): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#ready = null;
    this.#pending.clear();
  }

  /** Compiles `spec` in the Worker; a compile past `timeoutMs` terminates the Worker. */
  check(spec: GrammarSpec, timeoutMs: number): Promise<ProbeOutcome> {
    const run = async (): Promise<ProbeOutcome> => {
      await this.#start();
      const id = this.#nextId++;
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        return await new Promise<ProbeOutcome>((resolve) => {
          this.#pending.set(id, (r) => {
            resolve(
              r.ok
                ? { kind: "ok", ms: r.ms }
                : { kind: "failed", message: r.message ?? "", log: r.log },
            );
          });
          timer = setTimeout(() => {
            this.#stop();
            resolve({ kind: "timeout" });
          }, timeoutMs);
          this.#worker!.postMessage({ type: "compile", id, spec } satisfies ProbeRequest);
        });
      } finally {
        clearTimeout(timer);
        this.#pending.delete(id);
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Terminates the Worker. */
  close(): void {
    this.#stop();
  }
}
