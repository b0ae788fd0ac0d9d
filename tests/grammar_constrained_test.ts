/**
 * Constrained decoding without a model, on stories260K's tokenizer: tokens picked at random
 * (seeded) among those the mask allows, sometimes by a fake score, until the matcher
 * terminates; the text must then parse and validate (JSON schemas with ajv, regex, choice,
 * EBNF). Plus the compiler's cache and its typed errors.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { compilerFor, generate, spell, validator } from "./helpers/grammar.ts";
import { GrammarError } from "../src/grammar/errors.ts";
import type { JsonSchema } from "../src/grammar/spec.ts";

const SCHEMAS: Record<string, JsonSchema> = {
  nested: {
    type: "object",
    properties: {
      user: {
        type: "object",
        properties: {
          name: { type: "string", minLength: 1, maxLength: 12 },
          age: { type: "integer", minimum: 0, maximum: 120 },
        },
        required: ["name", "age"],
      },
      tags: { type: "array", items: { type: "string", maxLength: 6 }, minItems: 1, maxItems: 3 },
      active: { type: "boolean" },
    },
    required: ["user", "tags"],
  },
  enums: {
    type: "object",
    properties: {
      color: { enum: ["red", "green", "blue"] },
      size: { type: "string", enum: ["S", "M", "L"] },
      note: { type: ["string", "null"], maxLength: 10 },
      level: { const: 3 },
    },
    required: ["color", "size", "note", "level"],
  },
  numbers: {
    type: "object",
    properties: {
      price: { type: "number", minimum: 0, maximum: 100 },
      delta: { type: "number", exclusiveMinimum: -1, exclusiveMaximum: 1 },
      count: { type: "integer", minimum: 3 },
      offset: { type: "integer", minimum: -50, maximum: -10 },
      temp: { type: ["number", "null"], minimum: -40.5, maximum: 50 },
    },
    required: ["price", "delta", "count", "offset", "temp"],
  },
  patterns: {
    type: "object",
    properties: {
      code: { type: "string", pattern: "^[A-Z]{3}-[0-9]{2}$" },
      date: { type: "string", pattern: "^20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]$" },
      word: { type: "string", pattern: "^[a-z]+$" },
    },
    required: ["code", "date", "word"],
  },
  refs: {
    $defs: {
      item: {
        type: "object",
        properties: {
          id: { type: "integer", minimum: 1, maximum: 999 },
          kind: { anyOf: [{ const: "a" }, { type: "integer", minimum: 0, maximum: 9 }] },
        },
        required: ["id", "kind"],
      },
    },
    type: "array",
    items: { $ref: "#/$defs/item" },
    minItems: 1,
    maxItems: 4,
  },
  tuple: {
    type: "array",
    prefixItems: [{ type: "string", maxLength: 4 }, { type: "boolean" }, { type: "null" }],
    items: false,
  },
};

const SEEDS = [1, 2, 3, 4, 5];

for (const [name, schema] of Object.entries(SCHEMAS)) {
  test(`constrained json_schema ${name}: every sampled output parses and validates (ajv)`, async () => {
    const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
    const grammar = await compiler.compile({ type: "json_schema", schema });
    assertEquals(grammar.warnings, []);
    const valid = validator(schema);
    const outputs = new Set<string>();
    for (const seed of SEEDS) {
      for (const greedy of [0.3, 1]) {
        const m = await grammar.createMatcher();
        const out = generate(m, tokenizer, tokenizer.eosTokenIds, { seed, greedy });
        assert(
          out.terminated,
          `seed ${seed}: not terminated after ${out.ids.length} tokens: ${out.text}`,
        );
        let value: unknown;
        try {
          value = JSON.parse(out.text);
        } catch (e) {
          throw new Error(`seed ${seed}: not JSON: ${out.text} (${(e as Error).message})`);
        }
        assert(
          valid(value),
          `seed ${seed}: ${out.text} fails the schema: ${JSON.stringify(valid.errors)}`,
        );
        outputs.add(out.text);
        m.dispose();
      }
    }
    assert(outputs.size >= 3, `sampling should vary outputs, got ${[...outputs].join(" | ")}`);
  });
}

test("constrained json_object: any JSON object; json_schema strict:false allows listed extras", async () => {
  const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
  const obj = await compiler.compile({ type: "json_object" });
  const loose = {
    type: "object",
    properties: { a: { type: "integer" } },
    required: ["a"],
    additionalProperties: { type: "integer", minimum: 0, maximum: 9 },
  };
  const extras = await compiler.compile({ type: "json_schema", schema: loose, strict: false });
  const valid = validator(loose);
  for (const seed of SEEDS) {
    const o = generate(await obj.createMatcher(), tokenizer, tokenizer.eosTokenIds, { seed });
    assert(o.terminated, o.text);
    const v = JSON.parse(o.text);
    assert(typeof v === "object" && v !== null && !Array.isArray(v), o.text);
    const e = generate(await extras.createMatcher(), tokenizer, tokenizer.eosTokenIds, { seed });
    assert(e.terminated && valid(JSON.parse(e.text)), e.text);
  }
});

test("constrained regex, choice and EBNF: outputs match", async () => {
  const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
  const cases: [unknown, (s: string) => boolean][] = [
    [
      { type: "regex", pattern: "[A-Z]{2}[0-9]{1,3}( ok)?" },
      (s) => /^[A-Z]{2}[0-9]{1,3}( ok)?$/.test(s),
    ],
    [
      { type: "choice", choices: ["yes", "no", "maybe later", 'say "hi"\\'] },
      (s) => ["yes", "no", "maybe later", 'say "hi"\\'].includes(s),
    ],
    [
      {
        type: "ebnf",
        grammar: 'root ::= "(" num (op num)* ")"\nnum ::= [1-9] [0-9]?\nop ::= " + " | " - "',
      },
      (s) => /^\([1-9][0-9]?(( \+ | - )[1-9][0-9]?)*\)$/.test(s),
    ],
  ];
  for (const [spec, ok] of cases) {
    const g = await compiler.compile(spec);
    const seen = new Set<string>();
    for (const seed of [...SEEDS, 6, 7, 8]) {
      const out = generate(await g.createMatcher(), tokenizer, tokenizer.eosTokenIds, { seed });
      assert(
        out.terminated && ok(out.text),
        `${JSON.stringify(spec)}: ${JSON.stringify(out.text)}`,
      );
      seen.add(out.text);
    }
    assert(seen.size >= 2, `${JSON.stringify(spec)} always gave ${[...seen]}`);
  }
});

test("matcher: mask and acceptToken agree; rollback, reset, jump-forward, termination", async () => {
  const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
  const g = await compiler.compile({
    type: "json_schema",
    schema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  });
  const m = await g.createMatcher();
  // Everything the schema fixes is known before sampling.
  assertEquals(m.findJumpForwardString(), '{"name": "');
  const prefix = spell(tokenizer, '{"name": "');
  const mask = new Uint32Array(m.maskWords);
  for (const id of prefix) {
    m.fillNextTokenBitmask(mask);
    assert((mask[id >>> 5] >>> (id & 31)) & 1, `token ${id} must be allowed`);
    assert(m.acceptToken(id));
  }
  const brace = tokenizer.pieceToToken("}")!;
  assert(!m.acceptToken(brace), "a } inside the string's opening is rejected");
  m.rollback(prefix.length);
  assertEquals(m.findJumpForwardString(), '{"name": "');
  for (const id of spell(tokenizer, '{"name": "Al"}')) assert(m.acceptToken(id), `token ${id}`);
  m.fillNextTokenBitmask(mask);
  const allowed: number[] = [];
  for (let id = 0; id < m.vocabSize; id++) if ((mask[id >>> 5] >>> (id & 31)) & 1) allowed.push(id);
  assertEquals(allowed, tokenizer.eosTokenIds, "a complete value allows only the stop token");
  assert(!m.isTerminated());
  assert(m.acceptToken(tokenizer.eosTokenIds[0]));
  assert(m.isTerminated());
  m.reset();
  assert(!m.isTerminated());
  assertEquals(m.findJumpForwardString(), '{"name": "');
});

test("matcher: the UTF-8 guard masks byte tokens that would be ill-formed (surrogates, overlong)", async () => {
  const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
  const g = await compiler.compile({
    type: "json_schema",
    schema: { type: "string", maxLength: 3 },
  });
  const byte = (b: number) =>
    tokenizer.pieceToToken(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)!;
  const m = await g.createMatcher();
  assert(m.acceptToken(tokenizer.pieceToToken('"')!));
  const mask = new Uint32Array(m.maskWords);
  m.fillNextTokenBitmask(mask);
  const allowed = (id: number) => ((mask[id >>> 5] >>> (id & 31)) & 1) === 1;
  for (const b of [0xc0, 0xc1, 0xf5, 0xff, 0x80]) {
    assert(!allowed(byte(b)), `lead byte ${b.toString(16)}`);
  }
  assert(allowed(byte(0xed)) && allowed(byte(0xc3)));
  assert(m.acceptToken(byte(0xed)));
  m.fillNextTokenBitmask(mask);
  assert(!allowed(byte(0xa0)), "ED A0 starts a surrogate");
  assert(allowed(byte(0x9f)));
  assert(!m.acceptToken(byte(0xa0)), "acceptToken applies the guard too");
  assert(m.acceptToken(byte(0x9f)));
  m.fillNextTokenBitmask(mask);
  assert(!allowed(byte(0xed)), "inside a character, a new lead byte is ill-formed");
  assert(allowed(byte(0xbf)));
  assert(m.acceptToken(byte(0xbf)));
  m.rollback(3);
  m.fillNextTokenBitmask(mask);
  assert(allowed(byte(0xed)), "rollback restores the UTF-8 state");
});

test("compiler: one compile per spec (cache hits, key keeps property order), warnings reported", async () => {
  const { compiler } = await compilerFor("stories260K", { probe: false });
  const a = {
    type: "json_schema",
    schema: { type: "object", properties: { x: { type: "integer" }, y: { type: "integer" } } },
  };
  const b = {
    type: "json_schema",
    schema: { type: "object", properties: { y: { type: "integer" }, x: { type: "integer" } } },
  };
  const [g1, g2] = await Promise.all([compiler.compile(a), compiler.compile(a)]);
  assert(g1 === g2, "concurrent compiles of one spec share the result");
  assert((await compiler.compile(JSON.parse(JSON.stringify(a)))) === g1);
  assert((await compiler.compile(b)) !== g1, "property order is part of the grammar");
  assertEquals(compiler.cacheStats, { hits: 1, misses: 2, size: 2 });
  const w = await compiler.compile({
    type: "json_schema",
    schema: { oneOf: [{ type: "integer" }, { type: "string", format: "color" }], "x-extra": 1 },
  });
  assertEquals(w.warnings.length, 3, w.warnings.join("; "));
  assert(
    w.warnings.some((x) => x.includes("oneOf")) && w.warnings.some((x) => x.includes("format")) &&
      w.warnings.some((x) => x.includes("x-extra")),
  );
});

const BAD: [string, unknown, string, string][] = [
  ["not an object", "json", "invalid_spec", "must be an object"],
  ["unknown type", { type: "xml" }, "invalid_spec", "unknown grammar spec type"],
  ["empty choices", { type: "choice", choices: [] }, "invalid_spec", "choices"],
  [
    "multipleOf",
    { type: "json_schema", schema: { type: "integer", multipleOf: 5 } },
    "unsupported_schema",
    "multipleOf",
  ],
  [
    "not",
    {
      type: "json_schema",
      schema: { type: "object", properties: { a: { not: { type: "null" } } } },
    },
    "unsupported_schema",
    "/properties/a/not",
  ],
  [
    "uniqueItems",
    { type: "json_schema", schema: { type: "array", uniqueItems: true } },
    "unsupported_schema",
    "uniqueItems",
  ],
  [
    "allOf of two",
    { type: "json_schema", schema: { allOf: [{ type: "object" }, { required: [] }] } },
    "unsupported_schema",
    "allOf",
  ],
  [
    "remote $ref",
    { type: "json_schema", schema: { $ref: "https://example.com/s.json" } },
    "unsupported_schema",
    "references inside the schema",
  ],
  [
    "dangling $ref",
    { type: "json_schema", schema: { $ref: "#/$defs/missing" } },
    "invalid_schema",
    "does not resolve",
  ],
  [
    "keyword beside $ref",
    {
      type: "json_schema",
      schema: { $defs: { a: { type: "string" } }, $ref: "#/$defs/a", maxLength: 3 },
    },
    "unsupported_schema",
    "maxLength next to $ref",
  ],
  [
    "pattern with maxLength",
    { type: "json_schema", schema: { type: "string", pattern: "^a+$", maxLength: 3 } },
    "unsupported_schema",
    "next to pattern",
  ],
  [
    "minimum without type",
    { type: "json_schema", schema: { minimum: 3 } },
    "unsupported_schema",
    'without "type"',
  ],
  [
    "required not in properties",
    { type: "json_schema", schema: { type: "object", properties: { a: {} }, required: ["b"] } },
    "unsupported_schema",
    'required property "b"',
  ],
  [
    "property name needing escapes",
    { type: "json_schema", schema: { type: "object", properties: { 'a"b': { type: "string" } } } },
    "unsupported_schema",
    "needs JSON escapes",
  ],
  [
    "pattern with a quote",
    { type: "json_schema", schema: { type: "string", pattern: '^say "hi"$' } },
    "unsupported_schema",
    "patterns with quotes",
  ],
  [
    "enum value of the wrong type",
    { type: "json_schema", schema: { type: "string", enum: ["a", 1] } },
    "unsupported_schema",
    "does not have the type",
  ],
  [
    "draft-4 exclusiveMinimum",
    { type: "json_schema", schema: { type: "number", minimum: 1, exclusiveMinimum: true } },
    "unsupported_schema",
    "draft 4",
  ],
  [
    "empty numeric range",
    { type: "json_schema", schema: { type: "integer", minimum: 5, maximum: 1 } },
    "invalid_schema",
    "no number satisfies",
  ],
  [
    "bad type",
    { type: "json_schema", schema: { type: "float" } },
    "invalid_schema",
    "unknown type",
  ],
  [
    "negative maxLength",
    { type: "json_schema", schema: { type: "string", maxLength: -1 } },
    "invalid_schema",
    "maxLength",
  ],
  [
    "lookahead in pattern",
    { type: "json_schema", schema: { type: "string", pattern: "^(?!x)a$" } },
    "invalid_regex",
    "Lookahead",
  ],
  ["unclosed regex", { type: "regex", pattern: "(ab" }, "invalid_regex", "parenthesis"],
  [
    "undefined EBNF rule",
    { type: "ebnf", grammar: "root ::= missing" },
    "invalid_grammar",
    'Rule "missing" is not defined',
  ],
  ["EBNF syntax", { type: "ebnf", grammar: 'root ::= "a" |' }, "invalid_grammar", "EBNF"],
  [
    "deep nesting",
    {
      type: "json_schema",
      schema: JSON.parse(
        '{"type":"array","items":'.repeat(40) + '{"type":"null"}' + "}".repeat(40),
      ),
    },
    "spec_too_large",
    "deeper than 32",
  ],
  [
    "huge enum",
    { type: "json_schema", schema: { enum: Array.from({ length: 2000 }, (_, i) => i) } },
    "spec_too_large",
    "over the limit",
  ],
  [
    "tool with bad parameters",
    {
      type: "tool_calls",
      format: "hermes",
      tools: [{
        name: "f",
        parameters: { type: "object", properties: { n: { type: "integer", multipleOf: 2 } } },
      }],
      choice: "required",
    },
    "unsupported_schema",
    "tool f parameters",
  ],
  [
    "named tool not offered",
    { type: "tool_calls", format: "hermes", tools: [{ name: "f" }], choice: { name: "g" } },
    "invalid_spec",
    "not in tools",
  ],
];

test("compiler: specs that cannot be compiled give GrammarError with a code and a message naming the problem", async () => {
  for (const probe of [false, true]) {
    const { compiler } = await compilerFor("stories260K", { probe });
    try {
      for (const [what, spec, code, text] of BAD) {
        const e = await compiler.compile(spec).then(
          () => {
            throw new Error(`${what} (probe ${probe}): compiled, but should not`);
          },
          (err) => err,
        );
        assert(e instanceof GrammarError, `${what} (probe ${probe}): ${e}`);
        assertEquals(e.code, code, `${what} (probe ${probe}): ${e.message}`);
        assert(
          e.message.includes(text),
          `${what} (probe ${probe}): ${JSON.stringify(e.message)} should mention ${
            JSON.stringify(text)
          }`,
        );
      }
      // After all those failures (and xgrammar aborts), compiling still works.
      const g = await compiler.compile({ type: "choice", choices: ["ok"] });
      assertEquals(g.spec.type, "choice");
    } finally {
      compiler.close();
    }
  }
});

test("compiler: a compile over the deadline is cut off in the probe Worker (spec_too_large); the next compile works", async () => {
  // 150 ms: far below the heavy spec's second, far above a two-choice grammar's few ms even
  // on a loaded machine (20 ms cut the small one off too, once, under load).
  const { compiler } = await compilerFor("stories260K", { compileTimeoutMs: 150 });
  try {
    // Seconds to compile on this vocabulary (4 s on an idle 2-core machine): 60 alternatives of
    // bounded repetitions. 250 optional length-bounded strings took only 0.2-0.4 s on a quiet
    // machine, close enough to 150 ms that a fast CI machine compiled them within it.
    const heavy = "(" + Array.from({ length: 60 }, (_, i) => `[a-z]{1,${40 + i}}x${i}`).join("|") + ")";
    const e = await assertRejects(
      () => compiler.compile({ type: "regex", pattern: heavy }),
      GrammarError,
    );
    assertEquals(e.code, "spec_too_large");
    assert(e.message.includes("longer than 150 ms"), e.message);
    const g = await compiler.compile({ type: "choice", choices: ["a", "b"] });
    assertEquals(g.spec.type, "choice");
  } finally {
    compiler.close();
  }
});
