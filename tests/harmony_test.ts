/**
 * gpt-oss's harmony output through the API layer: the parser (src/api/harmony.ts) splits
 * reasoning (analysis channel), answer (final channel, commentary preambles) and tool calls
 * (messages to `functions.NAME`) the same whatever pieces the text streams in; the model's
 * checkpoint picks it (architecture gpt_oss or the template's channels); and serve.ts on a
 * gpt-oss checkpoint returns well-formed reasoning, answers and calls on the chat, Responses
 * and Anthropic routes, streamed and not. The fixture's weights are random, so the end-to-end
 * outputs are forced with a grammar (guided_choice, tool_choice "required") to harmony text.
 * The parse cases follow the harmony spec (cookbook.openai.com/articles/openai-harmony) and
 * llama.cpp's gpt-oss parser tests (tests/test-chat.cpp, COMMON_CHAT_FORMAT_GPT_OSS).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { writeHarmonyCheckpoint } from "./helpers/harmony.ts";
import { post } from "./helpers/server.ts";
import { modelDir } from "./helpers/reference.ts";
import { startServer } from "../serve.ts";
import { HarmonyStreamParser } from "../src/api/harmony.ts";
import { HarmonyOutputParser } from "../src/api/output_parser.ts";
import { detectReasoningParser, reasoningFormatOf } from "../src/api/reasoning.ts";
import { detectToolCallFormat } from "../src/grammar/tool_format.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import type { ToolCallDelta } from "../src/types/api.ts";

interface Parsed {
  reasoning: string;
  content: string;
  calls: { name: string; arguments: string }[];
}

/** Runs the parser over `pieces`, folding what it emits. */
function parse(pieces: string[], options: { tools: boolean; reasoning?: boolean } = { tools: true }): Parsed {
  const p = new HarmonyStreamParser({ ...options, newId: () => "call_x" });
  const out: Parsed = { reasoning: "", content: "", calls: [] };
  const fold = (d: { reasoning: string; content: string; calls: ToolCallDelta[] }) => {
    out.reasoning += d.reasoning;
    out.content += d.content;
    for (const c of d.calls) out.calls.push({ name: c.function.name!, arguments: c.function.arguments! });
  };
  for (const piece of pieces) fold(p.push(piece));
  fold(p.finish());
  return out;
}

/** `text` whole, char by char, and in pieces of 2..7 characters. */
function chunkings(text: string): string[][] {
  const out = [[text], [...text]];
  for (let n = 2; n <= 7; n++) {
    const pieces: string[] = [];
    for (let i = 0; i < text.length; i += n) pieces.push(text.slice(i, i + n));
    out.push(pieces);
  }
  return out;
}

const THINK = "<|channel|>analysis<|message|>I'm\nthinking<|end|>";
const CASES: [string, string, Parsed][] = [
  ["analysis then final", THINK + "<|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?<|return|>", {
    reasoning: "I'm\nthinking",
    content: "Hello, world!\nWhat's up?",
    calls: [],
  }],
  ["final cut off (no end marker)", THINK + "<|start|>assistant<|channel|>final<|message|>Hello", {
    reasoning: "I'm\nthinking",
    content: "Hello",
    calls: [],
  }],
  [
    "a call: recipient after the channel, <|constrain|>json",
    THINK + '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
    { reasoning: "I'm\nthinking", content: "", calls: [{ name: "get_weather", arguments: '{"city": "Oslo"}' }] },
  ],
  [
    "a call: recipient in the role part (as the template renders one), ended by the output",
    ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}',
    { reasoning: "", content: "", calls: [{ name: "get_weather", arguments: '{"city": "Oslo"}' }] },
  ],
  [
    "a commentary preamble is answer text; two calls",
    "<|channel|>commentary<|message|>Checking both.<|end|>" +
    '<|start|>assistant<|channel|>commentary to=functions.a <|constrain|>json<|message|>{"x": 1}<|call|>' +
    '<|start|>assistant to=functions.b<|channel|>commentary json<|message|>{"y": [2]}<|call|>',
    { reasoning: "", content: "Checking both.", calls: [{ name: "a", arguments: '{"x": 1}' }, { name: "b", arguments: '{"y": [2]}' }] },
  ],
  [
    "a call cut off mid-JSON is answer text",
    THINK + '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Os',
    { reasoning: "I'm\nthinking", content: '{"city": "Os', calls: [] },
  ],
  ["a built-in tool's message runs in the chain of thought", '<|channel|>analysis to=python<|message|>print(1)<|call|>', {
    reasoning: "print(1)",
    content: "",
    calls: [],
  }],
  ["text that is not harmony is all answer", "Just an answer <|end|> with a marker", {
    reasoning: "",
    content: "Just an answer <|end|> with a marker",
    calls: [],
  }],
];

test("harmony parser: reasoning, answer and calls, the same whatever the streaming pieces", () => {
  for (const [name, text, expected] of CASES) {
    for (const pieces of chunkings(text)) assertEquals(parse(pieces), expected, `${name} in ${pieces.length} pieces`);
  }
});

test("harmony parser: without tools a call's body is answer text; without reasoning the analysis is too", () => {
  const text = THINK + '<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a": 1}<|call|>';
  for (const pieces of chunkings(text)) {
    assertEquals(parse(pieces, { tools: false }), { reasoning: "I'm\nthinking", content: '{"a": 1}', calls: [] });
    assertEquals(parse(pieces, { tools: true, reasoning: false }), {
      reasoning: "",
      content: "I'm\nthinking",
      calls: [{ name: "f", arguments: '{"a": 1}' }],
    });
  }
  // Nothing of a header, or of an end marker's beginning, is ever given out early.
  const p = new HarmonyStreamParser({ tools: true });
  assertEquals(p.push("<|channel|>final<|message|>Hi<|e"), { reasoning: "", content: "Hi", calls: [] });
  assertEquals(p.push("nd|>"), { reasoning: "", content: "", calls: [] });
});

test("harmony output parser: what the client's stream gives per delta; calls counted for finish_reason", () => {
  const parser = new HarmonyOutputParser(true, () => "call_1");
  const a = parser.push("<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>commentary to=functions.f ", false);
  assertEquals(a, { text: "", reasoning: "hm" });
  const b = parser.push('<|constrain|>json<|message|>{"k": true}<|call|>', true);
  assertEquals(b, { text: "", reasoning: "", calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: '{"k": true}' } }] });
  assertEquals(parser.calls, 1);
  // The reasoning registry's "harmony" entry (and vLLM's name for it) is this parser without calls.
  assertEquals(reasoningFormatOf("openai_gptoss"), reasoningFormatOf("harmony"));
  const r = reasoningFormatOf("harmony").parser("expect");
  const split = r.push("<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>y");
  const tail = r.finish();
  assertEquals([split.reasoning + tail.reasoning, split.content + tail.content], ["x", "y"]);
});

test("harmony: the checkpoint picks it (architecture gpt_oss, or the template's channels)", async () => {
  await withTempDir(async (dir) => {
    const tokenizer = await Tokenizer.load(await writeHarmonyCheckpoint(`${dir}/gpt-oss`));
    assertEquals(detectReasoningParser(tokenizer), "harmony");
    assertEquals(detectToolCallFormat({ chatTemplate: tokenizer.chatTemplate }), "harmony");
  });
  // gpt-oss-tiny itself has no template: its architecture decides.
  const bare = await Tokenizer.load(modelDir("gpt-oss-tiny"));
  assertEquals([detectReasoningParser(bare), detectReasoningParser(bare, "gpt_oss")], [null, "harmony"]);
  assertEquals(detectToolCallFormat({ chatTemplate: null, modelType: "gpt_oss" }), "harmony");
});
