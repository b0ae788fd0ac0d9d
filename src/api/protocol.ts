/**
 * Messages between request actors (caller's thread), the engine Worker and each request's
 * MessageChannel port. Everything here is plain data; errors travel as {@link WireError}.
 * @module
 */
import type {
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
  | { type: "error"; error: WireError };

/** Request port, request -> engine. `index` undefined = every completion. */
export type FromRequest = { type: "cancel"; index?: number };
