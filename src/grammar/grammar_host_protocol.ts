/**
 * The shared-memory calls between a grammar host (grammar_host.ts, on the engine's thread) and
 * its Worker (grammar_host_worker.ts): one call at a time, synchronous for the caller.
 *
 * Layout of the SharedArrayBuffer: {@link CTL_WORDS} Int32 control words (state, op, matcher,
 * argument, result), then the mask (`maskWords` u32), then {@link TEXT_BYTES} of UTF-8 for
 * jump-forward text. The caller writes op and arguments, sets state {@link CALLED} and waits
 * while it stays so; the Worker answers in `result` and sets {@link ANSWERED}; the caller
 * then sets {@link IDLE}.
 * @module
 */
import type { GrammarSpec } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** Control words. */
export const CTL = { state: 0, op: 1, matcher: 2, arg: 3, result: 4 } as const;
export const CTL_WORDS = 8;
/** States. */
export const IDLE = 0;
export const CALLED = 1;
export const ANSWERED = 2;
/** Operations. */
export const OP = {
  create: 1,
  accept: 2,
  fill: 3,
  terminated: 4,
  jump: 5,
  dispose: 6,
} as const;
/** Bytes of jump-forward text a call returns (a longer text is cut at a character boundary). */
export const TEXT_BYTES = 4096;
/** A result of -1: the call failed in the Worker. */
export const FAILED = -1;

/** Bytes of the shared buffer for a mask of `maskWords`. */
export function hostBufferBytes(maskWords: number): number {
  return CTL_WORDS * 4 + maskWords * 4 + TEXT_BYTES;
}

/** The first message to the Worker. */
export interface HostInit {
  vocabulary: Vocabulary;
  spec: GrammarSpec;
  buffer: SharedArrayBuffer;
}

/** The Worker's answer once the grammar is compiled (then it serves calls on the buffer). */
export type HostReady = { type: "ready"; ms: number } | { type: "failed"; message: string };
