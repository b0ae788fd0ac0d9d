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
