/**
 * Messages between the compile probe (compile_probe.ts) and its Worker (compile_worker.ts).
 * @module
 */
import type { GrammarSpec } from "./spec.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** Messages to the probe Worker. */
export type ProbeRequest = { type: "init"; vocabulary: Vocabulary } | {
  type: "compile";
  id: number;
  spec: GrammarSpec;
};

/** Messages from the probe Worker. */
export type ProbeReply =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | {
    type: "result";
    id: number;
    ok: boolean;
    ms: number;
    log: string[];
    message?: string;
    /** The instance's WebAssembly memory after the compile (it never shrinks). */
    heapBytes: number;
  };
