/**
 * A grammar compiled and matched in a Worker of its own, for grammars too slow to compile on
 * the engine's thread: xgrammar's web build cannot hand a compiled grammar from one instance to
 * another (no serialization), so the instance that compiled it keeps it and serves its
 * matchers. The engine's thread calls them synchronously through shared memory
 * (grammar_host_protocol.ts): a few tens of microseconds a call, while the compile itself never
 * blocks the engine.
 * @module
 */
import { bitmaskWords } from "./bitmask.ts";
import {
  CALLED,
  CTL,
  CTL_WORDS,
  FAILED,
  type HostInit,
  type HostReady,
  hostBufferBytes,
  IDLE,
  OP,
  TEXT_BYTES,
} from "./grammar_host_protocol.ts";
import type { TokenMatcher } from "./matcher.ts";
import type { GrammarSpec } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** How long a call may take before the host counts as dead (a call is microseconds). */
const CALL_TIMEOUT_MS = 10_000;

/** One grammar's Worker and its shared call buffer. */
export class GrammarHost {
  /** u32 words of a mask. */
  readonly maskWords: number;
  /** Resolves once the grammar is compiled (rejects if it cannot be). */
  readonly ready: Promise<void>;
  #worker: Worker;
  #ctl: Int32Array;
  #mask: Uint32Array;
  #text: Uint8Array;
  #live = 0;
  #closed = false;

  /** Starts the Worker and its compile of `spec` (a checked spec). */
  constructor(vocabulary: Vocabulary, spec: GrammarSpec) {
    this.maskWords = bitmaskWords(vocabulary.vocabSize);
    const buffer = new SharedArrayBuffer(hostBufferBytes(this.maskWords));
    this.#ctl = new Int32Array(buffer, 0, CTL_WORDS);
    this.#mask = new Uint32Array(buffer, CTL_WORDS * 4, this.maskWords);
    this.#text = new Uint8Array(buffer, CTL_WORDS * 4 + this.maskWords * 4, TEXT_BYTES);
    this.#worker = new Worker(new URL("./grammar_host_worker.ts", import.meta.url).href, { type: "module" });
    this.ready = new Promise<void>((resolve, reject) => {
      this.#worker.onmessage = (e: MessageEvent<HostReady>) => {
        if (e.data.type === "ready") resolve();
        else reject(new Error(`grammar host: ${e.data.message}`));
      };
      this.#worker.onerror = (e: ErrorEvent) => {
        e.preventDefault?.();
        reject(new Error(`grammar host failed: ${e.message}`));
      };
    });
    this.ready.catch(() => {});
    this.#worker.postMessage({ vocabulary, spec, buffer } satisfies HostInit);
  }

  /** Matchers not yet disposed. */
  get liveMatchers(): number {
    return this.#live;
  }

  /** A synchronous call into the Worker. */
  call(op: number, matcher = 0, arg = 0): number {
    if (this.#closed) throw new Error("grammar host is closed");
    const ctl = this.#ctl;
    ctl[CTL.op] = op;
    ctl[CTL.matcher] = matcher;
    ctl[CTL.arg] = arg;
    Atomics.store(ctl, CTL.state, CALLED);
    Atomics.notify(ctl, CTL.state);
    const deadline = performance.now() + CALL_TIMEOUT_MS;
    while (Atomics.load(ctl, CTL.state) === CALLED) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("grammar host did not answer");
      Atomics.wait(ctl, CTL.state, CALLED, left);
    }
    const result = ctl[CTL.result];
    Atomics.store(ctl, CTL.state, IDLE);
    if (result === FAILED) throw new Error("grammar host call failed");
    return result;
  }

  /** A matcher at the start of the grammar (after {@link ready}). */
  createMatcher(): RemoteMatcher {
    const id = this.call(OP.create);
    this.#live++;
    return new RemoteMatcher(this, id, () => this.#live--);
  }

  /** @internal The mask a fill call wrote. */
  get mask(): Uint32Array {
    return this.#mask;
  }

  /** @internal The text a jump call wrote. */
  text(length: number): string {
    return new TextDecoder().decode(this.#text.slice(0, length));
  }

  /** Stops the Worker (its matchers with it). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#worker.terminate();
  }
}

/** A matcher living in a {@link GrammarHost}. */
export class RemoteMatcher implements TokenMatcher {
  readonly maskWords: number;
  #host: GrammarHost;
  #id: number;
  #release: (() => void) | null;

  constructor(host: GrammarHost, id: number, release: () => void) {
    this.#host = host;
    this.#id = id;
    this.#release = release;
    this.maskWords = host.maskWords;
  }

  acceptToken(id: number): boolean {
    return this.#host.call(OP.accept, this.#id, id) === 1;
  }

  fillNextTokenBitmask(out: Uint32Array, offset = 0): void {
    this.#host.call(OP.fill, this.#id);
    out.set(this.#host.mask, offset);
  }

  isTerminated(): boolean {
    return this.#host.call(OP.terminated, this.#id) === 1;
  }

  findJumpForwardString(): string {
    return this.#host.text(this.#host.call(OP.jump, this.#id));
  }

  dispose(): void {
    if (!this.#release) return;
    this.#release();
    this.#release = null;
    try {
      this.#host.call(OP.dispose, this.#id);
    } catch {
      // A closed or dead host freed its matchers already.
    }
  }
}
