/**
 * Bad input never breaks the server: a table of malformed requests, each answered with its
 * 4xx and an OpenAI-style JSON error, then the server still serves. Also: /metrics passes
 * `promtool check metrics`.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { promtoolProblems } from "./helpers/promtool.ts";
import { testServer } from "./helpers/server.ts";
import { stubServer } from "./helpers/stub_engine.ts";

interface Case {
  name: string;
  method?: string;
  path?: string;
  body?: unknown;
  raw?: Uint8Array | string;
  headers?: Record<string, string>;
  status: number;
  param?: string;
}

const P = "Once upon a time";
const C = "/v1/completions";
const CHAT = "/v1/chat/completions";

const CASES: Case[] = [
  { name: "invalid JSON", raw: "{ not json", status: 400, param: "body" },
  { name: "empty body", raw: "", status: 400, param: "body" },
  { name: "body is an array", body: [1, 2], status: 400, param: "body" },
  { name: "bad UTF-8", raw: new Uint8Array([0x7b, 0x22, 0x70, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), status: 400, param: "body" },
  { name: "missing prompt", body: { max_tokens: 5 }, status: 400, param: "prompt" },
  { name: "prompt of wrong type", body: { prompt: 42 }, status: 400, param: "prompt" },
  { name: "empty prompt", body: { prompt: "" }, status: 400, param: "prompt" },
  { name: "token id out of vocabulary", body: { prompt: [1, 99999] }, status: 400, param: "prompt" },
  { name: "max_tokens is a string", body: { prompt: P, max_tokens: "ten" }, status: 400, param: "max_tokens" },
  { name: "negative max_tokens", body: { prompt: P, max_tokens: -1 }, status: 400, param: "max_tokens" },
  { name: "fractional max_tokens", body: { prompt: P, max_tokens: 2.5 }, status: 400, param: "max_tokens" },
  { name: "huge max_tokens", body: { prompt: P, max_tokens: 1e9 }, status: 400, param: "max_tokens" },
  { name: "prompt longer than the context", body: { prompt: "Once upon a time ".repeat(400) }, status: 400, param: "prompt" },
  { name: "temperature out of range", body: { prompt: P, temperature: -1 }, status: 400, param: "temperature" },
  { name: "top_p out of range", body: { prompt: P, top_p: 1.5 }, status: 400, param: "top_p" },
  { name: "top_k not an integer", body: { prompt: P, top_k: 0.5 }, status: 400, param: "top_k" },
  { name: "n too large", body: { prompt: P, n: 1000 }, status: 400, param: "n" },
  { name: "stop of wrong type", body: { prompt: P, stop: 5 }, status: 400, param: "stop" },
  { name: "stream not a boolean", body: { prompt: P, stream: "yes" }, status: 400, param: "stream" },
  { name: "stream_options without stream", body: { prompt: P, stream_options: { include_usage: true } }, status: 400, param: "stream_options" },
  { name: "logprobs too many", body: { prompt: P, logprobs: 500 }, status: 400, param: "logprobs" },
  { name: "echo unsupported", body: { prompt: P, echo: true }, status: 400, param: "echo" },
  { name: "unknown model", body: { model: "gpt-17", prompt: P }, status: 404, param: "model" },
  { name: "oversize body", raw: JSON.stringify({ prompt: "x".repeat(70000) }), status: 413 },
  { name: "chat without messages", path: CHAT, body: { model: "stories260K" }, status: 400, param: "messages" },
  { name: "chat with empty messages", path: CHAT, body: { messages: [] }, status: 400, param: "messages" },
  { name: "chat message with a bad role", path: CHAT, body: { messages: [{ role: "wizard", content: "hi" }] }, status: 400, param: "messages[0].role" },
  { name: "chat on a model without a template", path: CHAT, body: { messages: [{ role: "user", content: "hi" }] }, status: 400, param: "messages" },
  { name: "top_logprobs without logprobs", path: CHAT, body: { messages: [{ role: "user", content: "hi" }], top_logprobs: 2 }, status: 400, param: "top_logprobs" },
  { name: "unknown route", method: "GET", path: "/v1/nothing", status: 404 },
  { name: "wrong method", method: "GET", path: C, status: 405 },
  { name: "wrong method on health", method: "POST", path: "/health", raw: "{}", status: 405 },
];

test("server: malformed requests get their 4xx with a JSON error and the server stays healthy", async () => {
  // The HTTP surface and the request validation only: a stub engine, no GPU.
  const s = await stubServer({ maxBodyBytes: 64 * 1024 });
  try {
    assert(CASES.length >= 20);
    for (const c of CASES) {
      const init: RequestInit = { method: c.method ?? "POST", headers: { "content-type": "application/json", ...c.headers } };
      if (init.method !== "GET") init.body = (c.raw ?? JSON.stringify(c.body)) as BodyInit;
      const res = await fetch(`${s.base}${c.path ?? C}`, init);
      const text = await res.text();
      assertEquals(res.status, c.status, `${c.name}: ${text}`);
      const body = JSON.parse(text);
      assert(typeof body.error?.message === "string" && body.error.message.length > 0, `${c.name}: ${text}`);
      assert("type" in body.error && "param" in body.error && "code" in body.error, `${c.name}: ${text}`);
      if (c.param) assertEquals(body.error.param, c.param, `${c.name}: ${text}`);
      if (c.status === 405) assert(res.headers.get("allow"), `${c.name}: no Allow header`);
    }
    assertEquals((await fetch(`${s.base}/health`)).status, 200);
    const ok = await fetch(`${s.base}${C}`, { method: "POST", body: JSON.stringify({ prompt: P, max_tokens: 3 }) });
    assertEquals(ok.status, 200);
    assertEquals((await ok.json()).usage.completion_tokens, 3);
  } finally {
    await s.close();
  }
});

test("server: /metrics passes promtool check metrics and carries the engine's numbers", async () => {
  const s = await testServer("stories260K");
  try {
    await fetch(`${s.base}${C}`, { method: "POST", body: JSON.stringify({ prompt: P, max_tokens: 8, temperature: 0 }) }).then((r) => r.text());
    const res = await fetch(`${s.base}/metrics`);
    assert(res.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
    const text = await res.text();
    for (const name of ["kv_blocks_used", "kv_blocks_capacity", "batch_fill_p95", "decode_prefill_ratio", "requests_running", "requests_waiting"]) {
      assert(text.includes(`webgpu_llm_${name} `), `missing ${name}`);
    }
    assert(/webgpu_llm_time_to_first_token_seconds_bucket\{le="\+Inf"\} [1-9]/.test(text), "no TTFT observation");
    assert(/webgpu_llm_generation_tokens_total 8\b/.test(text), "generation tokens not counted");
    const check = await promtoolProblems(text);
    assertEquals(check.problems, [], `promtool (exit ${check.code})`);
  } finally {
    await s.close();
  }
});
