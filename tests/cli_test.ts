/**
 * The CLI as the reference checks use it: `generate --json` and `logits --json` in a
 * subprocess, and usage errors.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { loadGolden, maxAbs, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return await sys.runScript(MAIN, args);
}

test("cli generate: stories260K continues 'Once upon a time' exactly like transformers", async () => {
  const golden = await loadGolden("stories260K");
  const c = golden.cases[0];
  const r = await cli(
    "generate", "--model", modelDir("stories260K"), "--prompt", "Once upon a time",
    "--max-tokens", "24", "--temperature", "0", "--json",
  );
  assertEquals(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assertEquals(out.prompt_ids, c.prompt_ids);
  assertEquals(out.ids, c.greedy_ids);
  assertEquals(out.text, ", there was a little girl named Lily. She loved to play outside in the p");
});

test("cli generate: stops at EOS unless --ignore-eos", async () => {
  // stories260K never emits </s> on this prompt, so make its second greedy token (383) the
  // EOS of a copy of the checkpoint (config and generation config alike).
  const dir = await sys.makeTempDir();
  try {
    for await (const e of sys.readDir(modelDir("stories260K"))) {
      await sys.copyFile(`${modelDir("stories260K")}/${e.name}`, `${dir}/${e.name}`);
    }
    for (const file of ["config.json", "generation_config.json"]) {
      const json = JSON.parse(await sys.readTextFile(`${dir}/${file}`));
      json.eos_token_id = 383;
      await sys.writeTextFile(`${dir}/${file}`, JSON.stringify(json));
    }
    const args = ["generate", "--model", dir, "--prompt", "Once upon a time", "--max-tokens", "24", "--json"];
    const stopped = JSON.parse((await cli(...args)).stdout);
    assertEquals(stopped.ids, [432, 383]);
    const forced = JSON.parse((await cli(...args, "--ignore-eos")).stdout);
    assertEquals(forced.ids, (await loadGolden("stories260K")).cases[0].greedy_ids);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
});

test("cli logits: teacher-forced rows match transformers", async () => {
  const golden = await loadGolden("qwen2-tiny");
  const c = golden.cases[0];
  const r = await cli("logits", "--model", modelDir("qwen2-tiny"), "--ids", c.prompt_ids.join(","), "--json");
  assertEquals(r.code, 0, r.stderr);
  const { logits } = JSON.parse(r.stdout) as { logits: number[][] };
  assertEquals(logits.length, c.prompt_ids.length);
  c.logit_positions.forEach((pos, k) => {
    assertEquals(logits[pos].length, 512);
    const err = maxAbsDiff(logits[pos], c.logits[k]) / maxAbs(c.logits[k]);
    assert(err < 1e-4, `position ${pos}: relative error ${err}`);
  });
});

test("cli: bad usage exits 2 with a message, a bad model dir exits 1 naming the file", async () => {
  const noModel = await cli("generate", "--prompt", "x");
  assertEquals(noModel.code, 2);
  assert(noModel.stderr.includes("missing --model"), noModel.stderr);
  const badIds = await cli("logits", "--model", modelDir("stories260K"), "--ids", "1,x");
  assertEquals(badIds.code, 2);
  const outOfVocab = await cli("logits", "--model", modelDir("stories260K"), "--ids", "1,99999");
  assertEquals(outOfVocab.code, 2);
  assert(outOfVocab.stderr.includes("outside the vocabulary"), outOfVocab.stderr);
  const missing = await cli("generate", "--model", "/nonexistent/model", "--prompt", "x");
  assertEquals(missing.code, 1);
  assert(missing.stderr.includes("/nonexistent/model"), missing.stderr);
});

test("cli: --gpu-memory-bytes sizes the KV cache from a total; a MoE model's total and active parameters are printed", async () => {
  const r = await cli(
    "generate", "--model", modelDir("qwen3-moe-tiny"), "--prompt", "Once", "--max-tokens", "2",
    "--temperature", "0", "--json", "--gpu-memory-bytes", "64M",
  );
  assertEquals(r.code, 0, r.stderr);
  assertEquals(JSON.parse(r.stdout).ids.length, 2);
  assert(/model: qwen3_moe, [\d.]+[KMB] parameters \([\d.]+[KMB] active\)/.test(r.stderr), r.stderr);
  const memory = /memory: weights [\d.]+ MiB \(experts [\d.]+ MiB\), KV cache ([\d.]+) MiB \(what the weights and step buffers left of --gpu-memory-bytes 64\.0 MiB\)/.exec(r.stderr);
  assert(memory, r.stderr);
  assert(Number(memory[1]) > 0 && Number(memory[1]) < 64, memory[0]);
  const bad = await cli("generate", "--model", modelDir("qwen3-moe-tiny"), "--prompt", "x", "--gpu-memory-bytes", "1.5G");
  assertEquals(bad.code, 2);
  assert(bad.stderr.includes("--gpu-memory-bytes must be a byte count"), bad.stderr);
});
