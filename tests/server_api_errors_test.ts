/**
 * Malformed bodies on the Responses, Messages, tokenize and detokenize routes: each gets a
 * 4xx in its API's own error shape, never a 500 (a stub engine: no GPU needed).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post } from "./helpers/server.ts";
import { stubServer } from "./helpers/stub_engine.ts";

const MODEL = "qwen3-think-tiny";
const USER = [{ role: "user", content: "hi" }];

/** Bodies every route must refuse with a 4xx. */
const COMMON: unknown[] = ["", "{", "null", "[]", "5", '"x"', "\u00ff\u00fe", { model: 5 }];

const BAD: Record<string, unknown[]> = {
  "/v1/responses": [
    ...COMMON,
    {},
    { input: 5 },
    { input: [] },
    { input: [5] },
    { input: [{ type: "message", role: "robot", content: "x" }] },
    { input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] },
    { input: [{ type: "function_call", name: "f" }] },
    { input: [{ type: "function_call_output", output: "x" }] },
    { input: [{ type: "web_search_call" }] },
    { input: "x", instructions: 5 },
    { input: "x", max_output_tokens: -1 },
    { input: "x", max_output_tokens: "9" },
    { input: "x", temperature: "hot" },
    { input: "x", tools: {} },
    { input: "x", tools: [{ type: "web_search" }] },
    { input: "x", tools: [{ type: "function" }] },
    { input: "x", tools: [{ type: "function", name: "f" }], tool_choice: { type: "function" } },
    { input: "x", text: 5 },
    { input: "x", text: { format: { type: "xml" } } },
    { input: "x", text: { format: { type: "json_schema", schema: 5 } } },
    { input: "x", reasoning: 5 },
    { input: "x", previous_response_id: "resp_1" },
    { input: "x", store: true },
    { input: "x", model: "other" },
  ],
  "/v1/messages": [
    ...COMMON,
    {},
    { messages: USER },
    { max_tokens: 5 },
    { max_tokens: 5, messages: [] },
    { max_tokens: 5, messages: "hi" },
    { max_tokens: 0, messages: USER },
    { max_tokens: "5", messages: USER },
    { max_tokens: 5, messages: [{ role: "system", content: "x" }] },
    { max_tokens: 5, messages: [{ role: "user", content: 5 }] },
    { max_tokens: 5, messages: [{ role: "user", content: [{ type: "image" }] }] },
    { max_tokens: 5, messages: [{ role: "user", content: [{ type: "tool_use", id: "a", name: "f", input: {} }] }] },
    { max_tokens: 5, messages: [{ role: "assistant", content: [{ type: "tool_use", id: "a", name: "f", input: 5 }] }] },
    { max_tokens: 5, messages: [{ role: "user", content: [{ type: "tool_result" }] }] },
    { max_tokens: 5, messages: USER, system: 5 },
    { max_tokens: 5, messages: USER, stop_sequences: "x" },
    { max_tokens: 5, messages: USER, stop_sequences: [""] },
    { max_tokens: 5, messages: USER, tools: [{ name: "f" }] },
    { max_tokens: 5, messages: USER, tools: [{ name: "f", input_schema: {} }], tool_choice: { type: "sometimes" } },
    { max_tokens: 5, messages: USER, tools: [{ name: "f", input_schema: {} }], tool_choice: { type: "tool", name: "g" } },
    { max_tokens: 5, messages: USER, thinking: { type: "maybe" } },
    { max_tokens: 5, messages: USER, temperature: -1 },
    { max_tokens: 5, messages: USER, model: "other" },
  ],
  "/tokenize": [...COMMON, {}, { prompt: 5 }, { messages: 5 }, { messages: [{ role: "x" }] }, { prompt: "x", messages: USER }, {
    messages: USER,
    add_generation_prompt: true,
    continue_final_message: true,
  }, { prompt: "x", return_token_strs: "yes" }],
  "/detokenize": [...COMMON, {}, { tokens: "x" }, { tokens: [-1] }, { tokens: [1.5] }, { tokens: [1 << 30] }],
};

test("api routes: malformed bodies get the API's own 4xx error shape, never a 500", async () => {
  const s = await stubServer({ apiKey: "k" }, MODEL);
  try {
    for (const [route, bodies] of Object.entries(BAD)) {
      const anthropic = route === "/v1/messages";
      for (const body of bodies) {
        const r = await post(`${s.base}${route}`, body, anthropic ? { "x-api-key": "k" } : { authorization: "Bearer k" });
        const what = `${route} ${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.json)}`;
        assert(r.status >= 400 && r.status < 500, what);
        if (anthropic) {
          assertEquals(r.json.type, "error", what);
          assertEquals(typeof r.json.error.message, "string", what);
          assertEquals(r.json.error.type, r.status === 404 ? "not_found_error" : "invalid_request_error", what);
        } else {
          assertEquals(typeof r.json.error.message, "string", what);
          assertEquals(r.json.error.type, "invalid_request_error", what);
        }
      }
    }
    // The key: Bearer or x-api-key; a wrong one is 401 in each API's shape.
    const wrong = await post(`${s.base}/v1/messages`, { max_tokens: 2, messages: USER }, { "x-api-key": "nope" });
    assertEquals([wrong.status, wrong.json.type, wrong.json.error.type], [401, "error", "authentication_error"]);
    const ok = await post(`${s.base}/v1/messages`, { max_tokens: 2, messages: USER }, { "x-api-key": "k" });
    assertEquals(ok.status, 200);
    const responses = await post(`${s.base}/v1/responses`, { input: "hi", max_output_tokens: 2 }, { "x-api-key": "nope" });
    assertEquals([responses.status, responses.json.error.type], [401, "authentication_error"]);
    const tok = await post(`${s.base}/tokenize`, { prompt: "hi" });
    assertEquals(tok.status, 401);
    // A misspelt field is named, in each API's shape (as OpenAI and Anthropic answer it).
    const typoResponses = await post(`${s.base}/v1/responses`, { input: "hi", max_tokens: 2 }, { authorization: "Bearer k" });
    assertEquals([typoResponses.status, typoResponses.json.error.code, typoResponses.json.error.param], [400, "unknown_parameter", "max_tokens"]);
    const typoMessages = await post(`${s.base}/v1/messages`, { max_tokens: 2, messages: USER, stop: ["x"] }, { "x-api-key": "k" });
    assertEquals([typoMessages.status, typoMessages.json.type, typoMessages.json.error.type], [400, "error", "invalid_request_error"]);
    assert(typoMessages.json.error.message.includes("stop"), typoMessages.json.error.message);
  } finally {
    await s.close();
  }
});
