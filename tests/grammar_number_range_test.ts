/**
 * Our numeric-range grammar (xgrammar 0.1.27's is wrong): for many bounds, every candidate
 * number string is accepted exactly when it is a JSON number of the right type in bounds.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { type NumberBounds, numberRangeEbnf } from "../src/grammar/number_range.ts";
import { loadXGrammar } from "../src/grammar/xgrammar.ts";

const CASES: NumberBounds[] = [
  { type: "integer", minimum: 3 },
  { type: "integer", minimum: 3, maximum: 250 },
  { type: "integer", minimum: -17, maximum: 4 },
  { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 10 },
  { type: "integer", maximum: -3 },
  { type: "integer", minimum: 2.5, maximum: 7.5 },
  { type: "integer", minimum: 0, maximum: 0 },
  { type: "integer", minimum: 95, maximum: 1005 },
  { type: "number", minimum: 0, maximum: 100 },
  { type: "number", minimum: -5, maximum: 5 },
  { type: "number", exclusiveMinimum: 0, maximum: 1 },
  { type: "number", minimum: 0.5 },
  { type: "number", maximum: 10 },
  { type: "number", minimum: -1.5, maximum: 20.25 },
  { type: "number", minimum: 0.25, maximum: 0.75 },
  { type: "number", exclusiveMinimum: -2.5, exclusiveMaximum: -0.5 },
  { type: "number", minimum: 0, exclusiveMaximum: 0.001 },
  { type: "number", minimum: 3, exclusiveMinimum: 2, maximum: 4, exclusiveMaximum: 9 },
  // Bounds whose digits collapse into classes (100-299, 10-199, -999..999, 0-9.999999).
  { type: "integer", minimum: 100, maximum: 299 },
  { type: "integer", minimum: 10, maximum: 199 },
  { type: "integer", minimum: 105, maximum: 990 },
  { type: "integer", minimum: -999, maximum: 999 },
  { type: "number", minimum: 0, maximum: 9.999999 },
  { type: "number", minimum: 1, exclusiveMaximum: 2 },
];

function candidates(): string[] {
  const out = new Set<string>();
  for (let i = -300; i <= 300; i++) {
    out.add(String(i));
    out.add((i / 8).toString());
    out.add((i / 7).toFixed(3));
    out.add((i / 100).toFixed(2));
    out.add((i / 10000).toFixed(4));
  }
  for (let i = 90; i <= 1010; i += 5) out.add(String(i));
  for (
    const s of [
      "-0",
      "00",
      "01",
      "1.",
      ".5",
      "1e3",
      "100.000001",
      "99.999999",
      "0.0009999",
      "0.001",
      "-0.0",
      "5.0000001",
      "1.0000000",
      "0.50",
      "-",
    ]
  ) out.add(s);
  return [...out];
}

/** Whether a string is a JSON number of the type in bounds, with at most 6 fraction digits. */
function expected(b: NumberBounds, c: string): boolean {
  if (!/^-?(0|[1-9][0-9]*)(\.[0-9]{1,6})?$/.test(c) || /^-0(\.0*)?$/.test(c)) return false;
  if (b.type === "integer" && c.includes(".")) return false;
  const v = Number(c);
  return (b.minimum === undefined || v >= b.minimum) &&
    (b.maximum === undefined || v <= b.maximum) &&
    (b.exclusiveMinimum === undefined || v > b.exclusiveMinimum) &&
    (b.exclusiveMaximum === undefined || v < b.exclusiveMaximum);
}

test("number range: accepts exactly the in-bounds numbers, for integers and numbers", async () => {
  const xg = await loadXGrammar();
  const info = await xg.TokenizerInfo.createTokenizerInfo([]);
  const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
  const cands = candidates();
  for (const b of CASES) {
    const compiled = await compiler.compileGrammar(`root ::= ${numberRangeEbnf(b)}`);
    const m = await xg.GrammarMatcher.createGrammarMatcher(compiled, undefined, true);
    let accepted = 0;
    for (const c of cands) {
      m.reset();
      const got = m._acceptString(c) && m.isTerminated();
      assertEquals(got, expected(b, c), `${JSON.stringify(b)} on ${c}`);
      if (got) accepted++;
    }
    assert(accepted > 0, `${JSON.stringify(b)} accepted nothing`);
    m.dispose();
  }
});

test("number range: empty or out-of-range bounds throw RangeError", () => {
  assertThrows(() => numberRangeEbnf({ type: "integer", minimum: 5, maximum: 4 }), RangeError);
  assertThrows(
    () => numberRangeEbnf({ type: "integer", exclusiveMinimum: 4, exclusiveMaximum: 5 }),
    RangeError,
  );
  assertThrows(
    () => numberRangeEbnf({ type: "number", exclusiveMinimum: 1, maximum: 1 }),
    RangeError,
  );
  assertThrows(() => numberRangeEbnf({ type: "number", minimum: 1e300 }), RangeError);
});

test("number range: the expression grows with the square of the digits, not exponentially", () => {
  // ±10^14 was a 2 MB grammar (80 s to compile at ±10^12 on a 512-token vocabulary).
  for (const type of ["integer", "number"] as const) {
    const ebnf = numberRangeEbnf({ type, minimum: -100000000000000, maximum: 100000000000000 });
    assert(ebnf.length < 4000, `${type}: ${ebnf.length} characters`);
    const odd = numberRangeEbnf({ type, minimum: -123456789012345, maximum: 987654321098765 });
    assert(odd.length < 8000, `${type}: ${odd.length} characters`);
  }
});
