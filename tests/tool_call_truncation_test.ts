/**
 * Tool calls cut by the token limit (issue 19, items 4 and 13): a call the limit cut is not a
 * call. The answer is what OpenAI returns: the truncated text as content, `finish_reason`
 * "length", no `tool_calls`; streamed and not, the same. Also a tool whose `parameters` is not
 * an object schema is refused with 400, as OpenAI does.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { GrammarError } from "../src/grammar/errors.ts";
import { normalizeSpec } from "../src/grammar/spec.ts";
import { post, testServer } from "./helpers/server.ts";
import { TOOLS } from "./helpers/structured.ts";

const OPENAI_TOOLS = TOOLS.map((f) => ({ type: "function" as const, function: f }));

/** Content, calls and finish reason of an SSE chat stream. */
async function readStream(base: string, body: unknown) {
  const res = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...(body as object), stream: true }) });
  assertEquals(res.status, 200);
  let content = "";
  let finish: string | null = null;
  const calls: { name: string; arguments: string }[] = [];
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    for (const ch of JSON.parse(line.slice(6)).choices) {
      content += ch.delta.content ?? "";
      for (const t of ch.delta.tool_calls ?? []) {
        const call = (calls[t.index] ??= { name: "", arguments: "" });
        call.name += t.function?.name ?? "";
        call.arguments += t.function?.arguments ?? "";
      }
      finish = ch.finish_reason ?? finish;
    }
  }
  return { content, calls, finish };
}

test("tool calls cut by max_tokens: truncated text as content, finish length, no tool_calls; streamed the same", async () => {
  const s = await testServer("qwen2-tools-tiny");
  try {
    const messages = [{ role: "user", content: "Add 2 and 3." }];
    for (const max_tokens of [1, 6, 12, 20, 30, 45]) {
      const body = { model: "qwen2-tools-tiny", messages, tools: OPENAI_TOOLS, tool_choice: "required", max_tokens, temperature: 0 };
      const r = await post(`${s.base}/v1/chat/completions`, body);
      assertEquals(r.status, 200, JSON.stringify(r.json));
      const choice = r.json.choices[0];
      const what = `max_tokens ${max_tokens}: ${JSON.stringify(choice)}`;
      assertEquals(choice.finish_reason, "length", what);
      assertEquals(choice.message.tool_calls, undefined, what);
      assert(typeof choice.message.content === "string" && choice.message.content.length > 0, what);
      assertEquals(r.json.usage.completion_tokens, max_tokens, what);
      const streamed = await readStream(s.base, body);
      assertEquals(streamed, { content: choice.message.content, calls: [], finish: "length" }, what);
    }
    // A tool whose parameters are not an object schema: 400 naming it, with or without a grammar.
    for (const tool_choice of ["auto", "required"]) {
      for (const parameters of [{ type: "string" }, { type: ["object", "null"] }]) {
        const tools = [{ type: "function", function: { name: "f", parameters } }];
        const r = await post(`${s.base}/v1/chat/completions`, { model: "qwen2-tools-tiny", messages, tools, tool_choice, max_tokens: 4 });
        assertEquals([r.status, r.json.error?.param], [400, "tools[0].function.parameters"], JSON.stringify(r.json));
      }
    }
  } finally {
    await s.close();
  }
});

test("tool parameters that are not an object schema are refused by the library too", () => {
  assertThrows(() => normalizeSpec({ type: "tool_calls", format: "hermes", choice: "auto", tools: [{ name: "f", parameters: { type: "string" } }] }), GrammarError, 'type "object"');
  normalizeSpec({ type: "tool_calls", format: "hermes", choice: "auto", tools: [{ name: "f", parameters: { type: "object" } }, { name: "g", parameters: {} }] });
});
