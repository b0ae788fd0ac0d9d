/**
 * serve.ts driven by the official `openai` client: completions, chat (the model's Jinja
 * template), streaming, concurrency, auth, backpressure, disconnects, health.
 */
import { test } from "./helpers/test.ts";
import OpenAI from "openai";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { type ChatMessage, ChatTemplate } from "../src/server/chat_template.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post, testServer, waitFor } from "./helpers/server.ts";
import { App } from "../src/server/app.ts";
import { StubEngine } from "./helpers/stub_engine.ts";

const STORY = "Once upon a time";

async function expectedStoryText(): Promise<{ text: string; ids: number[] }> {
  const tok = await Tokenizer.load(modelDir("stories260K"));
  const golden = await loadGolden("stories260K");
  const c = golden.cases.find((x) => x.prompt === STORY)!;
  const full = tok.decode([...c.prompt_ids, ...c.greedy_ids]);
  return { text: full.slice(tok.decode(c.prompt_ids).length), ids: c.greedy_ids };
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`webgpu_llm_${name} `));
  return line ? Number(line.split(" ")[1]) : NaN;
}

test("server: completions, streaming and chat through the openai client", async () => {
  const s = await testServer("stories260K");
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    const want = await expectedStoryText();
    const models = await client.models.list();
    assertEquals(models.data.map((m) => m.id), ["stories260K"]);

    const c = await client.completions.create({ model: "stories260K", prompt: STORY, max_tokens: 24, temperature: 0 });
    assertEquals(c.choices[0].text, want.text);
    assertEquals(c.choices[0].finish_reason, "length");
    assertEquals(c.usage?.prompt_tokens, 5);
    assertEquals(c.usage?.completion_tokens, 24);

    // Streaming gives the same text, and the usage chunk when asked.
    const stream = await client.completions.create({
      model: "stories260K",
      prompt: STORY,
      max_tokens: 24,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const ch of chunk.choices) {
        text += ch.text;
        finish = ch.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assertEquals(text, want.text);
    assertEquals(finish, "length");
    assertEquals(usage?.completion_tokens, 24);

    // Several prompts and n, logprobs with alternatives.
    const multi = await client.completions.create({
      model: "stories260K",
      prompt: [STORY, "Lily and Tom"],
      max_tokens: 6,
      n: 2,
      temperature: 0.8,
      seed: 3,
      logprobs: 2,
    });
    assertEquals(multi.choices.map((x) => x.index).sort(), [0, 1, 2, 3]);
    for (const ch of multi.choices) {
      assertEquals(ch.logprobs!.tokens!.length, 6);
      assert(ch.logprobs!.token_logprobs!.every((lp) => lp! <= 0));
      assert(ch.logprobs!.top_logprobs!.every((t) => Object.keys(t!).length >= 1));
    }
    assertEquals(multi.usage?.completion_tokens, 24);

    // Stop strings end the text before the match, with finish_reason "stop".
    const stopped = await client.completions.create({ model: "stories260K", prompt: STORY, max_tokens: 24, temperature: 0, stop: ["Lily"] });
    assertEquals(stopped.choices[0].text, want.text.slice(0, want.text.indexOf("Lily")));
    assertEquals(stopped.choices[0].finish_reason, "stop");
  } finally {
    await s.close();
  }
});

test("server: chat uses the model's template; streaming chat equals non-streaming", async () => {
  const s = await testServer("qwen2-tiny");
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    const golden = await loadGolden("qwen2-tiny");
    const chatCase = golden.chat![0];
    const tok = await Tokenizer.load(modelDir("qwen2-tiny"));
    assertEquals(ChatTemplate.of(tok)!.render(chatCase.messages as ChatMessage[], true), chatCase.rendered);
    const promptTokens = tok.encode(chatCase.rendered, { addSpecialTokens: false }).length;
    const messages = chatCase.messages as unknown as OpenAI.ChatCompletionMessageParam[];
    const r = await client.chat.completions.create({ model: "qwen2-tiny", messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 2 });
    assertEquals(r.usage?.prompt_tokens, promptTokens);
    assertEquals(r.choices[0].message.role, "assistant");
    assertEquals(r.choices[0].logprobs!.content!.length, 10);
    const stream = await client.chat.completions.create({ model: "qwen2-tiny", messages, max_tokens: 10, temperature: 0, stream: true });
    let text = "";
    let role = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      role ||= chunk.choices[0]?.delta.role ?? "";
    }
    assertEquals(role, "assistant");
    assertEquals(text, r.choices[0].message.content);
  } finally {
    await s.close();
  }
});

test("server: concurrent streaming clients get the same text as solo runs", async () => {
  const s = await testServer("stories260K");
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    const prompts = ["Once upon a time", "The little dog", "Lily and Tom were friends.", "A", "Tom had a big red ball.", "The sun was", "Ben", "One day, a girl named Sue"];
    const run = async (prompt: string, i: number) => {
      const stream = await client.completions.create({ model: "stories260K", prompt, max_tokens: 8 + 3 * i, temperature: 0, stream: true });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
      return text;
    };
    const solo: string[] = [];
    for (const [i, p] of prompts.entries()) solo.push(await run(p, i));
    const together = await Promise.all(prompts.map(run));
    assertEquals(together, solo);
  } finally {
    await s.close();
  }
});

test("server: API key, queue limit (429), and a disconnect frees the blocks", async () => {
  const s = await testServer("stories260K", { apiKey: "sekret", maxSeqs: 1, maxQueue: 0 });
  try {
    const body = { prompt: STORY, max_tokens: 4 };
    assertEquals((await post(`${s.base}/v1/completions`, body)).status, 401);
    const wrong = await post(`${s.base}/v1/completions`, body, { authorization: "Bearer nope" });
    assertEquals(wrong.status, 401);
    assertEquals(wrong.json.error.type, "authentication_error");
    const auth = { authorization: "Bearer sekret" };
    assertEquals((await post(`${s.base}/v1/completions`, body, auth)).status, 200);
    // Health and metrics stay open.
    assertEquals((await fetch(`${s.base}/health`)).status, 200);

    // One long streaming request fills the only sequence slot; the next is refused.
    const ac = new AbortController();
    const res = await fetch(`${s.base}/v1/completions`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ prompt: STORY, max_tokens: 400, ignore_eos: true, temperature: 0, stream: true }),
      signal: ac.signal,
    });
    assertEquals(res.status, 200);
    const reader = res.body!.getReader();
    await reader.read(); // the first chunk: generation is under way
    const busy = await post(`${s.base}/v1/completions`, body, auth);
    assertEquals(busy.status, 429);
    assertEquals(busy.json.error.code, "queue_full");
    assert(busy.headers.get("retry-after"), "no Retry-After");
    // Stats reach the server at most every 50 ms: wait for the snapshot that holds its blocks.
    await waitFor(() => metric(s.base, "kv_blocks_used"), (v) => v > 0);

    // The client goes away mid-stream: the request is cancelled and its blocks return.
    ac.abort();
    await reader.cancel().catch(() => {});
    await waitFor(() => metric(s.base, "kv_blocks_used"), (v) => v === 0);
    await waitFor(() => metric(s.base, "client_disconnects_total"), (v) => v >= 1);
    const cancelled = await waitFor(() => s.server.app.activeRequests, (v) => v === 0);
    assertEquals(cancelled, 0);
    assertEquals((await post(`${s.base}/v1/completions`, body, auth)).status, 200);
  } finally {
    await s.close();
  }
});

test("server: health is 503 while loading and after a failed load, 200 when ready", async () => {
  const s = await testServer("stories260K", {}, false);
  try {
    const early = await fetch(`${s.base}/health`);
    assertEquals(early.status, 503);
    assertEquals((await early.json()).status, "loading");
    const busy = await post(`${s.base}/v1/completions`, { prompt: STORY });
    assertEquals(busy.status, 503);
    await s.server.ready;
    assertEquals((await fetch(`${s.base}/health`)).status, 200);
  } finally {
    await s.close();
  }
  const broken = await testServer("stories260K", { model: "/nonexistent/model/dir" }, false);
  try {
    await broken.server.ready.catch(() => {});
    const res = await fetch(`${broken.base}/health`);
    assertEquals(res.status, 503);
    const body = await res.json();
    assertEquals(body.status, "failed");
    assert(String(body.error).includes("/nonexistent/model/dir"), JSON.stringify(body));
  } finally {
    await broken.close();
  }
});

test("server: health turns 503 when the engine has work but stops stepping, or has failed", async () => {
  const app = new App({ modelName: "m", maxBodyBytes: 1024, maxQueue: 1, stallMs: 50 });
  const health = async () => {
    const res = await app.handle(new Request("http://localhost/health"));
    return { status: res.status, body: await res.json() };
  };
  assertEquals((await health()).status, 503); // still loading
  const stub = await StubEngine.load();
  app.setEngine(stub);
  assertEquals((await health()).status, 200);
  stub.statsAgeMs = 10_000; // idle engines report nothing: still healthy
  assertEquals((await health()).status, 200);
  stub.current = { ...stub.current, running: 1 }; // work but no report for 10 s
  const stalled = await health();
  assertEquals(stalled.status, 503);
  assertEquals(stalled.body.status, "stalled");
  stub.statsAgeMs = 0;
  assertEquals((await health()).status, 200);
  stub.current = { ...stub.current, error: "EngineError: boom" };
  const failed = await health();
  assertEquals(failed.status, 503);
  assert(failed.body.error.includes("boom"));
});
