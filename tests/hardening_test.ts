/**
 * Defects a hostile client found, each reproduced against an in-process server: unbounded
 * metric labels, a malformed URI, mid-upload disconnects counted as errors, tokenization on
 * the HTTP thread, one request swamping the queue, a broken chat template taking the server
 * down.
 */
import { shared, sharedTest, test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { post, testServer, waitFor } from "./helpers/server.ts";
import { rawExchange } from "./helpers/raw_http.ts";
import { copyFile, makeTempDir, readDir, remove, writeTextFile } from "./helpers/platform.ts";
import { modelDir } from "./helpers/reference.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";

const P = "Once upon a time";

async function metricsText(base: string): Promise<string> {
  return await (await fetch(`${base}/metrics`)).text();
}

// The tests that need only a default stories260K server share one (their counters and logs
// do not overlap: a 400 on /v1/models, 499s on /v1/completions, 400/200 on /v1/completions).
const defaultServer = shared(() => testServer("stories260K"), (s) => s.close());

function routeLabels(text: string): Set<string> {
  return new Set([...text.matchAll(/^webgpu_llm_http_responses_total\{route="([^"]*)"/gm)].map((m) => m[1]));
}

test("hardening: /metrics route labels are route templates, not raw paths", async () => {
  const s = await testServer("stories260K", { apiKey: "k" });
  try {
    for (let i = 0; i < 50; i++) {
      await (await fetch(`${s.base}/v1/models/model-${i}`)).text(); // 401: no key
      await (await fetch(`${s.base}/v1/models/model-${i}`, { headers: { authorization: "Bearer k" } })).text(); // 404
      await (await fetch(`${s.base}/no/such/path/${i}`)).text();
    }
    const labels = routeLabels(await metricsText(s.base));
    assert(labels.size <= 3, `route labels grow with the paths asked for: ${[...labels].slice(0, 8).join(", ")} (${labels.size})`);
    assert(labels.has("/v1/models/{model}"), [...labels].join(", "));
  } finally {
    await s.close();
  }
});

sharedTest("hardening: a malformed percent-encoding in the path is a 400, not a 500", async () => {
  const s = await defaultServer();
  try {
    const res = await fetch(`${s.base}/v1/models/%E0%A4%A`);
    const body = await res.json();
    assertEquals(res.status, 400, JSON.stringify(body));
    assertEquals(body.error.code, "invalid_path");
  } finally {
    // The shared server is closed after the file's last test.
  }
});

sharedTest("hardening: a client that disconnects mid-upload is neither logged nor counted as a 500", async () => {
  const s = await defaultServer();
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    const port = Number(new URL(s.base).port);
    for (let i = 0; i < 5; i++) {
      await rawExchange(port, ["POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\": \"Once"], { dropAfterSend: true });
    }
    // The server has seen the drops when they appear in /metrics.
    const text = await waitFor(() => metricsText(s.base), (t) => /route="\/v1\/completions",status="499"\} 5/.test(t), 10_000);
    assert(!/status="5\d\d"/.test(text), text.split("\n").filter((l) => l.includes("http_responses")).join("\n"));
    assertEquals(logged.length, 0, `logged: ${logged.map((a) => a.join(" ")).join("\n")}`);
  } finally {
    console.error = original;
    // The shared server is closed after the file's last test.
  }
});

sharedTest("hardening: prompts are measured in bytes before tokenizing, and tokenized off the HTTP thread", async () => {
  const s = await defaultServer();
  const encode = Tokenizer.prototype.encode;
  let mainThreadEncodes = 0;
  Tokenizer.prototype.encode = function (this: Tokenizer, ...args: Parameters<Tokenizer["encode"]>) {
    mainThreadEncodes++;
    return encode.apply(this, args);
  };
  try {
    // Far longer than any context of this model could hold: refused by its size alone.
    const big = await post(`${s.base}/v1/completions`, { prompt: "Once upon a time ".repeat(20_000) });
    assertEquals(big.status, 400, JSON.stringify(big.json));
    assertEquals(big.json.error.code, "context_length_exceeded");
    assert(/bytes/.test(big.json.error.message), big.json.error.message);
    const ok = await post(`${s.base}/v1/completions`, { prompt: [P, "Lily"], max_tokens: 2 });
    assertEquals(ok.status, 200, JSON.stringify(ok.json));
    assertEquals(mainThreadEncodes, 0, "the HTTP thread tokenized");
  } finally {
    Tokenizer.prototype.encode = encode;
    // The shared server is closed after the file's last test.
  }
});

test("hardening: one request cannot add more sequences than the batch and queue hold (400), nor jump a full queue (429)", async () => {
  const s = await testServer("stories260K", { maxSeqs: 2, maxQueue: 1 });
  try {
    const huge = await post(`${s.base}/v1/completions`, { prompt: [P, P, P], n: 2, max_tokens: 2 });
    assertEquals(huge.status, 400, JSON.stringify(huge.json));
    assertEquals(huge.json.error.code, "too_many_sequences");
    const fits = await post(`${s.base}/v1/completions`, { prompt: [P, P], max_tokens: 2 });
    assertEquals(fits.status, 200, JSON.stringify(fits.json));
    // Two long streams hold the batch; a request of two more no longer fits the queue of one.
    const ac = new AbortController();
    const long = await fetch(`${s.base}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ prompt: [P, P], max_tokens: 400, ignore_eos: true, stream: true }),
      signal: ac.signal,
    });
    const reader = long.body!.getReader();
    await reader.read();
    const busy = await post(`${s.base}/v1/completions`, { prompt: [P, P], max_tokens: 2 });
    assertEquals(busy.status, 429, JSON.stringify(busy.json));
    ac.abort();
    await reader.cancel().catch(() => {});
  } finally {
    await s.close();
  }
});

test("hardening: a chat template that does not parse fails chat requests only; completions still serve", async () => {
  const dir = await makeTempDir({ prefix: "broken-template-" });
  try {
    for await (const e of readDir(modelDir("stories260K"))) if (e.isFile) await copyFile(`${modelDir("stories260K")}/${e.name}`, `${dir}/${e.name}`);
    await writeTextFile(`${dir}/chat_template.jinja`, "{% for message in messages %}{{ message.content }");
    const s = await testServer("stories260K", { model: dir });
    try {
      assertEquals((await fetch(`${s.base}/health`)).status, 200);
      const c = await post(`${s.base}/v1/completions`, { prompt: P, max_tokens: 2 });
      assertEquals(c.status, 200, JSON.stringify(c.json));
      const chat = await post(`${s.base}/v1/chat/completions`, { messages: [{ role: "user", content: "hi" }] });
      assertEquals(chat.status, 400, JSON.stringify(chat.json));
      assertEquals(chat.json.error.code, "chat_template_error");
    } finally {
      await s.close();
    }
  } finally {
    await remove(dir, { recursive: true });
  }
});
