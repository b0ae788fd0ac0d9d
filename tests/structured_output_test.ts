/**
 * Structured outputs and tool calls through the module API (`mod.ts`, engine in its Worker,
 * masks applied on the GPU): every output of a set of JSON schemas parses and validates
 * (ajv), greedy and sampled, with jump-forward and without (logprobs); constrained requests
 * leave the unconstrained ones in the same batch exactly as they are alone; tool choices
 * "required" and named yield valid calls; bad specs are refused with `invalid_grammar` before
 * the engine sees them.
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type GenerateOptions, InvalidRequestError, type ToolCall } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { assertValidCall, assertValidJson, SCHEMAS, TOOLS } from "./helpers/structured.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import * as sys from "./helpers/platform.ts";

const PROMPT = "Once upon a time, there was a little girl named Lily. She";

async function withEngine(model: string, fn: (engine: EngineClient) => Promise<void>): Promise<void> {
  const engine = await createEngine({ model: modelDir(model), maxBatchTokens: 128, maxSeqs: 16 });
  try {
    await fn(engine);
  } finally {
    await engine.close();
  }
}

test("structured output: every schema's outputs parse and validate, greedy and sampled, with and without jump-forward", async () => {
  await withEngine("stories260K", async (engine) => {
    const modes: [string, Partial<GenerateOptions>][] = [
      ["greedy", { temperature: 0 }],
      ["sampled", { temperature: 1, seed: 7 }],
      ["sampled top-p, logprobs (no jump-forward)", { temperature: 0.9, topP: 0.95, seed: 8, logprobs: 2 }],
    ];
    const jobs = Object.entries(SCHEMAS).flatMap(([name, schema]) =>
      modes.map(async ([mode, extra]) => {
        const r = await engine.generate({ prompt: PROMPT, maxTokens: 200, ...extra, responseFormat: { type: "json_schema", schema } });
        const what = `${name} ${mode}`;
        assertEquals(r.finishReason, "stop", `${what}: ${JSON.stringify(r.text)}`);
        assertValidJson(r.text, schema, what);
        if (extra.logprobs) {
          assertEquals(r.logprobs?.length, r.ids.length, `${what}: a logprob per token`);
          assert(r.logprobs!.every((l) => Number.isFinite(l.logprob) && l.top?.length === 2), `${what}: finite logprobs`);
        }
        return r;
      })
    );
    const results = await Promise.all(jobs);
    // Sampling explores: the sampled outputs are not all the greedy ones.
    const texts = new Set(results.map((r) => r.text));
    assert(texts.size > Object.keys(SCHEMAS).length, `outputs should vary by mode: ${texts.size}`);
  });
});

test("structured output: constrained and unconstrained requests share batches; the unconstrained equal their solo runs", async () => {
  await withEngine("stories260K", async (engine) => {
    const free: GenerateOptions[] = Array.from({ length: 6 }, (_, i) => ({
      prompt: PROMPT.slice(0, 10 + 7 * i),
      maxTokens: 20 + 9 * i,
      ignoreEos: true,
      ...(i % 2 ? { temperature: 0.8, seed: 40 + i } : {}),
    }));
    const solo: number[][] = [];
    for (const r of free) solo.push((await engine.generate(r)).ids);
    const constrained = Object.entries(SCHEMAS).map(([name, schema], i) => ({
      name,
      schema,
      options: { prompt: PROMPT, maxTokens: 200, temperature: i % 2, seed: i, responseFormat: { type: "json_schema" as const, schema } },
    }));
    const [mixed, outs] = await Promise.all([
      Promise.all(free.map((r) => engine.generate(r))),
      Promise.all(constrained.map((c) => engine.generate(c.options))),
    ]);
    mixed.forEach((r, i) => assertEquals(r.ids, solo[i], `unconstrained request ${i}`));
    outs.forEach((r, i) => assertValidJson(r.text, constrained[i].schema, constrained[i].name));
    // The same constrained request alone gives the same output (seeded, masks per row).
    const again = await engine.generate(constrained[1].options);
    assertEquals(again.ids, outs[1].ids);
  });
});

test("structured output: regex, choice, EBNF and json_object; n > 1 completions each valid", async () => {
  await withEngine("stories260K", async (engine) => {
    const regex = await engine.generate({ prompt: PROMPT, maxTokens: 40, temperature: 1, seed: 3, responseFormat: { type: "regex", pattern: "[a-z]{2,6}( [a-z]{2,6}){1,3}\\." } });
    assert(/^[a-z]{2,6}( [a-z]{2,6}){1,3}\.$/.test(regex.text), `regex: ${JSON.stringify(regex.text)}`);
    const choice = await engine.generate({ prompt: "Was she happy?", maxTokens: 10, responseFormat: { type: "choice", choices: ["yes", "no", "maybe not"] } });
    assert(["yes", "no", "maybe not"].includes(choice.text), `choice: ${choice.text}`);
    assertEquals(choice.finishReason, "stop");
    const ebnf = await engine.generate({
      prompt: PROMPT,
      maxTokens: 40,
      temperature: 1,
      seed: 4,
      responseFormat: { type: "ebnf", grammar: 'root ::= "(" num (" + " num){0,3} ")"\nnum ::= [1-9] [0-9]?' },
    });
    assert(/^\([1-9][0-9]?( \+ [1-9][0-9]?){0,3}\)$/.test(ebnf.text), `ebnf: ${ebnf.text}`);
    const obj = await engine.generate({ prompt: PROMPT, maxTokens: 60, temperature: 0, responseFormat: { type: "json_object" } });
    assert(obj.text.startsWith("{"), `json_object: ${obj.text}`);
    if (obj.finishReason === "stop") {
      const v = JSON.parse(obj.text);
      assert(typeof v === "object" && v !== null && !Array.isArray(v));
    }
    const many = await engine.generate({ prompt: PROMPT, maxTokens: 200, n: 3, temperature: 1, seed: 9, responseFormat: { type: "json_schema", schema: SCHEMAS.nested } });
    assertEquals(many.choices.length, 3);
    for (const c of many.choices) assertValidJson(c.text, SCHEMAS.nested, `n=3 choice ${c.index}`);
  });
});

test("structured output: tool choice required or named yields valid calls (toolCalls, finish reason tool_calls), streamed the same", async () => {
  await withEngine("qwen2-tools-tiny", async (engine) => {
    assertEquals(engine.toolCallFormat, "hermes");
    const prompt = "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n";
    for (const seed of [1, 2, 3]) {
      const one = await engine.generate({ prompt, maxTokens: 120, temperature: 1, seed, tools: TOOLS, toolChoice: "required", parallelToolCalls: false });
      assertEquals(one.finishReason, "tool_calls", JSON.stringify(one.text));
      assertEquals(one.toolCalls?.length, 1);
      assertEquals(one.text, "", "nothing but the call");
      assertValidCall(one.toolCalls![0], TOOLS, `required seed ${seed}`);
      assert(/^call_[A-Za-z0-9]{24}$/.test(one.toolCalls![0].id), one.toolCalls![0].id);
      const named = await engine.generate({ prompt, maxTokens: 120, temperature: 1, seed, tools: TOOLS, toolChoice: { name: "add" } });
      assertEquals(named.finishReason, "tool_calls");
      assertEquals(named.toolCalls?.map((c) => c.name), ["add"]);
      assertValidCall(named.toolCalls![0], TOOLS, `named seed ${seed}`);
    }
    // Parallel calls: every complete call validates.
    const many = await engine.generate({ prompt, maxTokens: 160, temperature: 1, seed: 5, tools: TOOLS, toolChoice: "required" });
    assert((many.toolCalls?.length ?? 0) >= 1, JSON.stringify(many));
    for (const c of many.toolCalls!) if (c.arguments.endsWith("}")) assertValidCall(c, TOOLS, "parallel");
    // Streaming: the deltas rebuild the same call (ids aside).
    const options = { prompt, maxTokens: 120, temperature: 1, seed: 2, tools: TOOLS, toolChoice: "required" as const, parallelToolCalls: false };
    const whole = await engine.generate(options);
    const calls: ToolCall[] = [];
    let finish = "";
    for await (const d of engine.stream(options)) {
      assertEquals(d.text, "");
      for (const t of d.toolCalls ?? []) {
        const c = (calls[t.index] ??= { id: "", name: "", arguments: "" });
        if (t.id) [c.id, c.name] = [t.id, t.function.name ?? ""];
        c.arguments += t.function.arguments ?? "";
      }
      if (d.finishReason) finish = d.finishReason;
    }
    assertEquals(finish, "tool_calls");
    assertEquals(calls.map((c) => [c.name, c.arguments]), whole.toolCalls!.map((c) => [c.name, c.arguments]));
    // "auto" parses whatever calls the free text holds; without any, plain text and "length"/"stop".
    const auto = await engine.generate({ prompt, maxTokens: 30, temperature: 0, tools: TOOLS });
    assert(auto.finishReason !== "tool_calls" || (auto.toolCalls?.length ?? 0) > 0);
  });
});

test("structured output: specs that cannot be enforced are refused before the engine, naming the option", async () => {
  await withEngine("stories260K", async (engine) => {
    const cases: [Partial<GenerateOptions>, string, string, string][] = [
      [{ responseFormat: { type: "json_schema", schema: { type: "object", not: { type: "null" } } } }, "responseFormat", "invalid_grammar", "not"],
      [{ responseFormat: { type: "json_schema", schema: { type: "string", pattern: "([a-" } } }, "responseFormat", "invalid_grammar", "regex"],
      [{ responseFormat: { type: "regex", pattern: "(unclosed" } }, "responseFormat", "invalid_grammar", "Regex"],
      [{ responseFormat: { type: "ebnf", grammar: "root ::= undefined_rule" } }, "responseFormat", "invalid_grammar", "undefined_rule"],
      [{ responseFormat: { type: "yaml" } as never }, "responseFormat", "invalid_request", "yaml"],
      [{ tools: TOOLS, toolChoice: "required" }, "tools", "invalid_request", "tool-call format"],
      [{ toolChoice: "required" }, "toolChoice", "invalid_request", "needs tools"],
    ];
    for (const [extra, param, code, words] of cases) {
      const e = await assertRejects(() => engine.generate({ prompt: "x", maxTokens: 4, ...extra }), InvalidRequestError);
      assertEquals([e.param, e.code], [param, code], e.message);
      assert(e.message.includes(words), `${e.message} should mention ${words}`);
    }
    // Loosely enforced parts are warnings, and the request runs.
    const r = await engine.generate({
      prompt: "x",
      maxTokens: 40,
      responseFormat: { type: "json_schema", schema: { type: "object", properties: { a: { type: "string", format: "email", maxLength: 5 } }, required: ["a"] } },
    });
    assert(r.warnings?.some((w) => w.includes("email")), JSON.stringify(r.warnings));
    // The engine still serves after all of that.
    assertEquals((await engine.generate({ prompt: "x", maxTokens: 3, ignoreEos: true })).ids.length, 3);
  });
});

test("structured output: a tool-call marker that is a special token (Mistral's [TOOL_CALLS]) is produced, kept in the text and parsed", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, { architectures: ["MistralForCausalLM"], model_type: "mistral", vocab_size: 544, max_position_embeddings: 512 });
    // [TOOL_CALLS] as Mistral's tokenizers have it: an added special token.
    const json = JSON.parse(await sys.readTextFile(`${dir}/tokenizer.json`));
    json.added_tokens.push({ id: 512, content: "[TOOL_CALLS]", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    await sys.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    const engine = await createEngine({ model: dir, maxBatchTokens: 64 });
    try {
      assertEquals(engine.toolCallFormat, "mistral");
      for (const seed of [1, 2]) {
        const r = await engine.generate({ prompt: "Weather?", maxTokens: 120, temperature: 1, seed, tools: TOOLS, toolChoice: "required", parallelToolCalls: false });
        // The grammar's opening text is forced, and the marker's longest token is the special one.
        assert(r.ids.includes(512), `the marker token: ${r.ids}`);
        assertEquals(r.finishReason, "tool_calls", JSON.stringify(r.text));
        assertEquals(r.toolCalls?.length, 1);
        assertValidCall(r.toolCalls![0], TOOLS, `seed ${seed}`);
        assert(/^[A-Za-z0-9]{9}$/.test(r.toolCalls![0].id), `mistral ids are 9 characters: ${r.toolCalls![0].id}`);
      }
      // Unconstrained output still drops special tokens from its text.
      const plain = await engine.generate({ prompt: [1, 512, 5], maxTokens: 2, ignoreEos: true });
      assert(!plain.text.includes("[TOOL_CALLS]"));
    } finally {
      await engine.close();
    }
  });
});
