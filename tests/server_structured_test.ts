/**
 * Structured outputs and tool calling through serve.ts with the official `openai` client:
 * `response_format` (json_schema, json_object) and vLLM's `guided_*` on completions and chat,
 * streaming and not, greedy and sampled, mixed with unconstrained requests that must keep their
 * solo outputs; `tools` with `tool_choice` "required" and named (valid calls, `tool_calls`
 * finish, `delta.tool_calls` in streams); tools rendered through the chat template exactly as
 * transformers does; specs that cannot be enforced answered 400 naming the parameter.
 */
import { test } from "./helpers/test.ts";
import OpenAI from "openai";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { testServer } from "./helpers/server.ts";
import { stubServer } from "./helpers/stub_engine.ts";
import { assertValidCall, assertValidJson, SCHEMAS, TOOLS } from "./helpers/structured.ts";
import type { ChatMessage, ChatTool } from "../src/server/chat_template.ts";

const PROMPT = "Once upon a time, there was a little girl named Lily. She";
const OPENAI_TOOLS = TOOLS.map((f) => ({ type: "function" as const, function: f }));
// deno-lint-ignore no-explicit-any
type Any = any;

/** Concatenates a completion stream: text, finish reason. */
async function readCompletionStream(stream: AsyncIterable<OpenAI.Completion>): Promise<{ text: string; finish: string | null }> {
  let text = "";
  let finish: string | null = null;
  for await (const c of stream) {
    for (const ch of c.choices) {
      text += ch.text;
      finish = ch.finish_reason ?? finish;
    }
  }
  return { text, finish };
}

/** Concatenates a chat stream: content, tool calls rebuilt from `delta.tool_calls`, finish. */
async function readChatStream(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  let content = "";
  let finish: string | null = null;
  const calls: { id: string; name: string; arguments: string }[] = [];
  for await (const c of stream) {
    for (const ch of c.choices) {
      content += ch.delta.content ?? "";
      for (const t of ch.delta.tool_calls ?? []) {
        const call = (calls[t.index] ??= { id: "", name: "", arguments: "" });
        if (t.id) call.id = t.id;
        if (t.function?.name) call.name += t.function.name;
        call.arguments += t.function?.arguments ?? "";
      }
      finish = ch.finish_reason ?? finish;
    }
  }
  return { content, calls, finish };
}

test("server structured: every schema validates on completions (stories260K), streaming and not, greedy and sampled, beside unconstrained requests that keep their solo text", async () => {
  const s = await testServer("stories260K", { maxSeqs: 32 });
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const free = Array.from({ length: 4 }, (_, i) => ({
      model: "stories260K",
      prompt: PROMPT.slice(0, 12 + 9 * i),
      max_tokens: 16 + 8 * i,
      ...(i % 2 ? { temperature: 0.9, seed: 70 + i } : { temperature: 0 }),
    }));
    const solo: string[] = [];
    for (const r of free) solo.push((await client.completions.create(r)).choices[0].text);
    const jobs: Promise<void>[] = [];
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      for (const stream of [false, true]) {
        for (const sampling of [{ temperature: 0 }, { temperature: 1, seed: 11 }]) {
          const what = `${name} stream=${stream} t=${sampling.temperature}`;
          // vLLM's guided_json for half of them, response_format for the others.
          const constraint = stream
            ? { guided_json: schema }
            : { response_format: { type: "json_schema", json_schema: { name, schema, strict: true } } };
          const body = { model: "stories260K", prompt: PROMPT, max_tokens: 200, ...sampling, ...constraint } as Any;
          jobs.push((async () => {
            const { text, finish } = stream
              ? await readCompletionStream(await client.completions.create({ ...body, stream: true }) as Any)
              : await client.completions.create(body).then((c) => ({ text: c.choices[0].text, finish: c.choices[0].finish_reason }));
            assertEquals(finish, "stop", `${what}: ${JSON.stringify(text)}`);
            assertValidJson(text, schema, what);
          })());
        }
      }
    }
    const mixed = free.map((r) => client.completions.create(r).then((c) => c.choices[0].text));
    await Promise.all(jobs);
    assertEquals(await Promise.all(mixed), solo, "unconstrained requests beside constrained ones");
  } finally {
    await s.close();
  }
});

test("server structured: chat response_format (json_schema, json_object) and guided_choice/regex/grammar on qwen2-tools-tiny", async () => {
  const s = await testServer("qwen2-tools-tiny");
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "Describe a user as JSON." }];
    await Promise.all(Object.entries(SCHEMAS).flatMap(([name, schema]) =>
      [false, true].map(async (stream) => {
        const body = {
          model: "qwen2-tools-tiny",
          messages,
          max_tokens: 200,
          temperature: 1,
          seed: 5,
          response_format: { type: "json_schema" as const, json_schema: { name, schema } },
        };
        const what = `chat ${name} stream=${stream}`;
        if (stream) {
          const r = await readChatStream(await client.chat.completions.create({ ...body, stream: true }) as Any);
          assertEquals(r.finish, "stop", what);
          assertValidJson(r.content, schema, what);
        } else {
          const r = await client.chat.completions.create(body);
          assertEquals(r.choices[0].finish_reason, "stop", what);
          assertValidJson(r.choices[0].message.content!, schema, what);
        }
      })
    ));
    // Loosely enforced parts of a schema come back as warnings (a non-standard field).
    const warned = await client.chat.completions.create({
      model: "qwen2-tools-tiny",
      messages,
      max_tokens: 60,
      response_format: {
        type: "json_schema",
        json_schema: { name: "w", schema: { type: "object", properties: { to: { type: "string", format: "email", maxLength: 6 } }, required: ["to"] } },
      },
    }) as Any;
    assert(warned.warnings?.some((w: string) => w.includes("email")), JSON.stringify(warned));
    const obj = await client.chat.completions.create({ model: "qwen2-tools-tiny", messages, max_tokens: 40, temperature: 0, response_format: { type: "json_object" } });
    assert(obj.choices[0].message.content!.startsWith("{"), obj.choices[0].message.content!);
    const choice = await client.chat.completions.create({ model: "qwen2-tools-tiny", messages, max_tokens: 8, guided_choice: ["alpha", "beta"] } as Any);
    assert(["alpha", "beta"].includes(choice.choices[0].message.content!), choice.choices[0].message.content!);
    const regex = await client.chat.completions.create({ model: "qwen2-tools-tiny", messages, max_tokens: 20, seed: 1, guided_regex: "[0-9]{3}-[a-z]{2}" } as Any);
    assert(/^[0-9]{3}-[a-z]{2}$/.test(regex.choices[0].message.content!), regex.choices[0].message.content!);
    const grammar = await client.chat.completions.create({ model: "qwen2-tools-tiny", messages, max_tokens: 20, guided_grammar: 'root ::= "x" [0-9] "y"' } as Any);
    assert(/^x[0-9]y$/.test(grammar.choices[0].message.content!), grammar.choices[0].message.content!);
  } finally {
    await s.close();
  }
});

test("server structured: tool_choice required and named always give valid calls, streamed as delta.tool_calls", async () => {
  const s = await testServer("qwen2-tools-tiny");
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user" as const, content: "Add 2 and 3, and tell me the weather in Oslo." }];
    const jobs: Promise<void>[] = [];
    for (const seed of [1, 2, 3, 4]) {
      for (const tool_choice of ["required", { type: "function", function: { name: "get_weather" } }] as const) {
        const named = typeof tool_choice === "object";
        const what = `seed ${seed} ${named ? "named" : "required"}`;
        const body = {
          model: "qwen2-tools-tiny",
          messages,
          tools: OPENAI_TOOLS,
          tool_choice,
          parallel_tool_calls: named ? undefined : false,
          max_tokens: 120,
          temperature: seed === 1 ? 0 : 1,
          seed,
        } as Any;
        jobs.push((async () => {
          const r = await client.chat.completions.create(body) as OpenAI.ChatCompletion;
          const m = r.choices[0].message;
          assertEquals(r.choices[0].finish_reason, "tool_calls", `${what}: ${JSON.stringify(m)}`);
          assertEquals(m.content, null, `${what}: nothing but the call`);
          assertEquals(m.tool_calls?.length, 1, what);
          const call = m.tool_calls![0] as OpenAI.ChatCompletionMessageToolCall;
          assertEquals(call.type, "function");
          assert(call.id.startsWith("call_"), call.id);
          if (named) assertEquals(call.function.name, "get_weather");
          assertValidCall(call.function, TOOLS, what);
          // The same request streamed: the deltas rebuild the same call.
          const streamed = await readChatStream(await client.chat.completions.create({ ...body, stream: true }) as Any);
          assertEquals(streamed.finish, "tool_calls", what);
          assertEquals(streamed.content, "");
          assertEquals(streamed.calls.map((c) => [c.name, c.arguments]), [[call.function.name, call.function.arguments]], what);
          assert(streamed.calls[0].id.startsWith("call_"));
        })());
      }
    }
    // Parallel calls allowed: every complete call validates (the tiny model may run to max_tokens).
    jobs.push((async () => {
      const r = await client.chat.completions.create({ model: "qwen2-tools-tiny", messages, tools: OPENAI_TOOLS, tool_choice: "required", max_tokens: 160, temperature: 1, seed: 9 });
      const calls = r.choices[0].message.tool_calls ?? [];
      assert(calls.length >= 1, JSON.stringify(r.choices[0]));
      for (const c of calls as OpenAI.ChatCompletionMessageToolCall[]) {
        if (c.function.arguments.endsWith("}")) assertValidCall(c.function, TOOLS, "parallel");
      }
    })());
    await Promise.all(jobs);
  } finally {
    await s.close();
  }
});

test("server structured: specs that cannot be enforced get a 400 naming the parameter", async () => {
  const s = await stubServer({}, "qwen2-tools-tiny", { maxContext: 2048 });
  const real = await testServer("stories260K");
  try {
    const chat = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const completions = new OpenAI({ baseURL: `${real.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const messages = [{ role: "user", content: "hi" }];
    const tool = (parameters: unknown) => [{ type: "function", function: { name: "f", parameters } }];
    const cases: [OpenAI, Record<string, unknown>, string, string | null][] = [
      // Compiled in the probe Worker of the real engine.
      [completions, { prompt: "x", guided_json: { type: "string", pattern: "([a-" } }, "guided_json", "invalid_grammar"],
      [completions, { prompt: "x", guided_regex: "(unclosed" }, "guided_regex", "invalid_grammar"],
      [completions, { prompt: "x", guided_grammar: "root ::= nowhere" }, "guided_grammar", "invalid_grammar"],
      [completions, { prompt: "x", response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: {} } } } }, "response_format", "invalid_grammar"],
      [completions, { prompt: "x", tools: tool({ type: "object" }) }, "tools", "unknown_parameter"],
      // Shapes and the static check, at the server's validation (a stub engine behind it).
      [chat, { messages, response_format: { type: "yaml" } }, "response_format", null],
      [chat, { messages, guided_json: { type: "object", properties: { a: { type: "integer", multipleOf: 3 } } } }, "guided_json", "invalid_grammar"],
      [chat, { messages, tools: tool({ type: "object", properties: { a: { not: {} } } }), tool_choice: "required" }, "tools", "invalid_grammar"],
      [chat, { messages, tool_choice: "required" }, "tool_choice", null],
      [chat, { messages, tools: tool({}), tool_choice: { type: "function", function: { name: "g" } } }, "tool_choice", null],
      [chat, { messages, tools: tool({}), tool_choice: "required", response_format: { type: "json_object" } }, "tool_choice", null],
      [chat, { messages, tools: [{ type: "function", function: { name: "bad name" } }] }, "tools[0].function.name", null],
    ];
    for (const [client, body, param, code] of cases) {
      const model = client === chat ? "qwen2-tools-tiny" : "stories260K";
      let err: Any = null;
      try {
        if (body.messages) await client.chat.completions.create({ model, max_tokens: 4, ...body } as Any);
        else await client.completions.create({ model, max_tokens: 4, ...body } as Any);
      } catch (e) {
        err = e;
      }
      assert(err, `${JSON.stringify(body)}: accepted`);
      assertEquals([err.status, err.param, err.code], [400, param, code], `${JSON.stringify(body)}: ${err.message}`);
    }
    // The server still answers after all of that.
    const ok = await completions.completions.create({ model: "stories260K", prompt: "x", max_tokens: 3, guided_choice: ["yes", "no"] } as Any);
    assert(["yes", "no"].includes(ok.choices[0].text));
  } finally {
    await s.close();
    await real.close();
  }
});

test("server structured: tools and tool turns reach the chat template exactly as transformers renders them", async () => {
  const s = await stubServer({}, "qwen2-tools-tiny", { maxContext: 2048 });
  try {
    const tokenizer = await Tokenizer.load(modelDir("qwen2-tools-tiny"));
    const golden = (await loadGolden("qwen2-tools-tiny")).chat as unknown as {
      messages: ChatMessage[];
      tools?: ChatTool[];
      rendered: string;
    }[];
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0 });
    assert(golden.some((c) => c.tools) && golden.some((c) => c.messages.some((m) => m.tool_calls)));
    for (const c of golden) {
      // As an OpenAI client sends them: arguments as JSON strings, content null beside calls.
      const messages = c.messages.map((m) =>
        m.tool_calls
          ? {
            ...m,
            content: m.content || null,
            tool_calls: m.tool_calls.map((t) => ({ ...t, function: { ...t.function, arguments: JSON.stringify(t.function.arguments) } })),
          }
          : m
      );
      await client.chat.completions.create({ model: "qwen2-tools-tiny", messages: messages as Any, ...(c.tools ? { tools: c.tools as Any } : {}), max_tokens: 1 });
      assertEquals(
        tokenizer.decode(s.engine.prompts.at(-1)!),
        tokenizer.decode(tokenizer.encode(c.rendered, { addSpecialTokens: false })),
        JSON.stringify(c.messages),
      );
      assertEquals(s.engine.prompts.at(-1), tokenizer.encode(c.rendered, { addSpecialTokens: false }));
    }
  } finally {
    await s.close();
  }
});

test("server structured: deltas that render nothing (part of a character) do not stall a stream", async () => {
  const s = await stubServer({}, "qwen2-tools-tiny", { maxContext: 2048 });
  try {
    // Every other delta is empty, as when a character spans byte tokens.
    const inner = s.engine.stream.bind(s.engine);
    s.engine.stream = (options) =>
      (async function* () {
        for await (const d of inner(options)) {
          if (!d.finishReason) yield { ...d, text: "" };
          yield d;
        }
      })();
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused", maxRetries: 0, timeout: 10_000 });
    // A stalled stream fails by its deadline rather than hanging the test.
    const r = await readChatStream(
      await client.chat.completions.create({ model: "qwen2-tools-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 5, stream: true }, {
        signal: AbortSignal.timeout(10_000),
      }) as Any,
    );
    assertEquals(r.finish, "length");
    const c = await readCompletionStream(
      await client.completions.create({ model: "qwen2-tools-tiny", prompt: "hi", max_tokens: 5, stream: true }, { signal: AbortSignal.timeout(10_000) }) as Any,
    );
    assertEquals(c.finish, "length");
  } finally {
    await s.close();
  }
});
