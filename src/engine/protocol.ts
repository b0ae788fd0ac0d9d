/**
 * Messages between request actors (main thread), the engine Worker and each request's
 * MessageChannel port.
 * @module
 */
import type { EngineRequest } from "./request.ts";
import type { EngineStats } from "./metrics.ts";
import type { EngineOptions } from "./engine.ts";
import type { FinishReason } from "./sequence.ts";

/** Logprob information for one generated token. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** Most likely alternatives, best first. */
  top?: { id: number; logprob: number }[];
}

/** What the engine model looks like to clients. */
export interface EngineInfo {
  vocabSize: number;
  maxContext: number;
  maxTopLogprobs: number;
  maxN: number;
  eosTokenIds: number[];
  architecture: string;
  device: string;
  kvBlocksTotal: number;
  blockSize: number;
  /** Most sequences running at once. */
  maxSeqs: number;
}

/** Main thread -> Worker. */
export type ToWorker =
  | { type: "init"; options: EngineOptions }
  | { type: "join"; request: EngineRequest; port: MessagePort }
  | { type: "close"; drainMs?: number };

/** Worker -> main thread. */
export type FromWorker =
  | { type: "ready"; info: EngineInfo; stats: EngineStats }
  | { type: "init_error"; name: string; message: string }
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
  | { type: "error"; name: string; message: string; param?: string };

/** Request port, request -> engine. `index` undefined = every completion. */
export type FromRequest = { type: "cancel"; index?: number };
