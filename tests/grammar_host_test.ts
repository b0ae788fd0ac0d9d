/**
 * A grammar whose compile is slow runs in a host Worker, off the engine's thread (issue 19,
 * item 10): while it compiles, this thread keeps running (no gap in a timer), and its matcher,
 * called through shared memory, gives exactly the masks, accepted tokens and forced tokens of
 * a matcher compiled here.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { EngineGrammar, HOST_COMPILE_MS } from "../src/engine/constraints.ts";
import type { GrammarSpec } from "../src/types/api.ts";

/** Compiles in about half a second on a quiet machine (seconds under load): optional arrays of bounded strings. */
function slowSchema(): GrammarSpec {
  const properties: Record<string, unknown> = { id: { type: "integer", minimum: 0, maximum: 999 } };
  for (let i = 0; i < 120; i++) properties[`p${i}`] = { type: "array", items: { type: "string", maxLength: 30 }, maxItems: 30 };
  return { type: "json_schema", schema: { type: "object", properties, required: ["id"] } };
}

/** Longest pause of this thread's timers while `run` is pending. */
async function longestGap(run: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let gap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
  }, 10);
  try {
    await run();
    gap = Math.max(gap, performance.now() - last);
  } finally {
    clearInterval(timer);
  }
  return gap;
}

test("grammar host: a slow grammar compiles off this thread and its remote matcher matches a local one", async () => {
  const grammar = new EngineGrammar({ model: modelDir("stories260K"), vocabSize: 512, architecture: "llama" });
  try {
    await grammar.constraint({ type: "json_schema", schema: { type: "boolean" } }, true); // load xgrammar here first
    const spec = slowSchema();
    let remote = null as Awaited<ReturnType<EngineGrammar["constraint"]>> | null;
    const hostGap = await longestGap(async () => (remote = await grammar.constraint(spec, true, { compileMs: HOST_COMPILE_MS + 1 })));
    assertEquals(grammar.hosts, 1);
    let local = null as Awaited<ReturnType<EngineGrammar["constraint"]>> | null;
    const localGap = await longestGap(async () => (local = await grammar.constraint(spec, true)));
    console.log(`longest pause: ${hostGap.toFixed(0)} ms with the host, ${localGap.toFixed(0)} ms compiling here`);
    // The same compile on this thread stalls it; in the host it does not.
    assert(localGap > 300, `the local compile took only ${localGap.toFixed(0)} ms: the schema proves nothing`);
    assert(hostGap < localGap / 2, `this thread paused ${hostGap.toFixed(0)} ms while the host compiled (local: ${localGap.toFixed(0)} ms)`);
    // Walk both: forced text, masks, and the first allowed token each step.
    const a = new Uint32Array(16);
    const b = new Uint32Array(16);
    for (let step = 0; step < 40 && !local!.terminated; step++) {
      assertEquals(remote!.forced(), local!.forced(), `forced at step ${step}`);
      assertEquals(remote!.terminated, local!.terminated);
      if (local!.terminated) break;
      remote!.fillMask(a, 0);
      local!.fillMask(b, 0);
      assertEquals([...a], [...b], `mask at step ${step}`);
      const allowed: number[] = [];
      for (let id = 0; id < 512; id++) if (b[id >> 5] & (1 << (id & 31))) allowed.push(id);
      assert(allowed.length > 0);
      const pick = allowed[(step * 7) % allowed.length];
      assertEquals(remote!.accept(pick), local!.accept(pick), `accept ${pick}`);
      const rejected = [...Array(512).keys()].find((id) => !(b[id >> 5] & (1 << (id & 31))));
      if (rejected !== undefined) assertEquals(remote!.accept(rejected), false);
    }
    remote!.dispose();
    local!.dispose();
  } finally {
    grammar.close();
  }
});
