/**
 * `POST /v1/embeddings` through the official `openai` client: against a stub engine (no GPU)
 * for the request shapes, formats, errors and metrics, and against serve.ts on qwen3-tiny for
 * transformers' embedding golden (float and base64, `dimensions`).
 */
import { test } from "./helpers/test.ts";
import OpenAI from "openai";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post, testServer } from "./helpers/server.ts";
import { stubServer } from "./helpers/stub_engine.ts";
import { maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { readTextFile } from "../src/runtime/runtime.ts";

const E = "/v1/embeddings";

interface Case {
  name: string;
  body?: unknown;
  raw?: string;
  status: number;
  param?: string;
}

const CASES: Case[] = [
  { name: "invalid JSON", raw: "{ not json", status: 400, param: "body" },
  { name: "body is an array", body: ["a"], status: 400, param: "body" },
  { name: "missing input", body: { model: "stories260K" }, status: 400, param: "input" },
  { name: "input is a number", body: { input: 42 }, status: 400, param: "input" },
  { name: "input is an object", body: { input: { text: "a" } }, status: 400, param: "input" },
  { name: "empty input array", body: { input: [] }, status: 400, param: "input" },
  { name: "a misspelt field", body: { input: "a", dimension: 8 }, status: 400, param: "dimension" },
  { name: "empty string", body: { input: "" }, status: 400, param: "input" },
  { name: "mixed ids and strings", body: { input: [1, "a"] }, status: 400, param: "input" },
  { name: "empty id array", body: { input: [[]] }, status: 400, param: "input[0]" },
  { name: "id outside the vocabulary", body: { input: [1, 99999] }, status: 400, param: "input" },
  { name: "fractional id", body: { input: [[1, 2.5]] }, status: 400, param: "input[0]" },
  { name: "input longer than the context", body: { input: "Once upon a time ".repeat(400) }, status: 400, param: "input" },
  { name: "bad encoding_format", body: { input: "a", encoding_format: "hex" }, status: 400, param: "encoding_format" },
  { name: "dimensions 0", body: { input: "a", dimensions: 0 }, status: 400, param: "dimensions" },
  { name: "dimensions too large", body: { input: "a", dimensions: 65 }, status: 400, param: "dimensions" },
  { name: "dimensions a string", body: { input: "a", dimensions: "8" }, status: 400, param: "dimensions" },
  { name: "model a number", body: { input: "a", model: 3 }, status: 400, param: "model" },
  { name: "user a number", body: { input: "a", user: 3 }, status: 400, param: "user" },
  { name: "unknown model", body: { input: "a", model: "gpt-4" }, status: 404, param: "model" },
];

function decodeBase64(s: string): Float32Array {
  const bytes = Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from(v));

test("embeddings http (stub engine): openai client shapes and formats, OpenAI-shaped 4xx for malformed bodies, /metrics counts the route", async () => {
  const s = await stubServer();
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    const one = await client.embeddings.create({ model: "stories260K", input: "Once upon a time", encoding_format: "float" });
    assertEquals(one.object, "list");
    assertEquals(one.data.length, 1);
    assertEquals(one.data[0].object, "embedding");
    assertEquals(one.data[0].embedding.length, 64);
    assert(Math.abs(norm(one.data[0].embedding) - 1) < 1e-6);
    const ids = s.engine.prompts.at(-1)!;
    // Text gets the end-of-text token appended (last pooling); usage counts it.
    assertEquals(ids.at(-1), s.engine.info.eosTokenIds[0]);
    assertEquals(one.usage, { prompt_tokens: ids.length, total_tokens: ids.length });

    // Several inputs (strings, then token-id arrays), base64 (the client's default asks for it
    // and decodes), and dimensions cut then renormalized.
    const many = await client.embeddings.create({ model: "stories260K", input: ["Once upon a time", "Lily"] });
    assertEquals(many.data.map((d) => d.index), [0, 1]);
    assertEquals(many.data[0].embedding, one.data[0].embedding.map((x) => Math.fround(x)));
    const raw = await post(`${s.base}${E}`, { input: [[1, 403, 407], [1, 410]], encoding_format: "base64" });
    assertEquals(raw.status, 200);
    assertEquals(typeof raw.json.data[1].embedding, "string");
    assertEquals(decodeBase64(raw.json.data[1].embedding).length, 64);
    const cut = await client.embeddings.create({ model: "stories260K", input: "Once upon a time", dimensions: 8, encoding_format: "float" });
    assertEquals(cut.data[0].embedding.length, 8);
    assert(Math.abs(norm(cut.data[0].embedding) - 1) < 1e-6);

    for (const c of CASES) {
      const res = c.raw !== undefined ? await post(`${s.base}${E}`, c.raw) : await post(`${s.base}${E}`, c.body);
      assertEquals(res.status, c.status, `${c.name}: ${JSON.stringify(res.json)}`);
      const err = res.json?.error;
      assert(err && typeof err.message === "string" && typeof err.type === "string", `${c.name}: ${JSON.stringify(res.json)}`);
      if (c.param) assertEquals(err.param, c.param, c.name);
    }
    const get = await fetch(`${s.base}${E}`);
    assertEquals(get.status, 405);
    await get.body?.cancel();
    // The openai client raises its own error class for a 400.
    let thrown: unknown = null;
    await client.embeddings.create({ model: "stories260K", input: [] as string[] }).catch((e) => (thrown = e));
    assert(thrown instanceof OpenAI.BadRequestError, String(thrown));

    const metrics = await (await fetch(`${s.base}/metrics`)).text();
    assert(metrics.includes(`webgpu_llm_http_responses_total{route="/v1/embeddings",status="200"} 4`), metrics);
    assert(metrics.includes(`route="/v1/embeddings",status="400"`), metrics);
    assert(metrics.includes("webgpu_llm_embeddings_total"), metrics);
  } finally {
    await s.close();
  }
});

test("embeddings http (serve.ts, qwen3-tiny): the openai client gets transformers' embeddings, float and base64, with dimensions", async () => {
  const golden = JSON.parse(await readTextFile(`${modelDir("qwen3-tiny")}/embedding-golden.json`)) as {
    cases: { input: string; input_ids: number[]; embedding: number[] }[];
  };
  const s = await testServer("qwen3-tiny", { tuning: { kvDtype: "f32" }, maxBatchTokens: 8 });
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    // Text (tokenized by the server, end-of-text appended) and the golden's own ids.
    const texts = await client.embeddings.create({ model: "qwen3-tiny", input: golden.cases.map((c) => c.input), encoding_format: "float" });
    const b64 = await post(`${s.base}${E}`, { input: golden.cases.map((c) => c.input_ids), encoding_format: "base64" });
    assertEquals(b64.status, 200);
    assertEquals(texts.usage.prompt_tokens, golden.cases.reduce((n, c) => n + c.input_ids.length, 0));
    golden.cases.forEach((c, i) => {
      const err = maxAbsDiff(texts.data[i].embedding, c.embedding);
      assert(err <= 1e-4, `case ${i}: max error ${err}`);
      assertEquals(Array.from(decodeBase64(b64.json.data[i].embedding)), texts.data[i].embedding.map((x) => Math.fround(x)));
    });
    const cut = await client.embeddings.create({ model: "qwen3-tiny", input: golden.cases[0].input, dimensions: 16, encoding_format: "float" });
    const head = golden.cases[0].embedding.slice(0, 16);
    const want = head.map((x) => x / norm(head));
    assert(maxAbsDiff(cut.data[0].embedding, want) <= 1e-4, "dimensions: truncated and renormalized");
    const stats = await (await fetch(`${s.base}/dashboard/stats`)).json();
    assertEquals(stats.embeddingsFinished, 7);
    assertEquals(stats.kvBlocksUsed, 0);
  } finally {
    await s.close();
  }
});
