/**
 * Messages between request actors (caller's thread), the engine Worker and each request's
 * MessageChannel port. Everything here is plain data; errors travel as {@link WireError}.
 * @module
 */
import type {
  EmbedRequest,
  EngineInfo,
  EngineOptions,
  EngineRequest,
  EngineStats,
  FinishReason,
  TokenLogprob,
  WireError,
} from "../types/api.ts";

/** Main thread -> Worker. */
export type ToWorker =
  | { type: "init"; options: EngineOptions }
  | { type: "join"; request: EngineRequest; port: MessagePort }
  /** An embedding request; its results come back on `port` as "embedding" messages. */
  | { type: "embed"; request: EmbedRequest; port: MessagePort }
  | { type: "close" };

/** Worker -> main thread. */
export type FromWorker =
  | { type: "ready"; info: EngineInfo; stats: EngineStats }
  | { type: "init_error"; error: WireError }
  | { type: "load_progress"; done: number; total: number }
  | { type: "stats"; stats: EngineStats }
  | { type: "closed" };

/** Request port, engine -> request. `index` is the completion (0..n-1). */
export type ToRequest =
  | { type: "tokens"; index: number; ids: number[]; logprobs?: TokenLogprob[] }
  | {
    type: "done";
    index: number;
    finishReason: FinishReason;
    promptTokens: number;
    cachedTokens: number;
    /** The engine's stats once this completion has left (its blocks freed). */
    stats: EngineStats;
  }
  | {
    /** Input `index` of an embedding request: its pooled hidden state, null if cancelled. */
    type: "embedding";
    index: number;
    embedding: Float32Array | null;
    promptTokens: number;
    stats: EngineStats;
  }
  | { type: "error"; error: WireError };

/** Request port, request -> engine. `index` undefined = every completion. */
export type FromRequest = { type: "cancel"; index?: number };
