/**
 * Chat templates with tools: qwen2-tools-tiny's template renders conversations with `tools`,
 * assistant tool calls and tool results exactly as transformers'
 * `apply_chat_template(messages, tools=...)` did (golden.json "chat" cases).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { type ChatMessage, ChatTemplate, type ChatTool } from "../src/server/chat_template.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";

interface ToolGolden {
  messages: ChatMessage[];
  tools?: ChatTool[];
  add_generation_prompt: boolean;
  rendered: string;
}

async function fixture(): Promise<{ template: ChatTemplate; cases: ToolGolden[] }> {
  const tokenizer = await Tokenizer.load(modelDir("qwen2-tools-tiny"));
  const golden = await loadGolden("qwen2-tools-tiny");
  return { template: ChatTemplate.of(tokenizer)!, cases: golden.chat as unknown as ToolGolden[] };
}

test("chat template with tools: every golden conversation renders as transformers did", async () => {
  const { template, cases } = await fixture();
  assert(
    cases.length >= 4 && cases.some((c) => c.tools) &&
      cases.some((c) => c.messages.some((m) => m.tool_calls)),
  );
  for (const c of cases) {
    assertEquals(
      template.render(c.messages, c.add_generation_prompt, { tools: c.tools }),
      c.rendered,
      JSON.stringify(c.messages),
    );
  }
});

test("chat template with tools: OpenAI-style tool calls (arguments as a JSON string, content null) render the same", async () => {
  const { template, cases } = await fixture();
  const withCalls = cases.filter((c) => c.messages.some((m) => m.tool_calls));
  assert(withCalls.length > 0);
  for (const c of withCalls) {
    const openai = c.messages.map((m) =>
      m.tool_calls
        ? {
          ...m,
          content: m.content === "" ? null : m.content,
          tool_calls: m.tool_calls.map((t) => ({
            ...t,
            function: { ...t.function, arguments: JSON.stringify(t.function.arguments) },
          })),
        }
        : m
    );
    assertEquals(template.render(openai, c.add_generation_prompt, { tools: c.tools }), c.rendered);
  }
});

test("chat template with tools: without tools the template renders the plain conversation", async () => {
  const { template, cases } = await fixture();
  const plain = cases.find((c) => !c.tools)!;
  assertEquals(template.render(plain.messages, plain.add_generation_prompt), plain.rendered);
  const withTools = cases.find((c) => c.tools)!;
  assert(
    !template.render(withTools.messages, true).includes("<tools>"),
    "no tools, no tools section",
  );
});
