/**
 * Quantization and GGUF from the command line and the importable API: `cli convert` writes a
 * GGUF that `logits` / `generate` load (tokenizer from the file's vocabulary, no
 * tokenizer.json beside it) with the same results as `--quantization` on the checkpoint, and
 * writes Q4_K_M-like files (`--quantization q4_k_m`);
 * `createEngine` serves a .gguf like a directory; unknown or misspelled flags and bad values
 * are usage errors naming the flag, in the CLI and in serve.ts.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { KQUANT_QWEN3_MOE } from "./helpers/kquant_moe.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";
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

test("cli convert --quantization q4_k_m: a Q4_K_M-like MoE file (Q4_K, Q6_K v and down, K-quant experts; Q8_0 where K is no multiple of 256)", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(`${dir}/ck`, KQUANT_QWEN3_MOE, { seed: 7 });
    const out = `${dir}/kq.gguf`;
    const conv = await cli("convert", "--model", `${dir}/ck`, "--out", out, "--quantization", "q4_k_m");
    assertEquals(conv.code, 0, conv.stderr);
    assert(conv.stdout.includes("Q4_K_M"), conv.stdout);
    const header = await readGgufHeader(out);
    const type = (n: string) => header.tensors.get(n)?.type.name;
    assertEquals(header.metadata.get("general.file_type"), 15);
    assertEquals(
      ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_inp"].map((n) => type(`blk.0.${n}.weight`)),
      ["Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q4_K", "Q4_K", "Q6_K", "F32"],
    );
    assertEquals([type("token_embd.weight"), type("output.weight")], ["F32", "F32"]);
    // qwen3-moe-tiny's widths (128, 64) take no K-quant rows: Q8_0 throughout.
    const tiny = `${dir}/tiny.gguf`;
    assertEquals((await cli("convert", "--model", modelDir("qwen3-moe-tiny"), "--out", tiny, "--quantization", "q4_k_m")).code, 0);
    const t = (await readGgufHeader(tiny)).tensors;
    assertEquals(["attn_v", "ffn_gate_exps", "ffn_down_exps"].map((n) => t.get(`blk.0.${n}.weight`)?.type.name), ["Q8_0", "Q8_0", "Q8_0"]);
    const bad = await cli("convert", "--model", `${dir}/ck`, "--out", out, "--quantization", "q5_k");
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes("--quantization must be one of q8_0, q4_0, q4_k_m, none, got q5_k"), bad.stderr);
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
