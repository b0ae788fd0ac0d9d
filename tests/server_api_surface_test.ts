/**
 * The API surface beyond chat completions, through the official clients against serve.ts on
 * qwen3-think-tiny (qwen3-tiny's random weights with a thinking template whose generation
 * prompt opens a `<think>` block): reasoning split off chat answers, the Responses API, the
 * Anthropic Messages API, /tokenize and /detokenize, each route's error shape, and the
 * metrics. Random weights make text meaningless, so each assertion rests on what does not
 * depend on logits: a block cut by max_tokens, grammar-forced answers and tool calls, event
 * order, token counts.
 */
import { test } from "./helpers/test.ts";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post, testServer, waitFor } from "./helpers/server.ts";
import { assertValidCall, assertValidJson, SCHEMAS, TOOLS } from "./helpers/structured.ts";

const MODEL = "qwen3-think-tiny";
/** Reasoning effort "minimal" (newer than this SDK's types): the template closes the think block. */
const NO_THINKING = { reasoning: { effort: "minimal" } } as Record<never, never>;
/** Greedy sampling (this SDK's types no longer list temperature; the server reads it). */
const GREEDY = { temperature: 0 } as Record<never, never>;
const KEY = "sekret";

test({
  name: "api surface: reasoning, Responses, Anthropic Messages, tokenize (official clients)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const s = await testServer(MODEL, { apiKey: KEY });
    const auth = { authorization: `Bearer ${KEY}` };
    const openai = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: KEY, maxRetries: 0 });
    const anthropic = new Anthropic({ baseURL: s.base, apiKey: KEY, maxRetries: 0 });
    const weather = TOOLS[0];
    try {
      await t.step("chat: a block cut by max_tokens is reasoning, streamed as delta.reasoning_content", async () => {
        const body = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 6, temperature: 0, ignore_eos: true };
        // The grammar applies to the answer only: inside the open block the output is free text.
        const r = await post(`${s.base}/v1/chat/completions`, { ...body, guided_regex: "(yes|no)" }, auth);
        assertEquals(r.status, 200);
        const m = r.json.choices[0].message;
        assertEquals(r.json.choices[0].finish_reason, "length");
        assertEquals(m.content, "");
        assert(typeof m.reasoning_content === "string" && m.reasoning_content.length > 0, JSON.stringify(m));
        assert(!/^(yes|no)$/.test(m.reasoning_content), "the reasoning was not constrained");
        const stream = await openai.chat.completions.create({ ...body, stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
        let reasoning = "";
        let content = "";
        for await (const chunk of stream) {
          const d = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
          reasoning += d?.reasoning_content ?? "";
          content += d?.content ?? "";
        }
        const plain = await post(`${s.base}/v1/chat/completions`, body, auth);
        assertEquals({ reasoning, content }, { reasoning: plain.json.choices[0].message.reasoning_content, content: "" });
      });

      await t.step("chat: enable_thinking false reaches the template; the grammar holds from the first token", async () => {
        const r = await post(`${s.base}/v1/chat/completions`, {
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 8,
          temperature: 0,
          chat_template_kwargs: { enable_thinking: false },
          guided_regex: "(yes|no)",
        }, auth);
        assertEquals(r.status, 200, JSON.stringify(r.json));
        const m = r.json.choices[0].message;
        assert(/^(yes|no)$/.test(m.content), JSON.stringify(m));
        assertEquals(m.reasoning_content, null);
      });

      await t.step("responses: plain; reasoning item when the block is cut by max_output_tokens", async () => {
        const r = await openai.responses.create({ model: MODEL, input: "hi", max_output_tokens: 6, temperature: 0 });
        assertEquals(r.object, "response");
        assertEquals(r.status, "incomplete");
        assertEquals(r.incomplete_details?.reason, "max_output_tokens");
        assertEquals(r.output.map((o) => o.type), ["reasoning"]);
        const item = r.output[0] as { content?: { type: string; text: string }[] };
        assert(item.content![0].text.length > 0);
        assertEquals(r.output_text, "");
        assertEquals(r.usage?.output_tokens, 6);
        assertEquals(r.usage?.output_tokens_details.reasoning_tokens, 6, "all of it was reasoning");
        assert((r.usage?.input_tokens ?? 0) > 0);
        const answer = await openai.responses.create({
          model: MODEL,
          instructions: "Answer yes or no.",
          input: [{ role: "user", content: "ok?" }],
          ...NO_THINKING,
          max_output_tokens: 200,
          temperature: 0,
          text: { format: { type: "json_schema", name: "person", schema: SCHEMAS.person, strict: true } },
        });
        assertEquals(answer.status, "completed");
        assertEquals(answer.output.map((o) => o.type), ["message"]);
        assertValidJson(answer.output_text, SCHEMAS.person, "text.format json_schema");
        assertEquals(answer.usage?.output_tokens_details.reasoning_tokens, 0);
      });

      await t.step("responses: streamed events rebuild the final response", async () => {
        const stream = await openai.responses.create({ model: MODEL, input: "hi", max_output_tokens: 5, temperature: 0, stream: true });
        const types: string[] = [];
        let deltas = "";
        let final: OpenAI.Responses.Response | null = null;
        for await (const e of stream) {
          types.push(e.type);
          if (e.type === "response.reasoning_text.delta") deltas += e.delta;
          if (e.type === "response.incomplete" || e.type === "response.completed") final = e.response;
        }
        assertEquals(types.slice(0, 3), ["response.created", "response.in_progress", "response.output_item.added"]);
        assertEquals(types.slice(-3), ["response.reasoning_text.done", "response.output_item.done", "response.incomplete"]);
        const item = final!.output[0] as { content?: { text: string }[] };
        assertEquals(deltas, item.content![0].text);
        const text = await openai.responses.create({
          model: MODEL,
          input: "hi",
          ...NO_THINKING,
          max_output_tokens: 200,
          temperature: 0,
          text: { format: { type: "json_schema", name: "person", schema: SCHEMAS.person } },
          stream: true,
        });
        const kinds = new Set<string>();
        let out = "";
        let done = "";
        for await (const e of text) {
          kinds.add(e.type);
          if (e.type === "response.output_text.delta") out += e.delta;
          if (e.type === "response.output_text.done") done = e.text;
        }
        for (const k of ["response.content_part.added", "response.output_text.delta", "response.content_part.done", "response.completed"]) {
          assert(kinds.has(k), `no ${k} in ${[...kinds]}`);
        }
        assertEquals(out, done);
        assertValidJson(out, SCHEMAS.person, "streamed json_schema");
      });

      await t.step("responses: a function tool round trip", async () => {
        const tools = [{ type: "function" as const, name: weather.name, description: weather.description!, parameters: weather.parameters!, strict: true }];
        const first = await openai.responses.create({
          model: MODEL,
          input: "weather in Paris?",
          tools,
          tool_choice: "required",
          ...NO_THINKING,
          max_output_tokens: 200,
          temperature: 0,
        });
        const call = first.output.find((o) => o.type === "function_call") as OpenAI.Responses.ResponseFunctionToolCall;
        assert(call, JSON.stringify(first.output));
        assertValidCall(call, TOOLS, "responses function_call");
        assert(call.call_id.length > 0);
        const stream = await openai.responses.create({
          model: MODEL,
          input: [{ role: "user", content: "weather in Paris?" }, call, { type: "function_call_output", call_id: call.call_id, output: "sunny" }],
          tools,
          tool_choice: "required",
          ...NO_THINKING,
          max_output_tokens: 200,
          temperature: 0,
          stream: true,
        });
        let args = "";
        let argsDone = "";
        for await (const e of stream) {
          if (e.type === "response.function_call_arguments.delta") args += e.delta;
          if (e.type === "response.function_call_arguments.done") argsDone = e.arguments;
        }
        assertEquals(args, argsDone);
        assertValidJson(args, weather.parameters, "streamed call arguments");
        await openai.responses.create({ model: MODEL, input: "hi", previous_response_id: first.id }).then(
          () => assert(false, "previous_response_id must be refused"),
          (e) => {
            assert(e instanceof OpenAI.BadRequestError, String(e));
            assertEquals((e.error as { param?: string }).param, "previous_response_id");
          },
        );
      });

      await t.step("anthropic: plain, thinking blocks, stop_reason, usage", async () => {
        const m = await anthropic.messages.create({ model: MODEL, max_tokens: 6, messages: [{ role: "user", content: "hi" }], ...GREEDY });
        assertEquals(m.type, "message");
        assertEquals(m.stop_reason, "max_tokens");
        assertEquals(m.content.map((b) => b.type), ["thinking"]);
        assertEquals(m.usage.output_tokens, 6);
        const plain = await anthropic.messages.create({
          model: MODEL,
          max_tokens: 8,
          system: "Answer yes or no.",
          messages: [{ role: "user", content: [{ type: "text", text: "ok?" }] }],
          thinking: { type: "disabled" },
          ...GREEDY,
        });
        assertEquals(plain.content.map((b) => b.type), ["text"]);
        // Greedy output of these weights holds a space within 8 tokens: the stop sequence ends it.
        const text = (plain.content[0] as Anthropic.TextBlock).text;
        assert(text.includes(" "), JSON.stringify(text));
        const stopped = await anthropic.messages.create({
          model: MODEL,
          max_tokens: 8,
          system: "Answer yes or no.",
          messages: [{ role: "user", content: [{ type: "text", text: "ok?" }] }],
          thinking: { type: "disabled" },
          stop_sequences: [" "],
          ...GREEDY,
        });
        assertEquals([stopped.stop_reason, stopped.stop_sequence], ["stop_sequence", " "]);
        assertEquals((stopped.content[0] as Anthropic.TextBlock).text, text.slice(0, text.indexOf(" ")));
      });

      await t.step("anthropic: count_tokens counts the prompt messages.create runs", async () => {
        const params = { model: MODEL, system: "Be brief.", messages: [{ role: "user" as const, content: "hi" }], thinking: { type: "disabled" as const } };
        const counted = await anthropic.messages.countTokens(params);
        const m = await anthropic.messages.create({ ...params, max_tokens: 1 });
        assertEquals(counted.input_tokens, m.usage.input_tokens);
        const bad = await post(`${s.base}/v1/messages/count_tokens`, { messages: 5 }, { "x-api-key": KEY });
        assertEquals([bad.status, bad.json.type, bad.json.error.type], [400, "error", "invalid_request_error"]);
      });

      await t.step("anthropic: streamed events rebuild the message", async () => {
        const stream = anthropic.messages.stream({ model: MODEL, max_tokens: 5, messages: [{ role: "user", content: "hi" }], ...GREEDY });
        const types: string[] = [];
        stream.on("streamEvent", (e) => types.push(e.type));
        const final = await stream.finalMessage();
        assertEquals(types[0], "message_start");
        assertEquals(types.slice(-2), ["message_delta", "message_stop"]);
        assert(types.includes("content_block_delta") && types.includes("content_block_stop"));
        assertEquals(final.stop_reason, "max_tokens");
        assertEquals(final.content[0].type, "thinking");
        assert((final.content[0] as { thinking: string }).thinking.length > 0);
      });

      await t.step("anthropic: tools with tool_choice, a tool_result round trip, streamed input_json", async () => {
        const tools = [{ name: weather.name, description: weather.description, input_schema: weather.parameters as Anthropic.Tool.InputSchema }];
        const m = await anthropic.messages.create({
          model: MODEL,
          max_tokens: 200,
          messages: [{ role: "user", content: "weather in Paris?" }],
          tools,
          tool_choice: { type: "tool", name: weather.name },
          thinking: { type: "disabled" },
          ...GREEDY,
        });
        assertEquals(m.stop_reason, "tool_use");
        const use = m.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
        assert(use, JSON.stringify(m.content));
        assertValidCall({ name: use.name, arguments: JSON.stringify(use.input) }, TOOLS, "tool_use input");
        const stream = anthropic.messages.stream({
          model: MODEL,
          max_tokens: 200,
          messages: [
            { role: "user", content: "weather in Paris?" },
            { role: "assistant", content: [use] },
            { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "sunny" }] },
          ],
          tools,
          tool_choice: { type: "any" },
          thinking: { type: "disabled" },
          ...GREEDY,
        });
        let json = "";
        stream.on("inputJson", (delta) => (json += delta));
        const final = await stream.finalMessage();
        const again = final.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
        assert(again, JSON.stringify(final.content));
        assertEquals(JSON.parse(json), again.input);
      });

      await t.step("a client that leaves a Responses or Messages stream frees its sequence", async () => {
        const streams: [string, unknown, Record<string, string>][] = [
          ["/v1/messages", { max_tokens: 400, messages: [{ role: "user", content: "hi" }], stream: true }, { "x-api-key": KEY }],
          ["/v1/responses", { input: "hi", max_output_tokens: 400, stream: true }, auth],
        ];
        for (const [path, body, headers] of streams) {
          const ac = new AbortController();
          const res = await fetch(`${s.base}${path}`, {
            method: "POST",
            headers: { ...headers, "content-type": "application/json" },
            // Greedy: these weights do not end the answer within its first tokens.
            body: JSON.stringify({ ...body as object, temperature: 0 }),
            signal: ac.signal,
          });
          assertEquals(res.status, 200);
          const reader = res.body!.getReader();
          await reader.read(); // under way
          ac.abort();
          await reader.cancel().catch(() => {});
          await waitFor(() => s.server.app.activeRequests, (n) => n === 0);
        }
        const text = await (await fetch(`${s.base}/metrics`)).text();
        const line = text.split("\n").find((l) => l.startsWith("webgpu_llm_client_disconnects_total "));
        assert(Number(line?.split(" ")[1]) >= 2, String(line));
        await waitFor(async () => (await (await fetch(`${s.base}/dashboard/stats`)).json()).kvBlocksUsed, (n) => n === 0);
      });

      await t.step("malformed bodies get each API's own 4xx, never a 500", async () => {
        for (const body of ["{", "[]", {}, { messages: "x", max_tokens: 5 }, { max_tokens: 5, messages: [{ role: "bot", content: "x" }] }]) {
          const r = await post(`${s.base}/v1/messages`, body, { "x-api-key": KEY });
          assertEquals(r.status, 400, JSON.stringify(r.json));
          assertEquals(r.json.type, "error");
          assertEquals(r.json.error.type, "invalid_request_error");
        }
        const anon = await post(`${s.base}/v1/messages`, { max_tokens: 5, messages: [{ role: "user", content: "x" }] });
        assertEquals(anon.status, 401);
        assertEquals(anon.json.error.type, "authentication_error");
        await anthropic.messages.create({ model: "nope", max_tokens: 5, messages: [{ role: "user", content: "x" }] }).then(
          () => assert(false, "unknown model"),
          (e) => assert(e instanceof Anthropic.NotFoundError, String(e)),
        );
        for (const body of ["{", {}, { input: 5 }, { input: [{ type: "image" }] }, { input: "x", text: { format: { type: "xml" } } }]) {
          const r = await post(`${s.base}/v1/responses`, body, auth);
          assertEquals(r.status, 400, JSON.stringify(r.json));
          assertEquals(typeof r.json.error.message, "string");
        }
        for (const [path, body] of [["/tokenize", {}], ["/tokenize", { prompt: 5 }], ["/detokenize", { tokens: [-1] }], ["/detokenize", "x"]] as const) {
          const r = await post(`${s.base}${path}`, body, auth);
          assertEquals(r.status, 400, `${path} ${JSON.stringify(r.json)}`);
          assertEquals(typeof r.json.error.message, "string");
        }
      });

      await t.step("tokenize and detokenize (vLLM's shapes), chat messages through the template", async () => {
        const p = await post(`${s.base}/tokenize`, { model: MODEL, prompt: "hi there", add_special_tokens: false, return_token_strs: true }, auth);
        assertEquals(p.status, 200);
        assertEquals(p.json.count, p.json.tokens.length);
        assertEquals(p.json.token_strs.length, p.json.count);
        assertEquals(p.json.max_model_len, 1024);
        const d = await post(`${s.base}/detokenize`, { tokens: p.json.tokens }, auth);
        assertEquals(d.json.prompt, "hi there");
        const messages = [{ role: "user", content: "hi" }];
        const chat = await post(`${s.base}/tokenize`, { messages }, auth);
        const r = await post(`${s.base}/v1/chat/completions`, { messages, max_tokens: 1 }, auth);
        assertEquals(chat.json.count, r.json.usage.prompt_tokens, "the prompt chat completions run");
        const off = await post(`${s.base}/tokenize`, { messages, chat_template_kwargs: { enable_thinking: false } }, auth);
        assert(off.json.count > chat.json.count, "enable_thinking false closes the block in the prompt");
      });

      await t.step("--reasoning-parser none: the raw text is the content", async () => {
        const raw = await testServer(MODEL, { reasoningParser: "none" });
        try {
          const body = { messages: [{ role: "user", content: "hi" }], max_tokens: 6, temperature: 0, ignore_eos: true };
          const r = await post(`${raw.base}/v1/chat/completions`, body);
          const m = r.json.choices[0].message;
          assert(!("reasoning_content" in m), JSON.stringify(m));
          const split = await post(`${s.base}/v1/chat/completions`, body, auth);
          // The same greedy tokens: parsed, they are the reasoning of the open block.
          assertEquals(m.content.trim(), split.json.choices[0].message.reasoning_content.trim());
        } finally {
          await raw.close();
        }
      });

      await t.step("metrics count the new routes", async () => {
        const text = await (await fetch(`${s.base}/metrics`)).text();
        for (const route of ["/v1/responses", "/v1/messages", "/tokenize", "/detokenize"]) {
          assert(text.includes(`route="${route}",status="200"`), `${route} in /metrics`);
        }
        assert(text.includes(`route="/v1/messages",status="400"`));
        // The dashboard's stats count requests by API route too.
        const stats = await (await fetch(`${s.base}/dashboard/stats`)).json();
        for (const route of ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/tokenize"]) {
          assert(stats.routes[route] > 0, `${route} in /dashboard/stats: ${JSON.stringify(stats.routes)}`);
        }
        assert((await (await fetch(`${s.base}/`)).text()).includes('id="routes"'));
      });
    } finally {
      await s.close();
    }
  },
});
