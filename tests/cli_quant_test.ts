/**
 * Quantization and GGUF from the command line and the importable API: `cli convert` writes a
 * GGUF that `logits` / `generate` load (tokenizer from the file's vocabulary, no
 * tokenizer.json beside it) with the same results as `--quantization` on the checkpoint;
 * `createEngine` serves a .gguf like a directory; unknown or misspelled flags and bad values
 * are usage errors naming the flag, in the CLI and in serve.ts.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { maxAbs, maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { loadQuantGoldens } from "./helpers/quant_goldens.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { createEngine } from "../mod.ts";

const MAIN = new URL("../src/cli/main.ts", import.meta.url).pathname;
const cli = (...args: string[]) => sys.runScript(MAIN, args);

test("cli convert + logits: a Q8_0 GGUF gives load-time Q8_0's logits, which match the goldens", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/stories-q8.gguf`;
    const conv = await cli("convert", "--model", modelDir("stories260K"), "--out", out, "--quantization", "q8_0");
    assertEquals(conv.code, 0, conv.stderr);
    assert(conv.stdout.includes("Q8_0"), conv.stdout);
    const c = (await loadQuantGoldens())["stories260K"].q8_0[1];
    const ids = c.prompt_ids.join(",");
    const fromFile = await cli("logits", "--model", out, "--ids", ids, "--json");
    const loadTime = await cli("logits", "--model", modelDir("stories260K"), "--ids", ids, "--json", "--quantization", "q8_0");
    assertEquals(fromFile.code, 0, fromFile.stderr);
    assertEquals(loadTime.code, 0, loadTime.stderr);
    const a = JSON.parse(fromFile.stdout).logits as number[][];
    const b = JSON.parse(loadTime.stdout).logits as number[][];
    assertEquals(a, b);
    c.logit_positions.forEach((pos, k) => {
      const err = maxAbsDiff(a[pos], c.logits[k]) / maxAbs(c.logits[k]);
      assert(err < 1e-4, `position ${pos}: relative error ${err}`);
    });
  });
});

test("cli generate and createEngine: a .gguf alone (tokenizer from its vocabulary) serves like the checkpoint", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/stories-q4.gguf`;
    assertEquals((await cli("convert", "--model", modelDir("stories260K"), "--out", out, "--quantization", "q4_0")).code, 0);
    const prompt = "Once upon a time";
    const fromFile = await cli("generate", "--model", out, "--prompt", prompt, "--max-tokens", "16", "--json");
    const loadTime = await cli("generate", "--model", modelDir("stories260K"), "--prompt", prompt, "--max-tokens", "16", "--json", "--quantization", "q4_0");
    assertEquals(fromFile.code, 0, fromFile.stderr);
    const a = JSON.parse(fromFile.stdout);
    const b = JSON.parse(loadTime.stdout);
    assertEquals([a.prompt_ids, a.ids, a.text], [b.prompt_ids, b.ids, b.text]);
    assert(a.text.length > 20, a.text);
    const engine = await createEngine({ model: out, maxBatchTokens: 64 });
    try {
      const r = await engine.generate({ prompt, maxTokens: 16 });
      assertEquals(r.ids, a.ids);
      assertEquals(r.text, a.text);
      assertEquals(engine.info.architecture, "llama");
    } finally {
      await engine.close();
    }
  });
});

test("cli and serve.ts: --quantization values, and misspelled flags are usage errors naming the flag", async () => {
  const misspelled = await cli("logits", "--model", modelDir("stories260K"), "--ids", "1,2", "--quantisation", "q8_0");
  assertEquals(misspelled.code, 2);
  assert(misspelled.stderr.includes("--quantisation"), misspelled.stderr);
  const badValue = await cli("generate", "--model", modelDir("stories260K"), "--prompt", "x", "--quantization", "q5_k");
  assertEquals(badValue.code, 2);
  assert(badValue.stderr.includes("--quantization must be one of q8_0, q4_0, none, got q5_k"), badValue.stderr);
  const badOut = await cli("convert", "--model", modelDir("stories260K"), "--out", "/tmp/x.bin");
  assertEquals(badOut.code, 2);
  assert(badOut.stderr.includes("--out must name a .gguf file"), badOut.stderr);
  const noOut = await cli("convert", "--model", modelDir("stories260K"));
  assertEquals(noOut.code, 2);
  const env = () => undefined;
  assertEquals(parseServeArgs(["--quantization", "q4_0"], env)!.quantization, "q4_0");
  assertEquals(parseServeArgs(["--model", "x.gguf", "--gguf-file", "a.gguf"], env)!.ggufFile, "a.gguf");
  let e = assertThrows(() => parseServeArgs(["--quantisation", "q4_0"], env), UsageError);
  assert(e.message.includes("--quantisation"), e.message);
  e = assertThrows(() => parseServeArgs(["--quantization", "int4"], env), UsageError);
  assert(e.message.includes("--quantization must be one of"), e.message);
});
