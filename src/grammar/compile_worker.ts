/**
 * The compile probe's Worker: compiles each new spec against the real vocabulary on its own
 * xgrammar instance, so that a spec that makes xgrammar abort, or that takes too long, costs
 * this Worker (restarted or terminated by compile_probe.ts) and not the engine's instance.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { compileSpec } from "./grammar_source.ts";
import type { ProbeReply, ProbeRequest } from "./compile_protocol.ts";
import type { Vocabulary } from "./vocabulary.ts";
import { compilerOf, loadXGrammar, type XGrammarInstance } from "./xgrammar.ts";

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
let vocabulary: Vocabulary | null = null;
let state: { xg: XGrammarInstance; compiler: XG.GrammarCompiler } | null = null;

async function fresh(): Promise<{ xg: XGrammarInstance; compiler: XG.GrammarCompiler }> {
  const xg = await loadXGrammar();
  return { xg, compiler: await compilerOf(xg, vocabulary!) };
}

scope.onmessage = async (e: MessageEvent<ProbeRequest>) => {
  const msg = e.data;
  const reply = (r: ProbeReply) => scope.postMessage(r);
  if (msg.type === "init") {
    vocabulary = msg.vocabulary;
    try {
      state = await fresh();
      reply({ type: "ready" });
    } catch (err) {
      reply({ type: "failed", message: String((err as Error)?.message ?? err) });
    }
    return;
  }
  state ??= await fresh();
  const heapBytes = () => (state?.xg.binding as { HEAPU8?: Uint8Array } | undefined)?.HEAPU8?.length ?? 0;
  const t0 = performance.now();
  try {
    const compiled = await compileSpec(state.xg, state.compiler, msg.spec);
    compiled.dispose();
    reply({
      type: "result",
      id: msg.id,
      ok: true,
      ms: performance.now() - t0,
      log: state.xg.takeLog(),
      heapBytes: heapBytes(),
    });
  } catch (err) {
    const log = state.xg.takeLog();
    const heap = heapBytes();
    // An abort leaves the instance unusable: the next request gets a fresh one.
    state = null;
    reply({
      type: "result",
      id: msg.id,
      ok: false,
      ms: performance.now() - t0,
      log,
      message: String((err as Error)?.message ?? err),
      heapBytes: heap,
    });
  }
};
