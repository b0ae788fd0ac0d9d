/**
 * gpt-oss's harmony output through the API layer: the parser (src/api/harmony.ts) splits
 * reasoning (analysis channel), answer (final channel, commentary preambles) and tool calls
 * (messages to `functions.NAME`) the same whatever pieces the text streams in; the model's
 * checkpoint picks it (architecture gpt_oss or the template's channels); and serve.ts on a
 * gpt-oss checkpoint returns well-formed reasoning, answers and calls on the chat, Responses
 * and Anthropic routes, streamed and not. The fixture's weights are random, so the end-to-end
 * outputs are forced with a grammar (guided_choice, tool_choice "required") to harmony text.
 * With harmony's markers as special tokens a response grammar waits for the final channel's
 * header (`<|channel|>final<|message|>`): the gate's unit test, and a bigram-scripted copy of
 * the checkpoint that writes analysis then a final answer the schema constrains.
 * The parse cases follow the harmony spec (cookbook.openai.com/articles/openai-harmony) and
 * llama.cpp's gpt-oss parser tests (tests/test-chat.cpp, COMMON_CHAT_FORMAT_GPT_OSS).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { HARMONY_TOKEN_IDS, writeBigramWeights, writeHarmonyCheckpoint, writeHarmonyTokensCheckpoint } from "./helpers/harmony.ts";
import { post } from "./helpers/server.ts";
import { modelDir } from "./helpers/reference.ts";
import { startServer } from "../serve.ts";
import { HarmonyStreamParser } from "../src/api/harmony.ts";
import { HarmonyOutputParser } from "../src/api/output_parser.ts";
import { detectReasoningParser, REASONING_PARSERS, reasoningFormatOf, reasoningStart } from "../src/api/reasoning.ts";
import { EngineGrammar, ReasoningGatedConstraint } from "../src/engine/constraints.ts";
import { detectToolCallFormat } from "../src/grammar/tool_format.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import type { ToolCallDelta } from "../src/types/api.ts";
import { compilerFor, generate } from "./helpers/grammar.ts";

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

test("harmony tool_choice grammar: \"required\" and a named function write calls the parser reads, and only calls", async () => {
  const { tokenizer, compiler } = await compilerFor("stories260K", { probe: false });
  const tools = [
    { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string", enum: ["Oslo", "Paris"] } }, required: ["city"] } },
    { name: "add", parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"] } },
  ];
  for (const choice of ["required", { name: "add" }] as const) {
    for (const parallel of [true, false]) {
      const g = await compiler.compile({ type: "tool_calls", format: "harmony", tools, choice, parallel });
      for (const seed of [1, 2, 3]) {
        const out = generate(await g.createMatcher(), tokenizer, tokenizer.eosTokenIds, { seed, maxSteps: 600 });
        const what = `${JSON.stringify(choice)} parallel=${parallel} seed ${seed}: ${out.text}`;
        assert(out.terminated, what);
        const parsed = parse([out.text]);
        assertEquals([parsed.reasoning, parsed.content], ["", ""], what);
        assert(parsed.calls.length >= 1 && (parallel || parsed.calls.length === 1), what);
        for (const c of parsed.calls) {
          if (typeof choice === "object") assertEquals(c.name, "add", what);
          const args = JSON.parse(c.arguments);
          assert(c.name === "add" ? Number.isInteger(args.a) && Number.isInteger(args.b) : ["Oslo", "Paris"].includes(args.city), what);
        }
      }
    }
  }
});

/** The events of a server-sent-event body, parsed ([DONE] left out). */
async function sse(url: string, body: unknown): Promise<any[]> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  assertEquals(res.status, 200);
  const text = await res.text();
  return text.split("\n").filter((l) => l.startsWith("data: ") && l !== "data: [DONE]").map((l) => JSON.parse(l.slice(6)));
}

const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", enum: ["Oslo", "Paris"] } }, required: ["city"], additionalProperties: false },
  },
};

/** serve.ts on a gpt-oss checkpoint, served as "gpt-oss"; its base URL. */
async function serveGptOss(model: string): Promise<{ server: Awaited<ReturnType<typeof startServer>>; base: string }> {
  const server = await startServer({
    model,
    host: "127.0.0.1",
    port: 0,
    maxQueue: 16,
    servedModelName: "gpt-oss",
    maxBodyBytes: 1 << 20,
    shutdownTimeoutMs: 5000,
    maxBatchTokens: 64,
  }, { quiet: true });
  await server.ready;
  return { server, base: `http://127.0.0.1:${server.addr.port}` };
}

test({
  name: "harmony serve: a gpt-oss checkpoint answers with reasoning, answers and tool calls on every route",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withTempDir(async (dir) => {
      const model = await writeHarmonyCheckpoint(`${dir}/gpt-oss`);
      const { server, base } = await serveGptOss(model);
      try {
        const messages = [{ role: "user", content: "Is it sunny?" }];
        // The weights are random: a grammar makes the model write harmony.
        const forced = "<|channel|>analysis<|message|>Check the sky.<|end|><|start|>assistant<|channel|>final<|message|>yes";
        const chat = { model: "gpt-oss", messages, max_tokens: 120, temperature: 0, guided_choice: [forced] };
        const r = await post(`${base}/v1/chat/completions`, chat);
        assertEquals(r.status, 200, JSON.stringify(r.json));
        assertEquals(r.json.choices[0].message.reasoning_content, "Check the sky.");
        assertEquals(r.json.choices[0].message.content, "yes");
        assertEquals(r.json.choices[0].finish_reason, "stop");
        const events = await sse(`${base}/v1/chat/completions`, { ...chat, stream: true });
        const streamed = events.map((e) => e.choices[0]?.delta ?? {});
        assertEquals(streamed.map((d) => d.reasoning_content ?? "").join(""), "Check the sky.");
        assertEquals(streamed.map((d) => d.content ?? "").join(""), "yes");

        // reasoning_effort reaches the template: "Reasoning: low" is a shorter prompt than the default medium.
        const medium = await post(`${base}/tokenize`, { model: "gpt-oss", messages });
        const low = await post(`${base}/v1/chat/completions`, { model: "gpt-oss", messages, max_tokens: 1, reasoning_effort: "low" });
        assertEquals(low.status, 200, JSON.stringify(low.json));
        assert(low.json.usage.prompt_tokens < medium.json.count, `${low.json.usage.prompt_tokens} vs ${medium.json.count}`);

        // tool_choice "required": the grammar writes a harmony call; it comes back as a tool call.
        const call = { model: "gpt-oss", messages, tools: [WEATHER], tool_choice: "required", max_tokens: 120, temperature: 0 };
        const c = await post(`${base}/v1/chat/completions`, call);
        assertEquals(c.status, 200, JSON.stringify(c.json));
        assertEquals(c.json.choices[0].finish_reason, "tool_calls", JSON.stringify(c.json.choices[0]));
        const calls = c.json.choices[0].message.tool_calls;
        assertEquals(calls.length, 1, JSON.stringify(c.json.choices[0].message));
        assertEquals(calls[0].function.name, "get_weather");
        assertEquals(typeof JSON.parse(calls[0].function.arguments).city, "string");
        const callEvents = await sse(`${base}/v1/chat/completions`, { ...call, stream: true });
        const streamedCalls = callEvents.flatMap((e) => e.choices[0]?.delta?.tool_calls ?? []);
        assertEquals(streamedCalls.map((d: any) => [d.function.name, d.function.arguments]), [["get_weather", calls[0].function.arguments]]);

        // Responses: a function_call item; Anthropic: a tool_use block.
        const resp = await post(`${base}/v1/responses`, {
          model: "gpt-oss",
          input: "Is it sunny?",
          tools: [{ type: "function", ...WEATHER.function }],
          tool_choice: "required",
          max_output_tokens: 120,
          temperature: 0,
        });
        assertEquals(resp.status, 200, JSON.stringify(resp.json));
        const item = resp.json.output.find((o: any) => o.type === "function_call");
        assert(item && item.name === "get_weather", JSON.stringify(resp.json.output));
        const anth = await post(`${base}/v1/messages`, {
          model: "gpt-oss",
          max_tokens: 120,
          messages,
          tools: [{ name: "get_weather", description: "Current weather in a city", input_schema: WEATHER.function.parameters }],
          tool_choice: { type: "any" },
          temperature: 0,
        });
        assertEquals(anth.status, 200, JSON.stringify(anth.json));
        assertEquals(anth.json.stop_reason, "tool_use");
        const use = anth.json.content.find((b: any) => b.type === "tool_use");
        assert(use && use.name === "get_weather" && typeof use.input.city === "string", JSON.stringify(anth.json.content));
      } finally {
        await server.shutdown();
      }
    });
  },
});

function allowed(mask: Uint32Array, id: number): boolean {
  return (mask[id >>> 5] & (1 << (id & 31))) !== 0;
}

test("harmony gate: the final channel's header ids end the free analysis; the grammar applies after them", async () => {
  await withTempDir(async (dir) => {
    const model = await writeHarmonyTokensCheckpoint(`${dir}/gpt-oss`);
    const tok = await Tokenizer.load(model);
    const prompt = tok.encode("<|start|>user<|message|>Hi<|end|><|start|>assistant", { addSpecialTokens: false });
    const { gate } = reasoningStart(REASONING_PARSERS.harmony, tok, prompt);
    const marker = tok.encode("<|channel|>final<|message|>", { addSpecialTokens: false });
    assertEquals(marker[0], HARMONY_TOKEN_IDS["<|channel|>"]);
    assertEquals(marker[marker.length - 1], HARMONY_TOKEN_IDS["<|message|>"]);
    assert(marker.length > 2, "final is text between the markers");
    assertEquals(gate, { endTokenIds: marker, open: true });
    // A prompt whose last message is already the final one: constrained from the first token.
    assertEquals(reasoningStart(REASONING_PARSERS.harmony, tok, [...prompt, ...marker]).gate, null);
    // gpt-oss-tiny's own tokenizer has no harmony tokens: no id sequence marks the header, no gate.
    const bare = await Tokenizer.load(await writeHarmonyCheckpoint(`${dir}/bare`));
    assertEquals(reasoningStart(REASONING_PARSERS.harmony, bare, bare.encode("<|start|>assistant", { addSpecialTokens: false })).gate, null);

    const grammar = new EngineGrammar({ model, vocabSize: 512, architecture: "gpt_oss" });
    const c = await grammar.constraint({ type: "regex", pattern: "yes" }, false, { reasoning: gate! });
    assert(c instanceof ReasoningGatedConstraint);
    const words = 512 / 32;
    const mask = new Uint32Array(words);
    const y = tok.pieceToToken("y")!;
    const z = tok.pieceToToken("z")!;
    const free = (what: string) => {
      assertEquals(c.state, "reasoning", what);
      c.fillMask(mask, 0);
      assert(mask.every((w) => w === 0xffffffff), `every token allowed: ${what}`);
    };
    const analysis = tok.encode("<|channel|>analysis<|message|>zz<|end|><|start|>assistant", { addSpecialTokens: false });
    // A header that breaks off after <|channel|>final (commentary follows), then one that starts again.
    const broken = [...marker.slice(0, -1), z, marker[0], ...marker.slice(0, 2)];
    for (const id of [...analysis, ...broken]) {
      free(`before ${id}`);
      assert(c.accept(id), `free token ${id}`);
    }
    free("a partial marker is still analysis");
    for (const id of marker) {
      free(`marker token ${id}`);
      assert(c.accept(id));
    }
    assertEquals(c.state, "active");
    c.fillMask(mask, 0);
    assert(allowed(mask, y) && !allowed(mask, z) && !allowed(mask, marker[0]), "the grammar after the header");
    assert(!c.accept(z), "the grammar rejects what it does not allow");
    assert(c.accept(y) && !c.terminated);
    c.dispose();
  });
});

test({
  name: "harmony gate serve: response_format waits for the final channel; the analysis comes back as reasoning_content",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withTempDir(async (dir) => {
      const model = await writeHarmonyTokensCheckpoint(`${dir}/gpt-oss`);
      const tok = await Tokenizer.load(model);
      const ids = (text: string) => tok.encode(text, { addSpecialTokens: false });
      const [channel, message, end] = ["<|channel|>", "<|message|>", "<|end|>"].map((m) => HARMONY_TOKEN_IDS[m]);
      const last = ids("<|start|>assistant").at(-1)!;
      const final = ids("<|channel|>final<|message|>").slice(1, -1);
      // "analysis" spelled so that no id of it is one of final's (a bigram has one set of successors per id).
      const a = (ch: string) => 3 + ch.charCodeAt(0);
      const analysis = [ids("analysis")[0], tok.pieceToToken("n")!, a("a"), a("l"), tok.pieceToToken("y")!, tok.pieceToToken("s")!, tok.pieceToToken("is")!];
      const body = ids("Check").slice(-3);
      assertEquals(tok.decode(body), "Check");
      const script = [last, channel, ...analysis, message, ...body, end, channel];
      const next = new Map<number, number[]>();
      for (let i = 0; i + 1 < script.length; i++) next.set(script[i], [script[i + 1]]);
      // After <|channel|> the model writes analysis or final with equal odds (seeded sampling).
      next.set(channel, [analysis[0], final[0]]);
      const path = [...final, message];
      for (let i = 0; i + 1 < path.length; i++) next.set(path[i], [path[i + 1]]);
      const used = [...next.keys()];
      assertEquals(new Set(used).size, used.length);
      await writeBigramWeights(model, next);
      const { server, base } = await serveGptOss(model);
      try {
        const schema = { type: "object", properties: { sunny: { type: "boolean" } }, required: ["sunny"], additionalProperties: false };
        const r = await post(`${base}/v1/chat/completions`, {
          model: "gpt-oss",
          messages: [{ role: "user", content: "Is it sunny?" }],
          max_tokens: 120,
          temperature: 1,
          seed: 1,
          n: 6,
          response_format: { type: "json_schema", json_schema: { name: "sky", schema, strict: true } },
        });
        assertEquals(r.status, 200, JSON.stringify(r.json));
        let reasoned = 0;
        for (const choice of r.json.choices) {
          const what = JSON.stringify(choice);
          const m = choice.message;
          assertEquals(choice.finish_reason, "stop", what);
          assertEquals(Object.keys(JSON.parse(m.content)), ["sunny"], what);
          assertEquals(typeof JSON.parse(m.content).sunny, "boolean", what);
          // Each analysis message the model wrote before the final one is reasoning.
          assert(/^(Check)*$/.test(m.reasoning_content ?? ""), what);
          if (m.reasoning_content) reasoned++;
        }
        // Seeded: each choice takes analysis first with odds 1/2 (without the gate none could).
        assert(reasoned > 0, "no choice wrote analysis first");
        // A forced tool call is not gated on the final channel: its grammar writes the commentary header.
        const c = await post(`${base}/v1/chat/completions`, {
          model: "gpt-oss",
          messages: [{ role: "user", content: "Is it sunny?" }],
          tools: [WEATHER],
          tool_choice: "required",
          parallel_tool_calls: false,
          max_tokens: 120,
          temperature: 0,
        });
        assertEquals(c.status, 200, JSON.stringify(c.json));
        assertEquals(c.json.choices[0].finish_reason, "tool_calls", JSON.stringify(c.json.choices[0]));
        assertEquals(c.json.choices[0].message.tool_calls[0].function.name, "get_weather");
      } finally {
        await server.shutdown();
      }
    });
  },
});
