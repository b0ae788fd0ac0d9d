/** OpenAI request fields to grammar specs: mapping, defaults, and 400-worthy errors naming the parameter. */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { GrammarError } from "../src/grammar/errors.ts";
import { structuredOptionsOf, structuredOutputOf } from "../src/grammar/openai_spec.ts";

const chat = { toolFormat: "hermes" as const, endpoint: "chat" as const };
const TOOL = {
  type: "function",
  function: { name: "f", parameters: { type: "object", properties: { a: { type: "integer" } } } },
};

test("openai spec: response_format and guided_* map to specs", () => {
  assertEquals(structuredOutputOf({}, chat), {
    spec: null,
    tools: undefined,
    toolChoice: "none",
    parseToolCalls: false,
  });
  assertEquals(structuredOutputOf({ response_format: { type: "text" } }, chat).spec, null);
  assertEquals(structuredOutputOf({ response_format: { type: "json_object" } }, chat).spec, {
    type: "json_object",
  });
  assertEquals(
    structuredOutputOf({
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "integer" }, strict: false },
      },
    }, chat).spec,
    { type: "json_schema", schema: { type: "integer" }, strict: false },
  );
  assertEquals(
    structuredOutputOf({ guided_json: '{"type": "string"}' }, { ...chat, endpoint: "completion" })
      .spec,
    { type: "json_schema", schema: { type: "string" }, strict: true },
  );
  assertEquals(structuredOutputOf({ guided_regex: "a+" }, chat).spec, {
    type: "regex",
    pattern: "a+",
  });
  assertEquals(structuredOutputOf({ guided_choice: ["a", "b"] }, chat).spec, {
    type: "choice",
    choices: ["a", "b"],
  });
  assertEquals(structuredOutputOf({ guided_grammar: 'root ::= "x"' }, chat).spec, {
    type: "ebnf",
    grammar: 'root ::= "x"',
  });
});

test("openai spec: tools and tool_choice", () => {
  const auto = structuredOutputOf({ tools: [TOOL] }, chat);
  assertEquals(auto.toolChoice, "auto");
  assertEquals(auto.spec, null, "auto is parsed, not constrained, by default");
  assert(auto.parseToolCalls && auto.tools?.length === 1);
  const constrained = structuredOutputOf({ tools: [TOOL] }, { ...chat, constrainAuto: true });
  assertEquals(constrained.spec?.type, "tool_calls");
  const req = structuredOutputOf({
    tools: [TOOL],
    tool_choice: "required",
    parallel_tool_calls: false,
  }, chat);
  assertEquals(req.spec, {
    type: "tool_calls",
    format: "hermes",
    tools: [TOOL.function],
    choice: "required",
    parallel: false,
  });
  const named = structuredOutputOf({
    tools: [TOOL],
    tool_choice: { type: "function", function: { name: "f" } },
  }, chat);
  assertEquals(named.spec, {
    type: "tool_calls",
    format: "hermes",
    tools: [TOOL.function],
    choice: { name: "f" },
    parallel: true,
  });
  const none = structuredOutputOf({ tools: [TOOL], tool_choice: "none" }, chat);
  assertEquals(
    [none.spec, none.parseToolCalls, none.tools?.length],
    [null, false, 1],
    "none still renders the tools, as vLLM does",
  );
  const both = structuredOutputOf(
    { tools: [TOOL], response_format: { type: "json_object" } },
    chat,
  );
  assertEquals(
    both.spec,
    { type: "json_object" },
    "auto with a response_format: the response_format constrains",
  );
});

test("openai spec: bad fields give GrammarError naming the parameter", () => {
  const cases: [Record<string, unknown>, string, "chat" | "completion"][] = [
    [{ response_format: { type: "yaml" } }, "response_format", "chat"],
    [
      { response_format: { type: "json_schema", json_schema: { schema: {} } } },
      "response_format",
      "chat",
    ],
    [{ guided_json: "{not json" }, "guided_json", "chat"],
    [{ guided_regex: "a", guided_choice: ["a"] }, "guided_choice", "chat"],
    [{ tool_choice: "required" }, "tool_choice", "chat"],
    [
      { tools: [TOOL], tool_choice: { type: "function", function: { name: "g" } } },
      "tool_choice",
      "chat",
    ],
    [{ tools: [TOOL], tool_choice: "required", guided_regex: "a" }, "tool_choice", "chat"],
    [
      { tools: [{ type: "function", function: { name: "bad name!" } }] },
      "tools[0].function.name",
      "chat",
    ],
    [{ tools: [TOOL] }, "tools", "completion"],
  ];
  for (const [body, param, endpoint] of cases) {
    const e = assertThrows(() => structuredOutputOf(body, { ...chat, endpoint }), GrammarError);
    assertEquals(
      [e.code, e.param],
      ["invalid_spec", param],
      `${JSON.stringify(body)}: ${e.message}`,
    );
  }
  const e = assertThrows(
    () => structuredOutputOf({ tools: [TOOL] }, { toolFormat: null, endpoint: "chat" }),
    GrammarError,
  );
  assertEquals(e.param, "tools");
});

test("openai spec: body fields as request options, with the body's name of response_format", () => {
  assertEquals(structuredOptionsOf({}, "chat"), {});
  assertEquals(structuredOptionsOf({ guided_json: { type: "string" } }, "completion"), {
    responseFormat: { type: "json_schema", schema: { type: "string" }, strict: true },
    responseParam: "guided_json",
  });
  const o = structuredOptionsOf({
    response_format: { type: "json_object" },
    tools: [TOOL],
    tool_choice: { type: "function", function: { name: "f" } },
    parallel_tool_calls: false,
  }, "chat");
  assertEquals(o, {
    responseFormat: { type: "json_object" },
    responseParam: "response_format",
    openaiTools: [TOOL as never],
    tools: [TOOL.function as never],
    toolChoice: { name: "f" },
    parallelToolCalls: false,
  });
  assertEquals(structuredOptionsOf({ tools: [TOOL], tool_choice: "none" }, "chat").toolChoice, "none");
  const e = assertThrows(() => structuredOptionsOf({ tools: [TOOL] }, "completion"), GrammarError);
  assertEquals(e.param, "tools");
});
