/**
 * The engine Worker's entry point: loads the model, then serves joins. Each request brings
 * its own MessagePort; tokens go back on it and a "cancel" on it makes the request leave at
 * the next step. The engine never waits on a request.
 * @module
 */
/// <reference lib="deno.worker" />
import { endThisWorker } from "../runtime/runtime.ts";
import { Engine, type RequestHandle } from "../engine/engine.ts";
import type { FromRequest, FromWorker, ToRequest, ToWorker } from "./protocol.ts";
import { EngineError, type EngineStats, errorToWire } from "../types/api.ts";

const STATS_INTERVAL_MS = 50;

/** The engine actor living in this Worker. */
class EngineHost {
  #engine: Engine | null = null;
  #lastStats = 0;
  #statsTimer: ReturnType<typeof setTimeout> | undefined;
  #post: (msg: FromWorker) => void;
  // Completions that finish in the same readback share one snapshot (histogram percentiles
  // sort their windows, so once per readback rather than once per completion). The engine
  // frees every finished sequence's blocks before it reports any of them, so the shared
  // snapshot's KV figures are exact; its counters catch up with the post after the readback.
  #snapshot: EngineStats | null = null;

  constructor(post: (msg: FromWorker) => void) {
    this.#post = post;
  }

  #stats(engine: Engine): EngineStats {
    if (!this.#snapshot) {
      this.#snapshot = engine.stats();
      queueMicrotask(() => (this.#snapshot = null));
    }
    return this.#snapshot;
  }

  async handle(msg: ToWorker): Promise<void> {
    if (msg.type === "init") {
      try {
        this.#engine = await Engine.load({
          ...msg.options,
          onLoadProgress: (done, total) => this.#post({ type: "load_progress", done, total }),
        });
        this.#engine.onProgress = () => this.#postStats();
        this.#post({ type: "ready", info: this.#engine.info, stats: this.#engine.stats() });
        this.#postStats();
      } catch (e) {
        this.#post({ type: "init_error", error: errorToWire(e) });
      }
    } else if (msg.type === "join") {
      this.#join(msg.request, msg.port);
    } else if (msg.type === "embed") {
      this.#embed(msg.request, msg.port);
    } else if (msg.type === "close") {
      clearTimeout(this.#statsTimer);
      await this.#engine?.close();
      this.#engine?.runner.gpu.device.destroy();
      this.#post({ type: "closed" });
      endThisWorker();
    }
  }

  #join(request: Extract<ToWorker, { type: "join" }>["request"], port: MessagePort): void {
    const send = (m: ToRequest) => port.postMessage(m);
    const engine = this.#engine;
    if (!engine) {
      send({ type: "error", error: errorToWire(new EngineError("engine_closed", "engine is not loaded")) });
      port.close();
      return;
    }
    let open = request.n;
    let handle: RequestHandle;
    try {
      handle = engine.submit(request, {
        tokens: (index, ids, logprobs) => send({ type: "tokens", index, ids, logprobs }),
        done: (index, finishReason, promptTokens, cachedTokens) => {
          send({ type: "done", index, finishReason, promptTokens, cachedTokens, stats: this.#stats(engine) });
          if (--open === 0) port.close();
        },
        fail: (_index, error) => {
          if (open <= 0) return;
          open = 0;
          send({ type: "error", error: errorToWire(new EngineError("engine_failed", error.message)) });
          port.close();
        },
      });
    } catch (e) {
      send({ type: "error", error: errorToWire(e) });
      port.close();
      return;
    }
    port.onmessage = (e: MessageEvent<FromRequest>) => {
      if (e.data?.type === "cancel") handle.cancel(e.data.index);
    };
  }

  #embed(request: Extract<ToWorker, { type: "embed" }>["request"], port: MessagePort): void {
    const send = (m: ToRequest, transfer: Transferable[] = []) => port.postMessage(m, transfer);
    const engine = this.#engine;
    if (!engine) {
      send({ type: "error", error: errorToWire(new EngineError("engine_closed", "engine is not loaded")) });
      port.close();
      return;
    }
    let open = request.inputs.length;
    let handle: RequestHandle;
    try {
      handle = engine.submitEmbedding(request, {
        embedding: (index, embedding, promptTokens) => {
          send({ type: "embedding", index, embedding, promptTokens, stats: this.#stats(engine) }, embedding ? [embedding.buffer as ArrayBuffer] : []);
          if (--open === 0) port.close();
        },
        fail: (_index, error) => {
          if (open <= 0) return;
          open = 0;
          send({ type: "error", error: errorToWire(new EngineError("engine_failed", error.message)) });
          port.close();
        },
      });
    } catch (e) {
      send({ type: "error", error: errorToWire(e) });
      port.close();
      return;
    }
    port.onmessage = (e: MessageEvent<FromRequest>) => {
      if (e.data?.type === "cancel") handle.cancel(e.data.index);
    };
  }

  /** Posts stats at most every STATS_INTERVAL_MS, and once more after a burst. */
  #postStats(): void {
    const engine = this.#engine;
    if (!engine) return;
    const now = performance.now();
    if (now - this.#lastStats >= STATS_INTERVAL_MS) {
      this.#lastStats = now;
      this.#post({ type: "stats", stats: this.#stats(engine) });
    } else if (this.#statsTimer === undefined) {
      this.#statsTimer = setTimeout(() => {
        this.#statsTimer = undefined;
        this.#postStats();
      }, STATS_INTERVAL_MS);
    }
  }
}

const host = new EngineHost((msg) => self.postMessage(msg));
self.onmessage = (e: MessageEvent<ToWorker>) => {
  host.handle(e.data).catch((err) => console.error("engine worker:", err));
};
