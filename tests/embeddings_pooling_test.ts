/**
 * Which pooling embeddings use: a sentence-transformers checkpoint's `modules.json` /
 * `1_Pooling/config.json` (mean, last token, or one not implemented), the `pooling` option
 * over it, and mod.ts's `embed` on such a checkpoint (mean pooling: it differs from the
 * last-token golden; an unimplemented pooling refuses requests with a clear error).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertRejects } from "./helpers/assert.ts";
import { readPoolingConfig, resolvePooling } from "../src/model/pooling_config.ts";
import { CheckpointError } from "../src/model/errors.ts";
import { createEngine, InvalidRequestError } from "../mod.ts";
import { maxAbsDiff, modelDir } from "./helpers/reference.ts";
import { readTextFile } from "../src/runtime/runtime.ts";
import { parseServeArgs } from "../src/server/args.ts";

const MODULES = [
  { idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" },
  { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" },
  { idx: 2, name: "2", path: "2_Normalize", type: "sentence_transformers.models.Normalize" },
];

function poolingFlags(on: string): Record<string, unknown> {
  const modes = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"];
  return { word_embedding_dimension: 128, ...Object.fromEntries(modes.map((m) => [`pooling_mode_${m}`, m === on])), include_prompt: true };
}

/** A copy of qwen3-tiny with a sentence-transformers pooling config. */
async function checkpoint(pooling: Record<string, unknown> | string | null): Promise<string> {
  const dir = await sys.makeTempDir({ prefix: "embed-pooling-" });
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    await sys.copyFile(`${modelDir("qwen3-tiny")}/${f}`, `${dir}/${f}`);
  }
  if (pooling !== null) {
    await sys.writeTextFile(`${dir}/modules.json`, JSON.stringify(MODULES));
    await sys.mkdir(`${dir}/1_Pooling`);
    await sys.writeTextFile(`${dir}/1_Pooling/config.json`, typeof pooling === "string" ? pooling : JSON.stringify(pooling));
  }
  return dir;
}

test("embeddings pooling: sentence-transformers config, the option over it, serve's --pooling", async () => {
  const dirs: string[] = [];
  const make = async (p: Record<string, unknown> | string | null) => {
    const d = await checkpoint(p);
    dirs.push(d);
    return d;
  };
  try {
    assertEquals(await readPoolingConfig(await make(null)), null);
    assertEquals(await resolvePooling(modelDir("qwen3-tiny")), "last");
    assertEquals(await readPoolingConfig(await make(poolingFlags("mean_tokens"))), { pooling: "mean" });
    assertEquals(await readPoolingConfig(await make(poolingFlags("lasttoken"))), { pooling: "last" });
    assertEquals(await readPoolingConfig(await make({ pooling_mode: "mean" })), { pooling: "mean" });
    const cls = await make(poolingFlags("cls_token"));
    assertEquals(await readPoolingConfig(cls), { unsupported: "cls_token" });
    assertEquals(await resolvePooling(cls), null);
    assertEquals(await resolvePooling(cls, "mean"), "mean");
    const broken = await make("{ not json");
    const e = await readPoolingConfig(broken).catch((e) => e);
    assert(e instanceof CheckpointError && e.code === "checkpoint_invalid", String(e));
    // A GGUF file has nothing beside it: the default.
    assertEquals(await resolvePooling(`${modelDir("qwen3-tiny")}/config.json`), "last");
    assertEquals(parseServeArgs(["--pooling", "mean"], () => undefined)?.tuning?.pooling, "mean");
  } finally {
    for (const d of dirs) await sys.remove(d, { recursive: true });
  }
});

test("embeddings pooling: mod.ts embed on a mean-pooling checkpoint; an unimplemented pooling is refused", async () => {
  const golden = JSON.parse(await readTextFile(`${modelDir("qwen3-tiny")}/embedding-golden.json`));
  const meanDir = await checkpoint(poolingFlags("mean_tokens"));
  const clsDir = await checkpoint(poolingFlags("cls_token"));
  const mean = await createEngine({ model: meanDir, kvDtype: "f32", maxSeqs: 4 });
  const cls = await createEngine({ model: clsDir, kvDtype: "f32", maxSeqs: 4 });
  try {
    assertEquals(mean.info.pooling, "mean");
    const ids = golden.cases[1].input_ids.slice(0, -1); // no end-of-text appended for mean pooling
    const [a, b] = await Promise.all([mean.embed({ input: golden.cases[1].input }), mean.embed({ input: ids })]);
    assertEquals(a.usage.promptTokens, ids.length);
    assertEquals(Array.from(a.embeddings[0]), Array.from(b.embeddings[0]));
    assert(maxAbsDiff(a.embeddings[0], golden.cases[1].embedding) > 1e-2, "mean differs from the last-token golden");
    assertEquals(cls.info.pooling, null);
    await assertRejects(() => cls.embed({ input: "A" }), InvalidRequestError);
    // Aborted before it starts: rejects with the signal's reason.
    const abort = new AbortController();
    abort.abort(new Error("gone"));
    await assertRejects(() => mean.embed({ input: "A", signal: abort.signal }), Error, "gone");
  } finally {
    await mean.close();
    await cls.close();
    await sys.remove(meanDir, { recursive: true });
    await sys.remove(clsDir, { recursive: true });
  }
});

test("cli embed: prints transformers' embedding of a text; a bad --pooling is a usage error", async () => {
  const golden = JSON.parse(await readTextFile(`${modelDir("qwen3-tiny")}/embedding-golden.json`));
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const r = await sys.runScript(main, ["embed", "--model", modelDir("qwen3-tiny"), "--input", golden.cases[0].input, "--kv-dtype", "f32"]);
  assertEquals(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assertEquals(out.prompt_tokens, golden.cases[0].input_ids.length);
  assert(maxAbsDiff(out.embedding, golden.cases[0].embedding) <= 1e-4, "cli embed vs golden");
  const bad = await sys.runScript(main, ["embed", "--model", modelDir("qwen3-tiny"), "--input", "A", "--pooling", "cls"]);
  assertEquals(bad.code, 2, bad.stderr);
});
