/**
 * Tool-call parsing for each family's format on hand-written outputs: the whole-text parse,
 * and the stream parser fed the same text split at every character position (and one
 * character at a time), which must give the same content and calls and never emit part of a
 * marker as content. Also the format detection.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import {
  collect,
  parseToolCalls,
  type ToolCall,
  ToolCallStreamParser,
  type ToolStreamEvent,
} from "../src/grammar/tool_calls.ts";
import { detectToolCallFormat, type ToolCallFormat } from "../src/grammar/tool_format.ts";

interface Case {
  name: string;
  format: ToolCallFormat;
  text: string;
  content: string;
  calls: [string, unknown][];
}

const W = '{"city": "Paris", "unit": "c"}';
const CASES: Case[] = [
  {
    name: "hermes plain text",
    format: "hermes",
    text: "The weather is fine.\n",
    content: "The weather is fine.\n",
    calls: [],
  },
  {
    name: "hermes one call",
    format: "hermes",
    text: `<tool_call>\n{"name": "get_weather", "arguments": ${W}}\n</tool_call>`,
    content: "",
    calls: [["get_weather", JSON.parse(W)]],
  },
  {
    name: "hermes text then two calls",
    format: "hermes",
    text:
      `Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": ${W}}\n</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>`,
    content: "Let me check.",
    calls: [["get_weather", JSON.parse(W)], ["add", { a: 2, b: 3 }]],
  },
  {
    name: "hermes keys in another order, no newlines, text after",
    format: "hermes",
    text: '<tool_call>{"arguments": {"x": [1, {"y": "}"}]}, "name": "f"}</tool_call> Done.',
    content: "Done.",
    calls: [["f", { x: [1, { y: "}" }] }]],
  },
  {
    name: "hermes arguments as a JSON string, parameters key",
    format: "hermes",
    text: '<tool_call>\n{"name": "g", "parameters": "{\\"q\\": 1}"}\n</tool_call>',
    content: "",
    calls: [["g", { q: 1 }]],
  },
  {
    name: "hermes marker not followed by a call is content",
    format: "hermes",
    text: "Use <tool_call> tags, like <tool_call>this</tool_call>.",
    content: "Use <tool_call> tags, like <tool_call>this</tool_call>.",
    calls: [],
  },
  {
    name: "hermes text that only looks like a marker start",
    format: "hermes",
    text: "a <tool and <b> c",
    content: "a <tool and <b> c",
    calls: [],
  },
  {
    name: "llama3 bare JSON",
    format: "llama3_json",
    text: ` {"name": "get_weather", "parameters": ${W}}`,
    content: "",
    calls: [["get_weather", JSON.parse(W)]],
  },
  {
    name: "llama3 python_tag and two calls",
    format: "llama3_json",
    text: '<|python_tag|>{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"n": 1}}',
    content: "",
    calls: [["a", {}], ["b", { n: 1 }]],
  },
  {
    name: "llama3 JSON that is not a call is content",
    format: "llama3_json",
    text: '{"answer": 42}',
    content: '{"answer": 42}',
    calls: [],
  },
  {
    name: "llama3 text is content (braces later do not count)",
    format: "llama3_json",
    text: 'Sure: {"name": "x", "parameters": {}}',
    content: 'Sure: {"name": "x", "parameters": {}}',
    calls: [],
  },
  {
    name: "mistral two calls",
    format: "mistral",
    text:
      `[TOOL_CALLS][{"name": "get_weather", "arguments": ${W}}, {"name": "add", "arguments": {"a": 1, "b": 2}}]`,
    content: "",
    calls: [["get_weather", JSON.parse(W)], ["add", { a: 1, b: 2 }]],
  },
  {
    name: "mistral text before the marker",
    format: "mistral",
    text: 'Checking. [TOOL_CALLS] [{"name": "f", "arguments": {"s": "[TOOL_CALLS]"}}]',
    content: "Checking.",
    calls: [["f", { s: "[TOOL_CALLS]" }]],
  },
  {
    name: "mistral marker without a list is content",
    format: "mistral",
    text: "[TOOL_CALLS] nothing",
    content: "[TOOL_CALLS] nothing",
    calls: [],
  },
];

function ids(): () => string {
  let n = 0;
  return () => `call_${n++}`;
}

function check(c: Case, got: { content: string; toolCalls: ToolCall[] }, how: string): void {
  assertEquals(got.content, c.content, `${c.name} (${how}) content`);
  assertEquals(
    got.toolCalls.map((t) => t.name),
    c.calls.map(([n]) => n),
    `${c.name} (${how}) names`,
  );
  got.toolCalls.forEach((t, i) => {
    assertEquals(
      JSON.parse(t.arguments),
      c.calls[i][1],
      `${c.name} (${how}) arguments of call ${i}: ${t.arguments}`,
    );
    assertEquals(t.id, `call_${i}`, `${c.name} (${how}) id`);
  });
}

function stream(c: Case, pieces: string[]): ToolStreamEvent[] {
  const p = new ToolCallStreamParser(c.format, { newId: ids() });
  const events: ToolStreamEvent[] = [];
  for (const piece of pieces) events.push(...p.push(piece));
  events.push(...p.finish());
  return events;
}

function checkEvents(c: Case, events: ToolStreamEvent[], how: string): void {
  check(c, collect(events), how);
  const marker =
    { hermes: "<tool_call>", llama3_json: "<|python_tag|>", mistral: "[TOOL_CALLS]", harmony: "<|channel|>" }[c.format];
  for (const e of events) {
    if (e.type !== "content" || c.calls.length === 0) continue;
    // With calls present, no content piece may carry (part of) a marker.
    for (let k = 2; k <= marker.length; k++) {
      assert(
        !e.text.includes(marker.slice(0, k)),
        `${c.name} (${how}): content ${JSON.stringify(e.text)} holds a marker prefix`,
      );
    }
  }
  // OpenAI's delta order: a call's first delta has its index, id, type and name.
  const seen = new Set<number>();
  for (const e of events) {
    if (e.type !== "tool_call") continue;
    if (!seen.has(e.delta.index)) {
      assert(
        e.delta.id !== undefined && e.delta.type === "function" && e.delta.function.name,
        `${c.name} (${how}): first delta ${JSON.stringify(e.delta)}`,
      );
      seen.add(e.delta.index);
    } else {
      assert(
        e.delta.id === undefined && e.delta.function.name === undefined,
        `${c.name} (${how}): later delta ${JSON.stringify(e.delta)}`,
      );
    }
  }
}

for (const c of CASES) {
  test(`tool calls ${c.format}: ${c.name}`, () => {
    check(c, parseToolCalls(c.text, c.format, { newId: ids() }), "whole");
    checkEvents(c, stream(c, [...c.text]), "one character at a time");
    for (let i = 0; i <= c.text.length; i++) {
      checkEvents(c, stream(c, [c.text.slice(0, i), c.text.slice(i)]), `split at ${i}`);
    }
  });
}

test("tool calls: a call is emitted once complete, in one delta (index, id, name, arguments)", () => {
  const p = new ToolCallStreamParser("hermes", { newId: ids() });
  assertEquals(p.push("<tool_call>\n"), []);
  assertEquals(p.push('{"name": "get_weather", "argu'), []);
  assertEquals(p.push('ments": {"city": "Pa'), []);
  assertEquals(p.push('ris"}}\n</tool_call>'), [{
    type: "tool_call",
    delta: {
      index: 0,
      id: "call_0",
      type: "function",
      function: { name: "get_weather", arguments: '{"city": "Paris"}' },
    },
  }]);
  assertEquals(p.finish(), []);
});

test("tool calls: a call cut off by max_tokens is content (its text), not a call, streamed or not", () => {
  const cases: [ToolCallFormat, string, string, string[]][] = [
    ["hermes", '<tool_call>\n{"name": "f", "arguments": {"a": [1, 2', '<tool_call>\n{"name": "f", "arguments": {"a": [1, 2', []],
    ["hermes", 'Sure.\n<tool_call>\n{"name": "f"', 'Sure.\n<tool_call>\n{"name": "f"', []],
    ["hermes", "<tool_c", "<tool_c", []],
    [
      "hermes",
      '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "g", "argum',
      '<tool_call>\n{"name": "g", "argum',
      ["f"],
    ],
    ["mistral", '[TOOL_CALLS][{"name": "f", "arguments": {}}, {"name": "g"', '{"name": "g"', ["f"]],
    ["llama3_json", '{"name": "f", "parameters": {"x"', '{"name": "f", "parameters": {"x"', []],
  ];
  for (const [format, text, content, names] of cases) {
    const whole = parseToolCalls(text, format, { newId: ids() });
    assertEquals([whole.content, whole.toolCalls.map((c) => c.name)], [content, names], `${format} ${text}`);
    for (let i = 0; i <= text.length; i++) {
      const streamed = collect(stream({ name: text, format, text, content, calls: [] }, [text.slice(0, i), text.slice(i)]));
      assertEquals(streamed, whole, `${format} ${text} split at ${i}`);
    }
  }
});

test("tool calls: default ids (OpenAI style; 9 alphanumerics for mistral, as its templates require)", () => {
  const [h] =
    parseToolCalls('<tool_call>{"name": "f", "arguments": {}}</tool_call>', "hermes").toolCalls;
  assert(/^call_[A-Za-z0-9]{24}$/.test(h.id), h.id);
  const [m] = parseToolCalls('[TOOL_CALLS][{"name": "f", "arguments": {}}]', "mistral").toolCalls;
  assert(/^[A-Za-z0-9]{9}$/.test(m.id), m.id);
});

test("tool format detection: template first, then architecture", () => {
  assertEquals(detectToolCallFormat({ chatTemplate: "{{ '<tool_call>' }}" }), "hermes");
  assertEquals(detectToolCallFormat({ chatTemplate: "[TOOL_CALLS] {{ x }}" }), "mistral");
  assertEquals(
    detectToolCallFormat({ chatTemplate: "<|start_header_id|>ipython<|end_header_id|><|eot_id|>" }),
    "llama3_json",
  );
  assertEquals(
    detectToolCallFormat({
      chatTemplate: "{% for m in messages %}{% endfor %}",
      modelType: "qwen2",
    }),
    "hermes",
  );
  assertEquals(detectToolCallFormat({ modelType: "mistral" }), "mistral");
  assertEquals(
    detectToolCallFormat({ modelType: "llama", hasToken: (p) => p === "<|eot_id|>" }),
    "llama3_json",
  );
  assertEquals(detectToolCallFormat({ modelType: "llama", hasToken: () => false }), null);
  assertEquals(detectToolCallFormat({ modelType: "gemma2" }), null);
});
