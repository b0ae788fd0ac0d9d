/**
 * What a plain completion and a small-schema request see while hostile schemas compile
 * (issue 19, item 10): latencies idle, then with 4 distinct hostile schemas in flight (each
 * past the deadline), with the two compile lanes (defaults) and with one lane (the fast lane
 * off: every spec in one queue, as before). Also a refused schema's first and repeated answer,
 * and the worst plain completion while a schema that compiles in seconds (under the deadline)
 * is compiled for the engine: in a grammar host Worker (default) or on the engine's thread.
 *
 *   deno run -A bench/grammar_compile_dos.ts [model dir] [deadline ms]
 * @module
 */
import { createEngine, type EngineClient } from "../mod.ts";

const model = Deno.args[0] ?? "tests/fixtures/models/stories260K";
const deadlineMs = Number(Deno.args[1] ?? 3000);
let nonce = 0;

function hostile(): Record<string, unknown> {
  const tag = `h${nonce++}_`;
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 200; i++) {
    properties[`${tag}${i}`] = { type: "array", items: { type: "string", maxLength: 40 }, maxItems: 40 };
  }
  return { type: "object", properties };
}

/** A small schema never seen before (so its compile is part of what is measured). */
const small = () => ({ type: "object", properties: { [`k${nonce++}`]: { type: "boolean" } }, additionalProperties: false });

async function ms(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  try {
    await run();
  } catch { /* refused: still timed */ }
  return performance.now() - t0;
}

const plain = (e: EngineClient) => () => e.generate({ prompt: "Once", maxTokens: 4, temperature: 0 });
const schema = (e: EngineClient, s: unknown) => () =>
  e.generate({ prompt: "Once", maxTokens: 4, temperature: 0, responseFormat: { type: "json_schema", schema: s } as never });

async function measure(e: EngineClient): Promise<{ plain: number; small: number }> {
  const p: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < 5; i++) {
    p.push(await ms(plain(e)));
    s.push(await ms(schema(e, small())));
  }
  // The worst: the first requests wait behind whatever is queued, the later ones not.
  return { plain: Math.max(...p), small: Math.max(...s) };
}

async function run(label: string, fastLaneMs: number): Promise<void> {
  const e = await createEngine({ model, maxBatchTokens: 64, grammar: { compileTimeoutMs: deadlineMs, fastLaneMs } });
  try {
    await ms(schema(e, small())); // cold start of the grammar Workers
    const idle = await measure(e);
    const attacks = Array.from({ length: 4 }, () => ms(schema(e, hostile())));
    await new Promise((r) => setTimeout(r, 100));
    const busy = await measure(e);
    const attackMs = await Promise.all(attacks);
    const h = hostile();
    const first = await ms(schema(e, h));
    const repeat = await ms(schema(e, h));
    const f = (x: number) => `${x.toFixed(0)} ms`;
    console.log(
      `${label}: idle plain ${f(idle.plain)}, small ${f(idle.small)} | 4 hostile in flight: plain ${f(busy.plain)}, ` +
        `small ${f(busy.small)} (hostile answered in ${attackMs.map(f).join(", ")}) | refused schema: first ${f(first)}, repeat ${f(repeat)}`,
    );
  } finally {
    await e.close();
  }
}

/** A schema that compiles in seconds, under a 60 s deadline. */
function slowButPassing(): Record<string, unknown> {
  const properties: Record<string, unknown> = { [`id${nonce++}`]: { type: "boolean" } };
  for (let i = 0; i < 100; i++) properties[`s${i}`] = { type: "array", items: { type: "string", maxLength: 30 }, maxItems: 30 };
  return { type: "object", properties, additionalProperties: false };
}

async function underTheDeadline(label: string, grammarHostCompileMs?: number): Promise<void> {
  const e = await createEngine({ model, maxBatchTokens: 64, grammarHostCompileMs, grammar: { compileTimeoutMs: 60_000 } });
  try {
    await ms(schema(e, small()));
    let done = false;
    const slow = ms(schema(e, slowButPassing())).finally(() => (done = true));
    let worst = 0;
    let runs = 0;
    while (!done) {
      worst = Math.max(worst, await ms(plain(e)));
      runs++;
    }
    console.log(`${label}: schema answered in ${(await slow).toFixed(0)} ms; worst plain completion meanwhile ${worst.toFixed(0)} ms (of ${runs})`);
  } finally {
    await e.close();
  }
}

console.log(`${model}, deadline ${deadlineMs} ms, worst of 5 (plain and small alternate)`);
await run("two lanes (fast lane 500 ms)", 500);
await run("one lane", deadlineMs);
await underTheDeadline("compiled in a grammar host");
await underTheDeadline("compiled on the engine's thread", Infinity);
