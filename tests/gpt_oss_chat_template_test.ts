/**
 * gpt-oss's chat format (harmony), rendered from the checkpoint's own template (see
 * helpers/harmony.ts) by @huggingface/jinja. The first test's expected strings are written from
 * the harmony spec, OpenAI's "OpenAI Harmony Response Format"
 * (cookbook.openai.com/articles/openai-harmony; openai/harmony docs/format.md): the system
 * message (identity, knowledge cutoff, current date, `Reasoning:`, valid channels, the
 * `functions` line only when there are tools), the developer message (`# Instructions`, then
 * `# Tools` with the TypeScript-like `namespace functions`), `<|start|>ROLE<|message|>...<|end|>`
 * framing, earlier chain of thought dropped, a call as `to=functions.NAME` on the commentary
 * channel ending in `<|call|>`, its result from `functions.NAME to=assistant`, and the
 * generation prompt `<|start|>assistant`. Where the template's text departs from the
 * cookbook's examples, the expected string follows the template as Python's jinja2 runs it
 * (transformers' `apply_chat_template`), marked "template:" below: a default's comment is
 * followed by the `,\n` every parameter gets; the developer instructions end in "\n\n" even
 * without tools; tool arguments and results go through `tojson` (Python's separators, so
 * `{"location": "Tokyo"}`, and a string result is quoted). The second test holds ours to
 * transformers' own renderings (tests/fixtures/chat_templates/gpt_oss_transformers.json, made by
 * tests/fixtures/tools/render_gpt_oss_chat.py).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { writeHarmonyCheckpoint } from "./helpers/harmony.ts";
import { MODELS_DIR } from "./helpers/reference.ts";
import * as sys from "./helpers/platform.ts";
import { type ChatMessage, ChatTemplate, ChatTemplateError, type ChatTool } from "../src/server/chat_template.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";

/** The cookbook's two tools. */
const TOOLS: ChatTool[] = [
  { type: "function", function: { name: "get_location", description: "Gets the location of the user." } },
  {
    type: "function",
    function: {
      name: "get_current_weather",
      description: "Gets the current weather in the provided location.",
      parameters: {
        type: "object",
        properties: {
          location: { type: "string", description: "The city and state, e.g. San Francisco, CA" },
          format: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" },
        },
        required: ["location"],
      },
    },
  },
];

/** The date strftime_now("%Y-%m-%d") gives (local time, as Python's datetime.now()). */
function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function system(effort: string, tools: boolean): string {
  return "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n" +
    `Knowledge cutoff: 2024-06\nCurrent date: ${today()}\n\nReasoning: ${effort}\n\n` +
    "# Valid channels: analysis, commentary, final. Channel must be included for every message." +
    (tools ? "\nCalls to these tools must go to the commentary channel: 'functions'." : "") + "<|end|>";
}

const DEVELOPER_TOOLS = "# Tools\n\n## functions\n\nnamespace functions {\n\n" +
  "// Gets the location of the user.\ntype get_location = () => any;\n\n" +
  "// Gets the current weather in the provided location.\ntype get_current_weather = (_: {\n" +
  "// The city and state, e.g. San Francisco, CA\nlocation: string,\n" +
  // template: the default's comment, then the ",\n" every parameter gets (the cookbook has no comma).
  'format?: "celsius" | "fahrenheit", // default: celsius,\n' +
  "}) => any;\n\n} // namespace functions";

const CALL: ChatMessage = {
  role: "assistant",
  content: null,
  reasoning_content: "User asks for Tokyo's weather; call get_current_weather.",
  tool_calls: [{ id: "call_1", type: "function", function: { name: "get_current_weather", arguments: '{"location":"Tokyo"}' } }],
};
const RESULT: ChatMessage = { role: "tool", tool_call_id: "call_1", content: '{"temperature": 20, "sunny": true}' };
const RENDERED_CALL = "<|start|>assistant to=functions.get_current_weather<|channel|>commentary json<|message|>" +
  '{"location": "Tokyo"}<|call|>';
// template: the result string goes through tojson, so it arrives quoted.
const RENDERED_RESULT = "<|start|>functions.get_current_weather to=assistant<|channel|>commentary<|message|>" +
  '"{\\"temperature\\": 20, \\"sunny\\": true}"<|end|>';

interface Case {
  name: string;
  messages: ChatMessage[];
  generation: boolean;
  tools?: ChatTool[];
  kwargs?: Record<string, unknown>;
  rendered: () => string;
}

const CASES: Case[] = [
  {
    name: "system and user",
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Hi" }],
    generation: true,
    // template: the instructions end in "\n\n" even without tools.
    rendered: () =>
      system("medium", false) + "<|start|>developer<|message|># Instructions\n\nYou are terse.\n\n<|end|>" +
      "<|start|>user<|message|>Hi<|end|><|start|>assistant",
  },
  {
    name: "multi-turn: the earlier answer's chain of thought is dropped",
    messages: [
      { role: "user", content: "What is 2+2?" },
      { role: "assistant", content: "4", reasoning_content: "Simple sum." },
      { role: "user", content: "And 3+3?" },
    ],
    generation: true,
    rendered: () =>
      system("medium", false) + "<|start|>user<|message|>What is 2+2?<|end|>" +
      "<|start|>assistant<|channel|>final<|message|>4<|end|><|start|>user<|message|>And 3+3?<|end|><|start|>assistant",
  },
  {
    name: "reasoning_effort, and a last assistant turn with its analysis ending in <|return|>",
    messages: [{ role: "user", content: "Why?" }, { role: "assistant", content: "Because.", reasoning_content: "Think." }],
    generation: false,
    kwargs: { reasoning_effort: "low" },
    rendered: () =>
      system("low", false) + "<|start|>user<|message|>Why?<|end|>" +
      "<|start|>assistant<|channel|>analysis<|message|>Think.<|end|>" +
      "<|start|>assistant<|channel|>final<|message|>Because.<|return|>",
  },
  {
    name: "tools, system instructions and a user turn",
    messages: [{ role: "system", content: "Always respond in riddles" }, { role: "user", content: "What is the weather in Tokyo?" }],
    generation: true,
    tools: TOOLS,
    kwargs: { reasoning_effort: "high" },
    rendered: () =>
      system("high", true) + "<|start|>developer<|message|># Instructions\n\nAlways respond in riddles\n\n" + DEVELOPER_TOOLS +
      "<|end|><|start|>user<|message|>What is the weather in Tokyo?<|end|><|start|>assistant",
  },
  {
    name: "a tool call (its analysis kept: no final answer follows yet) and the tool's result",
    messages: [{ role: "user", content: "What is the weather in Tokyo?" }, CALL, RESULT],
    generation: true,
    tools: TOOLS,
    rendered: () =>
      system("medium", true) + "<|start|>developer<|message|>" + DEVELOPER_TOOLS + "<|end|>" +
      "<|start|>user<|message|>What is the weather in Tokyo?<|end|>" +
      "<|start|>assistant<|channel|>analysis<|message|>User asks for Tokyo's weather; call get_current_weather.<|end|>" +
      RENDERED_CALL + RENDERED_RESULT + "<|start|>assistant",
  },
  {
    name: "a finished tool round: the call's analysis is dropped once a final answer follows",
    messages: [
      { role: "user", content: "What is the weather in Tokyo?" },
      CALL,
      RESULT,
      { role: "assistant", content: "Sunny, 20 degrees." },
      { role: "user", content: "Thanks" },
    ],
    generation: true,
    tools: TOOLS,
    rendered: () =>
      system("medium", true) + "<|start|>developer<|message|>" + DEVELOPER_TOOLS + "<|end|>" +
      "<|start|>user<|message|>What is the weather in Tokyo?<|end|>" + RENDERED_CALL + RENDERED_RESULT +
      "<|start|>assistant<|channel|>final<|message|>Sunny, 20 degrees.<|end|><|start|>user<|message|>Thanks<|end|><|start|>assistant",
  },
];

test("gpt-oss chat template: harmony conversations render as the format specifies", async () => {
  await withTempDir(async (dir) => {
    const chat = ChatTemplate.of(await Tokenizer.load(await writeHarmonyCheckpoint(`${dir}/gpt-oss`)));
    assert(chat, "no chat template");
    for (const c of CASES) {
      assertEquals(chat.render(c.messages, c.generation, { tools: c.tools, kwargs: c.kwargs }), c.rendered(), c.name);
    }
    // The template's own checks: a tool result needs an earlier call.
    assertThrows(() => chat.render([{ role: "user", content: "a" }, RESULT]), ChatTemplateError);
  });
});

/** Renderings by transformers' own apply_chat_template (tests/fixtures/tools/render_gpt_oss_chat.py). */
interface TransformersCase {
  name: string;
  messages: ChatMessage[];
  tools?: ChatTool[];
  add_generation_prompt: boolean;
  kwargs?: Record<string, unknown>;
  rendered: string;
}

test("gpt-oss chat template: every conversation renders as transformers' apply_chat_template renders it", async () => {
  const golden = JSON.parse(
    await sys.readTextFile(`${MODELS_DIR}../chat_templates/gpt_oss_transformers.json`),
  ) as { transformers: string; cases: TransformersCase[] };
  assert(golden.cases.length >= 8);
  await withTempDir(async (dir) => {
    const chat = ChatTemplate.of(await Tokenizer.load(await writeHarmonyCheckpoint(`${dir}/gpt-oss`)));
    assert(chat, "no chat template");
    for (const c of golden.cases) {
      const ours = chat.render(c.messages, c.add_generation_prompt, { tools: c.tools, kwargs: c.kwargs });
      assertEquals(ours, c.rendered.replace("{{DATE}}", today()), `${c.name} (transformers ${golden.transformers})`);
    }
  });
});
