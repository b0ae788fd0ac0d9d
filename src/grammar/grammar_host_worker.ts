/**
 * A grammar host's Worker: compiles one grammar on its own xgrammar instance (taking as long
 * as it takes, off the engine's thread), then serves its matchers through shared memory
 * (grammar_host_protocol.ts), blocking between calls until the host terminates it.
 * @module
 */
import { GrammarCompiler } from "./grammar_compiler.ts";
import type { GrammarMatcher } from "./matcher.ts";
import { ANSWERED, CALLED, CTL, CTL_WORDS, FAILED, type HostInit, type HostReady, OP, TEXT_BYTES } from "./grammar_host_protocol.ts";

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;

async function serve(init: HostInit): Promise<void> {
  const post = (m: HostReady) => scope.postMessage(m);
  const t0 = performance.now();
  let grammar;
  try {
    const compiler = await GrammarCompiler.create(init.vocabulary, { trusted: true, probe: false });
    grammar = await compiler.compile(init.spec);
  } catch (e) {
    post({ type: "failed", message: String((e as Error)?.message ?? e) });
    return;
  }
  const ctl = new Int32Array(init.buffer, 0, CTL_WORDS);
  const maskWords = (init.buffer.byteLength - CTL_WORDS * 4 - TEXT_BYTES) / 4;
  const mask = new Uint32Array(init.buffer, CTL_WORDS * 4, maskWords);
  const text = new Uint8Array(init.buffer, CTL_WORDS * 4 + maskWords * 4, TEXT_BYTES);
  const matchers = new Map<number, GrammarMatcher>();
  const encoder = new TextEncoder();
  let next = 0;
  post({ type: "ready", ms: performance.now() - t0 });
  for (;;) {
    let s: number;
    while ((s = Atomics.load(ctl, CTL.state)) !== CALLED) Atomics.wait(ctl, CTL.state, s);
    const op = ctl[CTL.op];
    const m = matchers.get(ctl[CTL.matcher]);
    let result = 0;
    try {
      switch (op) {
        case OP.create:
          result = next++;
          matchers.set(result, await grammar.createMatcher());
          break;
        case OP.accept:
          result = m!.acceptToken(ctl[CTL.arg]) ? 1 : 0;
          break;
        case OP.fill:
          m!.fillNextTokenBitmask(mask, 0);
          break;
        case OP.terminated:
          result = m!.isTerminated() ? 1 : 0;
          break;
        case OP.jump: {
          // Cut at a character boundary: a jump-forward prefix is still one.
          let s = m!.findJumpForwardString();
          let bytes = encoder.encode(s);
          while (bytes.length > TEXT_BYTES) {
            s = [...s].slice(0, -1).join("");
            bytes = encoder.encode(s);
          }
          text.set(bytes);
          result = bytes.length;
          break;
        }
        case OP.dispose:
          m?.dispose();
          matchers.delete(ctl[CTL.matcher]);
          break;
      }
    } catch {
      result = FAILED;
    }
    ctl[CTL.result] = result;
    Atomics.store(ctl, CTL.state, ANSWERED);
    Atomics.notify(ctl, CTL.state);
  }
}

scope.onmessage = (e: MessageEvent<HostInit>) => {
  scope.onmessage = null;
  void serve(e.data);
};
