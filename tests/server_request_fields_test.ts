/**
 * What a request may name, against an in-process server around the stub engine: unknown body
 * fields are a 400 naming the field (a typo such as `max_token` is not silently ignored), every
 * field of OpenAI's own reference and the documented extensions are accepted, `lenientFields`
 * restores ignoring; and the API key is checked before a /v1 path says whether it exists.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post } from "./helpers/server.ts";
import { stubServer } from "./helpers/stub_engine.ts";

const MODEL = "qwen2-tools-tiny";
const INFO = { maxContext: 2048 };
const TOOL = { type: "function", function: { name: "f", description: "d", parameters: { type: "object", properties: {} } } };

/** Every request field of OpenAI's API reference for /v1/completions, with a value this server can serve. */
const OPENAI_COMPLETION = {
  model: MODEL,
  prompt: "hi",
  best_of: 1,
  echo: false,
  frequency_penalty: 0,
  logit_bias: {},
  logprobs: 1,
  max_tokens: 2,
  n: 1,
  presence_penalty: 0,
  seed: 1,
  stop: "zz",
  stream: true,
  stream_options: { include_usage: true },
  suffix: "",
  temperature: 0,
  top_p: 1,
  user: "u",
};

/** Every request field of OpenAI's API reference for /v1/chat/completions. */
const OPENAI_CHAT = {
  model: MODEL,
  messages: [{ role: "user", content: "hi" }],
  audio: { voice: "alloy", format: "wav" },
  frequency_penalty: 0,
  function_call: "none",
  functions: [{ name: "g", parameters: { type: "object" } }],
  logit_bias: {},
  logprobs: true,
  max_completion_tokens: 2,
  max_tokens: 2,
  metadata: { k: "v" },
  modalities: ["text"],
  n: 1,
  parallel_tool_calls: true,
  prediction: { type: "content", content: "x" },
  presence_penalty: 0,
  prompt_cache_key: "k",
  prompt_cache_retention: "24h",
  reasoning_effort: "low",
  response_format: { type: "text" },
  safety_identifier: "s",
  seed: 1,
  service_tier: "auto",
  stop: ["zz"],
  store: false,
  stream: true,
  stream_options: { include_usage: true },
  temperature: 0,
  tool_choice: "auto",
  tools: [TOOL],
  top_logprobs: 2,
  top_p: 1,
  user: "u",
  verbosity: "low",
  web_search_options: {},
};

/** vLLM's sampling extensions implemented on both routes. */
const VLLM_SAMPLING = { top_k: 5, min_p: 0.1, repetition_penalty: 1.1, ignore_eos: true, stop_token_ids: [1] };
/** vLLM's guided decoding fields (one per request). */
const GUIDED = [
  { guided_json: { type: "object" } },
  { guided_regex: "[a-z]+" },
  { guided_choice: ["a", "b"] },
  { guided_grammar: 'root ::= "a"' },
];

test("request fields: an unknown field is a 400 naming it; every OpenAI field and implemented extension is accepted", async () => {
  const s = await stubServer({}, MODEL, INFO);
  try {
    const typo = await post(`${s.base}/v1/completions`, { prompt: "hi", max_token: 5 });
    assertEquals(typo.status, 400, JSON.stringify(typo.json));
    assertEquals(typo.json.error.param, "max_token");
    assertEquals(typo.json.error.code, "unknown_parameter");
    assertEquals(typo.json.error.type, "invalid_request_error");
    assert(/max_token \(did you mean max_tokens\?\)/.test(typo.json.error.message), typo.json.error.message);
    const chatTypo = await post(`${s.base}/v1/chat/completions`, { messages: [{ role: "user", content: "hi" }], temprature: 0.5 });
    assertEquals([chatTypo.status, chatTypo.json.error.param], [400, "temprature"], JSON.stringify(chatTypo.json));
    // Chat-only fields are unknown to completions.
    const tools = await post(`${s.base}/v1/completions`, { prompt: "hi", tools: [TOOL] });
    assertEquals([tools.status, tools.json.error.param], [400, "tools"]);

    const accepted: [string, Record<string, unknown>][] = [
      ["/v1/completions", OPENAI_COMPLETION],
      ["/v1/chat/completions", OPENAI_CHAT],
      ["/v1/completions", { prompt: "hi", max_tokens: 2, ...VLLM_SAMPLING, response_format: { type: "json_object" } }],
      ["/v1/chat/completions", { messages: OPENAI_CHAT.messages, max_tokens: 2, ...VLLM_SAMPLING }],
      ...GUIDED.flatMap((g): [string, Record<string, unknown>][] => [
        ["/v1/completions", { prompt: "hi", max_tokens: 2, ...g }],
        ["/v1/chat/completions", { messages: OPENAI_CHAT.messages, max_tokens: 2, ...g }],
      ]),
    ];
    for (const [path, body] of accepted) {
      const r = await post(`${s.base}${path}`, body);
      assertEquals(r.status, 200, `${path} ${Object.keys(body).join(",")}: ${JSON.stringify(r.json).slice(0, 300)}`);
    }
  } finally {
    await s.close();
  }
});

test("request fields: lenientFields ignores unknown fields", async () => {
  const s = await stubServer({ lenientFields: true }, MODEL, INFO);
  try {
    const r = await post(`${s.base}/v1/completions`, { prompt: "hi", max_tokens: 2, max_token: 5, whatever: {} });
    assertEquals(r.status, 200, JSON.stringify(r.json));
    assertEquals(r.json.usage.completion_tokens, 2);
  } finally {
    await s.close();
  }
});

test("request fields: the API key is checked before a /v1 route or method is told apart", async () => {
  const s = await stubServer({ apiKey: "k" }, MODEL, INFO);
  try {
    const key = { authorization: "Bearer k" };
    for (const [method, path, keyed] of [["PUT", "/v1/models", 405], ["DELETE", "/v1/chat/completions", 405], ["GET", "/v1/no-such-route", 404], ["GET", "/v1", 404]] as const) {
      const anonymous = await fetch(`${s.base}${path}`, { method });
      await anonymous.body?.cancel();
      assertEquals(anonymous.status, 401, `${method} ${path} without a key`);
      assertEquals(anonymous.headers.get("allow"), null);
      const withKey = await fetch(`${s.base}${path}`, { method, headers: key });
      await withKey.body?.cancel();
      assertEquals(withKey.status, keyed, `${method} ${path} with the key`);
    }
    // Outside /v1 nothing needs the key.
    const health = await fetch(`${s.base}/health`);
    await health.body?.cancel();
    assertEquals(health.status, 200);
  } finally {
    await s.close();
  }
});
