/**
 * The tool_choice grammars, per format, with stories260K's tokenizer and a random picker:
 * "required" and a named function always yield calls the parser reads back, with arguments
 * valid against the function's parameters schema (ajv); "auto" leaves text free, but once a
 * call starts it must be a valid one.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { compilerFor, generate, spell, validator } from "./helpers/grammar.ts";
import type { ToolCallSpec } from "../src/grammar/spec.ts";
import { parseToolCalls } from "../src/grammar/tool_calls.ts";
import type { ToolCallFormat, ToolFunction } from "../src/grammar/tool_format.ts";

const TOOLS: ToolFunction[] = [
  {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 1, maxLength: 10 },
        unit: { type: "string", enum: ["c", "f"] },
      },
      required: ["city"],
    },
  },
  {
    name: "add",
    parameters: {
      type: "object",
      properties: { a: { type: "integer", minimum: -100, maximum: 100 }, b: { type: "integer" } },
      required: ["a", "b"],
    },
  },
  { name: "now" },
];
const FORMATS: ToolCallFormat[] = ["hermes", "llama3_json", "mistral"];
const SEEDS = [1, 2, 3, 4, 5, 6];

const validators = new Map(
  TOOLS.map((t) => [t.name, validator(t.parameters ?? { type: "object" })]),
);

function checkCalls(text: string, format: ToolCallFormat, allowed: string[], what: string): number {
  const parsed = parseToolCalls(text, format);
  for (const c of parsed.toolCalls) {
    assert(
      allowed.includes(c.name),
      `${what}: unexpected function ${c.name} in ${JSON.stringify(text)}`,
    );
    let args: unknown;
    try {
      args = JSON.parse(c.arguments);
    } catch {
      throw new Error(`${what}: arguments are not JSON: ${c.arguments}`);
    }
    const valid = validators.get(c.name)!;
    assert(
      valid(args),
      `${what}: ${c.arguments} fails ${c.name}'s schema: ${JSON.stringify(valid.errors)}`,
    );
  }
  return parsed.toolCalls.length;
}

for (const format of FORMATS) {
  test(`tool_choice ${format}: "required" yields one or more valid calls, and only calls`, async () => {
    const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
    for (const parallel of [true, false]) {
      const spec: ToolCallSpec = {
        type: "tool_calls",
        format,
        tools: TOOLS,
        choice: "required",
        parallel,
      };
      const g = await compiler.compile(spec);
      const names = new Set<string>();
      for (const seed of SEEDS) {
        const out = generate(await g.createMatcher(), tokenizer, tokenizer.eosTokenIds, {
          seed,
          maxSteps: 600,
        });
        const what = `${format} parallel=${parallel} seed ${seed}`;
        assert(out.terminated, `${what}: not terminated: ${out.text}`);
        const n = checkCalls(out.text, format, TOOLS.map((t) => t.name), what);
        assert(n >= 1, `${what}: no call in ${JSON.stringify(out.text)}`);
        if (!parallel) assertEquals(n, 1, `${what}: one call only`);
        assertEquals(parseToolCalls(out.text, format).content, "", `${what}: nothing but calls`);
        for (const c of parseToolCalls(out.text, format).toolCalls) names.add(c.name);
      }
      assert(
        names.size >= 2,
        `${format}: sampling should reach several functions, got ${[...names]}`,
      );
    }
  });

  test(`tool_choice ${format}: a named function yields exactly one call of it`, async () => {
    const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
    for (const name of ["add", "get_weather"]) {
      const g = await compiler.compile({
        type: "tool_calls",
        format,
        tools: TOOLS,
        choice: { name },
      });
      for (const seed of SEEDS) {
        const out = generate(await g.createMatcher(), tokenizer, tokenizer.eosTokenIds, {
          seed,
          maxSteps: 600,
        });
        const what = `${format} ${name} seed ${seed}`;
        assert(out.terminated, `${what}: not terminated: ${out.text}`);
        assertEquals(checkCalls(out.text, format, [name], what), 1, `${what}: ${out.text}`);
      }
    }
  });

  test(`tool_choice ${format}: "auto" leaves text free, and a started call must be valid`, async () => {
    const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
    const g = await compiler.compile({ type: "tool_calls", format, tools: TOOLS, choice: "auto" });
    // Free text: the mask allows every token (what the grammar leaves alone costs nothing).
    const m = await g.createMatcher();
    const mask = new Uint32Array(m.maskWords);
    for (const id of spell(tokenizer, "Hello there")) assert(m.acceptToken(id));
    m.fillNextTokenBitmask(mask);
    let allowed = 0;
    for (let id = 0; id < m.vocabSize; id++) if ((mask[id >>> 5] >>> (id & 31)) & 1) allowed++;
    assert(
      allowed > tokenizer.vocabSize - 130,
      `free text should allow (nearly) all tokens, allowed ${allowed}`,
    );
    // Once the trigger is out, the call is forced to be valid.
    const opening = {
      hermes: "Let me see. <tool_call>",
      llama3_json: '{"name": ',
      mistral: "Let me see. [TOOL_CALLS]",
      harmony: "<|channel|>commentary to=functions.",
    }[format];
    for (const seed of SEEDS) {
      const mm = await g.createMatcher();
      const prefix = spell(tokenizer, opening);
      for (const id of prefix) {
        assert(mm.acceptToken(id), `${format}: the opening ${opening} is allowed`);
      }
      const out = generate(mm, tokenizer, tokenizer.eosTokenIds, { seed, maxSteps: 600 });
      const text = tokenizer.decode([...prefix, ...out.ids], { skipSpecialTokens: true });
      const what = `${format} auto seed ${seed}`;
      assert(out.terminated, `${what}: not terminated: ${text}`);
      assert(
        checkCalls(text, format, TOOLS.map((t) => t.name), what) >= 1,
        `${what}: no call in ${JSON.stringify(text)}`,
      );
    }
  });
}
