/**
 * `cli batch` over an OpenAI Batch API file: one result line per input line in input order,
 * custom_ids kept, malformed lines as error lines, every greedy answer equal to the same
 * request sent alone to serve.ts, and `--resume` after a kill giving the same file as an
 * uninterrupted run (up to response ids, timestamps and prefix-cache hit counts).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { post, testServer } from "./helpers/server.ts";
import * as fs from "node:fs";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const MODEL = "qwen2-tiny";

/** The input: completions and chat of mixed lengths, and lines that are wrong in every way. */
function inputLines(): string[] {
  const prompts = ["Once upon a time", "The little dog ran to the park", "A", "Lily and Tom were friends. They liked to play"];
  const lines: unknown[] = [];
  for (let i = 0; i < 16; i++) {
    const completion = i % 3 !== 2;
    lines.push({
      custom_id: `req-${i}`,
      method: "POST",
      url: completion ? "/v1/completions" : "/v1/chat/completions",
      body: completion
        ? { model: MODEL, prompt: prompts[i % 4], max_tokens: 4 + ((i * 7) % 21), temperature: 0, ignore_eos: true }
        : { model: MODEL, messages: [{ role: "user", content: prompts[i % 4] }], max_tokens: 3 + (i % 9), temperature: 0 },
    });
    if (i === 4) lines.push("{ this is not json");
    if (i === 7) lines.push({ method: "POST", url: "/v1/completions", body: { prompt: "x" } });
    if (i === 9) lines.push({ custom_id: "bad-url", method: "POST", url: "/v1/embeddings", body: { input: "x" } });
    if (i === 11) lines.push({ custom_id: "bad-param", method: "POST", url: "/v1/completions", body: { model: MODEL, prompt: "x", max_tokens: -1 } });
    if (i === 12) lines.push({ custom_id: "streamed", method: "POST", url: "/v1/completions", body: { model: MODEL, prompt: "x", stream: true } });
  }
  return lines.map((l) => (typeof l === "string" ? l : JSON.stringify(l)));
}

function batch(dir: string, ...extra: string[]) {
  return sys.runScript(MAIN, ["batch", "--model", modelDir(MODEL), "--served-model-name", MODEL, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, ...extra]);
}

async function resultLines(path: string): Promise<any[]> {
  return (await sys.readTextFile(path)).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * A result with the fields that differ between runs blanked: response ids, timestamps, and the
 * prefix-cache hits (they depend on what ran before in the same engine).
 */
function stable(line: any): any {
  const body = line.response?.body;
  if (!body?.id) return line;
  const usage = body.usage && { ...body.usage, prompt_tokens_details: { cached_tokens: 0 } };
  return { ...line, response: { ...line.response, body: { ...body, id: "", created: 0, usage } } };
}

test("cli batch: results in input order, malformed lines as errors, answers equal serve.ts's", async () => {
  const dir = await sys.makeTempDir();
  const server = await testServer(MODEL);
  try {
    const input = inputLines();
    await sys.writeTextFile(`${dir}/in.jsonl`, input.join("\n") + "\n\n");
    const r = await batch(dir, "--concurrency", "6");
    assertEquals(r.code, 0, r.stderr);
    const out = await resultLines(`${dir}/out.jsonl`);
    assertEquals(out.length, input.length);
    assertEquals(new Set(out.map((l) => l.id)).size, out.length, "result ids are not unique");
    for (const [i, line] of out.entries()) {
      let request: any = null;
      try {
        request = JSON.parse(input[i]);
      } catch { /* the malformed line */ }
      assertEquals(line.custom_id, typeof request?.custom_id === "string" ? request.custom_id : null, `line ${i}`);
      if (request === null || request.custom_id === undefined || request.url === "/v1/embeddings" || request.body?.stream) {
        assertEquals(line.response, null, `line ${i}`);
        assert(typeof line.error?.code === "string" && line.error.message, `line ${i}: ${JSON.stringify(line)}`);
        continue;
      }
      assertEquals(line.error, null);
      // The same request sent alone to serve.ts gets the same status and body.
      const alone = await post(`${server.base}${request.url}`, request.body);
      assertEquals(line.response.status_code, alone.status, `line ${i}`);
      assertEquals(stable(line).response.body, stable({ response: { body: alone.json } }).response.body, `line ${i}`);
      if (request.custom_id === "bad-param") assertEquals(line.response.body.error.param, "max_tokens");
      else assertEquals(line.response.status_code, 200, `line ${i}: ${JSON.stringify(line)}`);
    }
  } finally {
    await server.close();
    await sys.remove(dir, { recursive: true });
  }
});

test("cli batch: --resume after a kill in the middle gives the file of an uninterrupted run", async () => {
  const dir = await sys.makeTempDir();
  try {
    const input = inputLines();
    await sys.writeTextFile(`${dir}/in.jsonl`, input.join("\n") + "\n");
    assertEquals((await batch(dir, "--concurrency", "2")).code, 0);
    const whole = (await resultLines(`${dir}/out.jsonl`)).map(stable);
    await sys.remove(`${dir}/out.jsonl`);

    const proc = sys.startScript(MAIN, ["batch", "--model", modelDir(MODEL), "--served-model-name", MODEL, "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "2"]);
    let written = 0;
    for (let i = 0; i < 3000 && written < 4; i++) {
      await new Promise((r) => setTimeout(r, 10));
      written = (await sys.readTextFile(`${dir}/out.jsonl`).catch(() => "")).split("\n").length - 1;
    }
    proc.kill("SIGKILL");
    await proc.exited;
    const partial = await resultLines(`${dir}/out.jsonl`).catch(() => []);
    assert(partial.length >= 4 && partial.length < input.length, `killed after ${partial.length} of ${input.length} lines`);

    const resumed = await batch(dir, "--resume", "--concurrency", "2");
    assertEquals(resumed.code, 0, resumed.stderr);
    assertEquals((await resultLines(`${dir}/out.jsonl`)).map(stable), whole);

    // Resuming against another input is refused rather than mixing answers.
    await sys.writeTextFile(`${dir}/other.jsonl`, input.slice(1).join("\n") + "\n");
    const wrong = await sys.runScript(MAIN, ["batch", "--model", modelDir(MODEL), "--input", `${dir}/other.jsonl`, "--output", `${dir}/out.jsonl`, "--resume"]);
    assertEquals(wrong.code, 1);
    assert(wrong.stderr.includes("not the output of this input"), wrong.stderr);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
});

test("cli batch: usage errors name the flag", async () => {
  const r = await sys.runScript(MAIN, ["batch", "--model", modelDir(MODEL), "--input", "x.jsonl", "--outptu", "y.jsonl"]);
  assertEquals(r.code, 2);
  assert(r.stderr.includes("--outptu"), r.stderr);
  const missing = await sys.runScript(MAIN, ["batch", "--model", modelDir(MODEL), "--input", "/nonexistent.jsonl", "--output", "/tmp/x.jsonl"]);
  assertEquals(missing.code, 1);
  assert(missing.stderr.includes("/nonexistent.jsonl"), missing.stderr);
});

/**
 * Writes an input whose hostile lines sit between good ones: a 50 MB line (streamed to disk,
 * never built as a string), a line that is not UTF-8, a repeated custom_id and a chat message
 * far longer in bytes than the context holds.
 */
function writeHostileInput(path: string): void {
  const good = (id: string) => JSON.stringify({ custom_id: id, method: "POST", url: "/v1/completions", body: { model: MODEL, prompt: "Once upon a time", max_tokens: 3, temperature: 0 } });
  const fd = fs.openSync(path, "w");
  try {
    fs.writeSync(fd, good("ok-0") + "\n");
    fs.writeSync(fd, `{"custom_id":"huge","method":"POST","url":"/v1/completions","body":{"model":"${MODEL}","prompt":"`);
    const mb = new Uint8Array(1 << 20).fill(0x61);
    for (let i = 0; i < 50; i++) fs.writeSync(fd, mb);
    fs.writeSync(fd, `"}}\n${good("ok-1")}\n`);
    // custom_id "bad-\xff": a lone 0xff byte is never UTF-8.
    fs.writeSync(fd, new Uint8Array([...new TextEncoder().encode('{"custom_id":"bad-'), 0xff, ...new TextEncoder().encode(`","method":"POST","url":"/v1/completions","body":{"prompt":"x"}}\n`)]));
    fs.writeSync(fd, good("ok-2") + "\r\n" + good("ok-0") + "\n");
    const long = { custom_id: "long-chat", method: "POST", url: "/v1/chat/completions", body: { model: MODEL, messages: [{ role: "user", content: "a ".repeat(100_000) }], max_tokens: 2 } };
    fs.writeSync(fd, JSON.stringify(long) + "\n" + good("ok-3"));
  } finally {
    fs.closeSync(fd);
  }
}

test("cli batch: an oversized line, invalid UTF-8, a repeated custom_id and an over-long message are error lines; the lines around them are answered; --resume passes them", async () => {
  const dir = await sys.makeTempDir();
  try {
    writeHostileInput(`${dir}/in.jsonl`);
    const t0 = performance.now();
    const r = await batch(dir, "--concurrency", "2");
    assertEquals(r.code, 0, r.stderr);
    const out = await resultLines(`${dir}/out.jsonl`);
    assertEquals(out.map((l) => l.custom_id), ["ok-0", null, "ok-1", null, "ok-2", "ok-0", "long-chat", "ok-3"]);
    for (const i of [0, 2, 4, 7]) assertEquals(out[i].response?.status_code, 200, JSON.stringify(out[i]));
    assertEquals(out[1].error.code, "line_too_large");
    assert(out[1].error.message.includes(`${50 * (1 << 20) + 102}`), out[1].error.message);
    // The same code serve.ts answers a body that is not UTF-8 with; no U+FFFD in any id.
    assertEquals(out[3].error.code, "invalid_encoding");
    assertEquals(out[5].error.code, "duplicate_custom_id");
    assertEquals(out[5].response, null);
    // Refused by its byte length before any tokenizing, as serve.ts refuses it.
    assertEquals(out[6].response.status_code, 400);
    assertEquals(out[6].response.body.error.code, "context_length_exceeded");
    assert(/is \d+ bytes/.test(out[6].response.body.error.message), out[6].response.body.error.message);
    const seconds = (performance.now() - t0) / 1000;

    // A run killed after the oversized line resumes past it.
    const whole = out.map(stable);
    const text = await sys.readTextFile(`${dir}/out.jsonl`);
    await sys.writeTextFile(`${dir}/out.jsonl`, text.split("\n").slice(0, 2).join("\n") + "\n");
    const resumed = await batch(dir, "--resume", "--concurrency", "2");
    assertEquals(resumed.code, 0, resumed.stderr);
    assertEquals((await resultLines(`${dir}/out.jsonl`)).map(stable), whole);

    // A smaller bound refuses the line that fit before.
    const bounded = await batch(dir, "--max-line-bytes", "150");
    assertEquals(bounded.code, 0, bounded.stderr);
    assertEquals((await resultLines(`${dir}/out.jsonl`)).map((l) => l.error?.code ?? null), [null, "line_too_large", null, "invalid_encoding", null, "duplicate_custom_id", "line_too_large", null]);
    assert(seconds < 120, `the batch took ${seconds} s`);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
});
