/**
 * `deno run -A bench/grammar.ts [--tokenizer DIR]... [--json PATH]` (or `bun run bench/grammar.ts`):
 * the CPU cost of constrained decoding per token. For each vocabulary (stories260K's 512
 * tokens, a synthetic 49,152-token byte-level vocabulary with SmolLM2's size, and any
 * tokenizer directory given) and each grammar, it compiles the grammar, then walks a matcher
 * to termination picking random allowed tokens (seeded), timing `fillNextTokenBitmask` and
 * `acceptToken` separately. Prints a markdown table; the numbers are per sequence and step,
 * on this thread, with whatever else the machine runs at the time.
 * @module
 */
import process from "node:process";
import { Rng } from "./rng.ts";
import { byteLevelTokenizerJson } from "./byte_level_tokenizer.ts";
import { summarize } from "./stats.ts";
import { allowedIds } from "../src/grammar/bitmask.ts";
import { GrammarCompiler } from "../src/grammar/grammar_compiler.ts";
import type { GrammarSpec } from "../src/grammar/spec.ts";
import { buildVocabulary, byteLevelChars, type Vocabulary } from "../src/grammar/vocabulary.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { readTextFile, writeFile } from "../src/runtime/runtime.ts";

const SPECS: Record<string, GrammarSpec> = {
  "json_schema (nested, enums, ranges, pattern)": {
    type: "json_schema",
    schema: {
      type: "object",
      properties: {
        user: {
          type: "object",
          properties: {
            name: { type: "string", maxLength: 12 },
            age: { type: "integer", minimum: 0, maximum: 120 },
          },
          required: ["name", "age"],
        },
        color: { enum: ["red", "green", "blue"] },
        code: { type: "string", pattern: "^[A-Z]{3}-[0-9]{2}$" },
        tags: { type: "array", items: { type: "string" }, maxItems: 3 },
        price: { type: "number", minimum: 0, maximum: 100 },
      },
      required: ["user", "color", "code", "tags", "price"],
    },
  },
  "json_object": { type: "json_object" },
  "tool_calls required (hermes, 3 tools)": {
    type: "tool_calls",
    format: "hermes",
    choice: "required",
    tools: [
      {
        name: "get_weather",
        parameters: {
          type: "object",
          properties: { city: { type: "string" }, unit: { enum: ["c", "f"] } },
          required: ["city"],
        },
      },
      {
        name: "add",
        parameters: {
          type: "object",
          properties: { a: { type: "integer" }, b: { type: "integer" } },
          required: ["a", "b"],
        },
      },
      {
        name: "search",
        parameters: {
          type: "object",
          properties: {
            query: { type: "string" },
            limit: { type: "integer", minimum: 1, maximum: 50 },
          },
          required: ["query"],
        },
      },
    ],
  },
};

/** A byte-level vocabulary of SmolLM2's size (49,152): 256 byte characters, specials, and seeded word pieces. */
function syntheticVocabulary(
  size = 49152,
): { tokenizer: Tokenizer; json: Record<string, unknown> } {
  const rng = new Rng(42);
  const vocab: Record<string, number> = {};
  let n = 0;
  const add = (piece: string) => {
    if (!(piece in vocab)) vocab[piece] = n++;
  };
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  specials.forEach(add);
  byteLevelChars().forEach(add);
  ['{"', '"}', '":', '",', '": "', ', "', '"]', "12", "Ġ{", 'Ġ"', "Ġ[", "ĊĠĠ"].forEach(add);
  const letters = "eeeeettttaaaoooiiinnnsssrrhhlldcumfpgwybvkxjqz";
  while (n < size) {
    const len = 1 + Math.floor(rng.next() * rng.next() * 9);
    let w = rng.next() < 0.55 ? "Ġ" : "";
    if (rng.next() < 0.1) w += String.fromCharCode(65 + Math.floor(rng.next() * 26));
    for (let i = 0; i < len; i++) w += letters[Math.floor(rng.next() * letters.length)];
    add(w);
  }
  const json = byteLevelTokenizerJson(vocab, [], specials);
  return {
    tokenizer: new Tokenizer({
      tokenizer: json,
      config: { eos_token: "<|im_end|>", bos_token: "<|im_start|>" },
    }),
    json,
  };
}

async function loadDir(
  dir: string,
): Promise<{ tokenizer: Tokenizer; json: Record<string, unknown> }> {
  return {
    tokenizer: await Tokenizer.load(dir),
    json: JSON.parse(await readTextFile(`${dir}/tokenizer.json`)),
  };
}

/** One row of the result. */
interface Row {
  vocabulary: string;
  vocabSize: number;
  grammar: string;
  compileMs: number;
  steps: number;
  fillUs: { mean: number; p50: number; p99: number };
  acceptUs: { mean: number; p50: number; p99: number };
}

/** Walks matchers to termination with random allowed tokens, timing each call. */
async function measure(
  vocabulary: Vocabulary,
  name: string,
  compiler: GrammarCompiler,
  label: string,
  spec: GrammarSpec,
): Promise<Row> {
  const t0 = performance.now();
  const grammar = await compiler.compile(spec);
  const compileMs = performance.now() - t0;
  const fill: number[] = [];
  const accept: number[] = [];
  const mask = new Uint32Array(compiler.maskWords);
  const rng = new Rng(7);
  const stop = new Set(vocabulary.stopTokenIds);
  for (let run = 0; run < 5; run++) {
    const m = await grammar.createMatcher();
    for (let step = 0; step < 300 && !m.isTerminated(); step++) {
      const a = performance.now();
      m.fillNextTokenBitmask(mask);
      const b = performance.now();
      const allowed = allowedIds(mask, m.vocabSize);
      // Mostly random; past 150 steps prefer the stop token and short closing pieces to end.
      let id = allowed[Math.floor(rng.next() * allowed.length)];
      if (step > 150 || rng.next() < 0.2) {
        id = allowed.find((x) => stop.has(x)) ?? allowed.find((x) =>
          /^["}\]]/.test(vocabulary.encoded[x])
        ) ?? id;
      }
      const c = performance.now();
      if (!m.acceptToken(id)) throw new Error(`token ${id} rejected`);
      accept.push((performance.now() - c) * 1000);
      fill.push((b - a) * 1000);
    }
    m.dispose();
  }
  const pick = (xs: number[]) => {
    const s = summarize(xs);
    return { mean: s.mean, p50: s.p50, p99: s.p99 };
  };
  return {
    vocabulary: name,
    vocabSize: vocabulary.vocabSize,
    grammar: label,
    compileMs,
    steps: fill.length,
    fillUs: pick(fill),
    acceptUs: pick(accept),
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const dirs: string[] = [];
  let jsonOut: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--tokenizer") dirs.push(argv[++i]);
    else if (argv[i] === "--json") jsonOut = argv[++i];
  }
  const sources: [string, { tokenizer: Tokenizer; json: Record<string, unknown> }][] = [
    [
      "stories260K",
      await loadDir(new URL("../tests/fixtures/models/stories260K", import.meta.url).pathname),
    ],
    ["synthetic byte-level 49152", syntheticVocabulary()],
    ...await Promise.all(
      dirs.map(async (
        d,
      ): Promise<[string, { tokenizer: Tokenizer; json: Record<string, unknown> }]> => [
        d,
        await loadDir(d),
      ]),
    ),
  ];
  const rows: Row[] = [];
  for (const [name, src] of sources) {
    const vocabulary = buildVocabulary(src.tokenizer, { tokenizerJson: src.json });
    const t0 = performance.now();
    const compiler = await GrammarCompiler.create(vocabulary, { probe: false });
    console.error(
      `${name}: ${vocabulary.vocabSize} tokens (${vocabulary.vocabType}), compiler ready in ${
        (performance.now() - t0).toFixed(0)
      } ms`,
    );
    for (const [label, spec] of Object.entries(SPECS)) {
      rows.push(await measure(vocabulary, name, compiler, label, spec));
    }
    compiler.close();
  }
  const f = (x: number) => x.toFixed(1);
  console.log(
    "| vocabulary | grammar | compile ms | steps | fill µs mean / p50 / p99 | accept µs mean / p50 / p99 |",
  );
  console.log("|---|---|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.vocabulary} (${r.vocabSize}) | ${r.grammar} | ${f(r.compileMs)} | ${r.steps} | ${
        f(r.fillUs.mean)
      } / ${f(r.fillUs.p50)} / ${f(r.fillUs.p99)} | ${f(r.acceptUs.mean)} / ${
        f(r.acceptUs.p50)
      } / ${f(r.acceptUs.p99)} |`,
    );
  }
  if (jsonOut) {
    await writeFile(jsonOut, JSON.stringify({ runtime: process.versions, rows }, null, 2));
  }
}

await main();
