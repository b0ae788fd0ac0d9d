/**
 * The new model families end to end through the user-facing surfaces: serve.ts (as a real
 * process, so its startup log is checked too) and the CLI. Qwen3.5 (hybrid): concurrent
 * streams equal their solo runs and free their state slots; its GGUF conversion and
 * Qwen3-MoE continue the golden greedy ids through `cli generate`; gpt-oss (MXFP4 experts)
 * serves its golden continuation and reports total and active parameters.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { exitWithin, type ServeProcess, startServeProcess } from "./helpers/serve_process.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const STORY = "Once upon a time";

/** The golden greedy continuation of `STORY` as text, and its ids. */
async function goldenStory(model: string): Promise<{ text: string; ids: number[] }> {
  const tok = await Tokenizer.load(modelDir(model));
  const c = (await loadGolden(model)).cases.find((x) => x.prompt === STORY)!;
  const full = tok.decode([...c.prompt_ids, ...c.greedy_ids]);
  return { text: full.slice(tok.decode(c.prompt_ids).length), ids: c.greedy_ids };
}

/** A streamed greedy completion's text (SSE `data:` lines). */
async function streamText(base: string, prompt: string, maxTokens: number): Promise<string> {
  const res = await fetch(`${base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  assertEquals(res.status, 200);
  let text = "";
  for (const line of (await res.text()).split("\n")) {
    if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
    text += JSON.parse(line.slice(6)).choices[0]?.text ?? "";
  }
  return text;
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`webgpu_llm_${name} `));
  return line ? Number(line.split(" ")[1]) : NaN;
}

async function withServe(model: string, fn: (p: ServeProcess) => Promise<void>): Promise<void> {
  const p = await startServeProcess({ model });
  try {
    await p.ready();
    await fn(p);
  } finally {
    p.kill("SIGTERM");
    await exitWithin(p, 20_000);
  }
}

test("new families: qwen35-tiny serves 8 concurrent streams equal to their solo runs, frees its state slots, skips the vision tower", async () => {
  await withServe("qwen35-tiny", async (p) => {
    const prompts = [
      STORY,
      "The little dog",
      "Lily and Tom were friends. They liked to play in the park every day.",
      "A",
      "Tom had a big red ball.",
      "The sun was",
      "Ben",
      "One day, a girl named Sue went to the shop with her mother and bought bread.",
    ];
    // The first is the golden prompt run to the golden length: the solo runs are transformers'.
    const golden = await goldenStory("qwen35-tiny");
    const maxTokens = (i: number) => i === 0 ? golden.ids.length : 3 + 2 * i;
    const together = await Promise.all(prompts.map((prompt, i) => streamText(p.base, prompt, maxTokens(i))));
    const solo: string[] = [];
    for (const [i, prompt] of prompts.entries()) solo.push(await streamText(p.base, prompt, maxTokens(i)));
    assertEquals(together, solo);
    assertEquals(solo[0], golden.text);
    assert(solo.every((t) => t.length > 0), `empty completion: ${JSON.stringify(solo)}`);
    assertEquals(await metric(p.base, "state_slots_used"), 0);
    assert(await metric(p.base, "state_slots_capacity") > 0, "a hybrid model has state slots");
    assert(/skipping \d+ vision-tower/.test(p.stderr()), p.stderr());
  });
});

test("new families: cli generate continues the goldens from a converted qwen35 GGUF and from qwen3-moe safetensors", async () => {
  const dir = await sys.makeTempDir();
  try {
    const gguf = `${dir}/qwen35-tiny.gguf`;
    const conv = await sys.runScript(MAIN, ["convert", "--model", modelDir("qwen35-tiny"), "--out", gguf]);
    assertEquals(conv.code, 0, conv.stderr);
    for (const [model, path] of [["qwen35-tiny", gguf], ["qwen3-moe-tiny", modelDir("qwen3-moe-tiny")]]) {
      const c = (await loadGolden(model)).cases.find((x) => x.prompt === STORY)!;
      const r = await sys.runScript(MAIN, [
        "generate", "--model", path, "--prompt", STORY,
        "--max-tokens", String(c.greedy_ids.length), "--temperature", "0", "--ignore-eos", "--json",
      ]);
      assertEquals(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assertEquals(out.prompt_ids, c.prompt_ids, model);
      assertEquals(out.ids, c.greedy_ids, model);
      assertEquals(out.text, (await goldenStory(model)).text, model);
    }
  } finally {
    await sys.remove(dir, { recursive: true });
  }
});

test("new families: gpt-oss-mxfp4-tiny serves its golden greedy continuation and reports total and active parameters", async () => {
  const golden = await goldenStory("gpt-oss-mxfp4-tiny");
  await withServe("gpt-oss-mxfp4-tiny", async (p) => {
    assertEquals(await streamText(p.base, STORY, golden.ids.length), golden.text);
    assert(/ready: .*, [\d.]+[KMB] parameters \([\d.]+[KMB] active\)/.test(p.stderr()), p.stderr());
  });
});
