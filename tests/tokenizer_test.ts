/** Tokenizer: golden prompt ids for every reference model, decoding, special tokens, errors. */
import { test } from "./helpers/test.ts";
import { MODELS_DIR } from "./helpers/fixtures.ts";
import * as sys from "./helpers/platform.ts";
import { CheckpointError } from "../src/model/errors.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { MODEL_NAMES } from "./helpers/reference.ts";

interface Golden {
  cases: { prompt: string; prompt_ids: number[]; greedy_ids: number[] }[];
}

async function golden(name: string): Promise<Golden> {
  return JSON.parse(await sys.readTextFile(`${MODELS_DIR}${name}/golden.json`));
}

async function readJson(name: string, file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await sys.readTextFile(`${MODELS_DIR}${name}/${file}`));
}

for (const name of MODEL_NAMES) {
  test(`tokenizer ${name}: encode reproduces every golden prompt_ids (BOS included)`, async () => {
    const tok = await Tokenizer.load(MODELS_DIR + name);
    const g = await golden(name);
    assert(g.cases.length >= 4);
    for (const c of g.cases) {
      assertEquals(tok.encode(c.prompt), c.prompt_ids, JSON.stringify(c.prompt));
      // Without special tokens: the same ids minus BOS.
      assertEquals(tok.encode(c.prompt, { addSpecialTokens: false }), c.prompt_ids.slice(1));
      assertEquals(tok.decode(c.prompt_ids, { skipSpecialTokens: true }), c.prompt);
    }
    assertEquals([tok.bosTokenId, tok.eosTokenIds, tok.vocabSize, tok.addBosToken], [
      1,
      [2],
      512,
      true,
    ]);
  });
}

test("tokenizer: stories260K greedy continuations decode to English text", async () => {
  const tok = await Tokenizer.load(MODELS_DIR + "stories260K");
  const g = await golden("stories260K");
  const first = g.cases[0];
  const text = tok.decode([...first.prompt_ids, ...first.greedy_ids], { skipSpecialTokens: true });
  assertEquals(
    text,
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the p",
  );
  for (const c of g.cases) {
    const full = tok.decode([...c.prompt_ids, ...c.greedy_ids], { skipSpecialTokens: true });
    assert(full.startsWith(c.prompt), full);
    // Plain ASCII words: no stray replacement characters or special-token text.
    assert(!full.includes("\uFFFD") && !full.includes("<s>"), full);
    assert(/^[\x20-\x7e\n]+$/.test(full), JSON.stringify(full));
  }
});

test("tokenizer: decode(encode(s)) round trips", async () => {
  for (const name of ["stories260K", "llama-tiny"]) {
    const tok = await Tokenizer.load(MODELS_DIR + name);
    for (
      const s of [
        "Hello world",
        "Tom and Lily went to the park.\nThey played all day!",
        "tabs\tand  double  spaces",
        "numbers 12345 and symbols #@%&*()",
        "unicode: é ü 日本語 🙂", // byte fallback
        "",
      ]
    ) {
      const ids = tok.encode(s);
      assertEquals(ids[0], 1, "BOS first");
      assertEquals(
        tok.decode(ids, { skipSpecialTokens: true }),
        s,
        `${name}: ${JSON.stringify(s)}`,
      );
    }
  }
});

test("tokenizer: special tokens, pieces, chat templates, id range", async () => {
  const tok = await Tokenizer.load(MODELS_DIR + "stories260K");
  assertEquals(tok.decode([1, 403, 2]), "<s> Once</s>");
  assertEquals(tok.decode([1, 403, 2], { skipSpecialTokens: true }), "Once");
  assertEquals(tok.tokenToPiece(13), "<0x0A>");
  assertEquals(tok.tokenToPiece(403), "▁Once");
  assertEquals(tok.tokenToPiece(1), "<s>");
  assertEquals(tok.tokenToPiece(100000), undefined);
  assert(tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(403));
  assertThrows(() => tok.decode([5, 512]), RangeError, "512");
  assertThrows(() => tok.decode([-1]), RangeError);
  assertEquals(tok.chatTemplate, null);
  const qwen = await Tokenizer.load(MODELS_DIR + "qwen2-tiny");
  assert(qwen.chatTemplate?.includes("<|im_start|>"), String(qwen.chatTemplate));
  const gemma = await Tokenizer.load(MODELS_DIR + "gemma2-tiny");
  assert(gemma.chatTemplate?.includes("<start_of_turn>"), String(gemma.chatTemplate));
});

test("tokenizer: add_bos_token in tokenizer_config overrides the post-processor", async () => {
  const tokenizer = await readJson("stories260K", "tokenizer.json");
  const config = await readJson("stories260K", "tokenizer_config.json");
  const off = new Tokenizer({ tokenizer, config: { ...config, add_bos_token: false } });
  assertEquals(off.addBosToken, false);
  assertEquals(off.encode("Once upon a time"), [403, 407, 261, 378]);
  // No post-processor in tokenizer.json: BOS comes from add_bos_token alone.
  const bare = { ...tokenizer, post_processor: null };
  const on = new Tokenizer({ tokenizer: bare, config: { ...config, add_bos_token: true } });
  assertEquals(on.encode("Once upon a time"), [1, 403, 407, 261, 378]);
  assertEquals(on.addBosToken, true);
  const neither = new Tokenizer({
    tokenizer: bare,
    config: { ...config, add_bos_token: undefined },
  });
  assertEquals([neither.addBosToken, neither.encode("A")], [false, [410, 447]]);
  // bos/eos given as AddedToken objects.
  const objects = new Tokenizer({
    tokenizer,
    config: {
      ...config,
      bos_token: { content: "<s>" },
      eos_token: { content: "</s>", special: true },
    },
  });
  assertEquals([objects.bosTokenId, objects.eosTokenIds], [1, [2]]);
  // A list of named chat templates picks "default".
  const named = new Tokenizer({
    tokenizer,
    config: {
      ...config,
      chat_template: [{ name: "tool_use", template: "T" }, { name: "default", template: "D" }],
    },
  });
  assertEquals(named.chatTemplate, "D");
});

test("tokenizer: missing or invalid tokenizer.json is a CheckpointError naming it", async () => {
  await withTempDir(async (dir) => {
    const missing = await assertRejects(
      () => Tokenizer.load(dir),
      CheckpointError,
      "tokenizer.json",
    );
    assertEquals(missing.file, `${dir}/tokenizer.json`);
    assert(missing.message.includes("not found"), missing.message);
    await sys.writeTextFile(`${dir}/tokenizer.json`, "{ not json");
    const invalid = await assertRejects(
      () => Tokenizer.load(dir),
      CheckpointError,
      "not valid JSON",
    );
    assertEquals(invalid.file, `${dir}/tokenizer.json`);
    await sys.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify({ version: "1.0" }));
    await assertRejects(
      () => Tokenizer.load(dir),
      CheckpointError,
      `${dir}/tokenizer.json: has no "model"`,
    );
    // tokenizer_config.json is optional, but a broken one is reported.
    await sys.copyFile(`${MODELS_DIR}stories260K/tokenizer.json`, `${dir}/tokenizer.json`);
    assertEquals((await Tokenizer.load(dir)).encode("A"), [1, 410, 447]);
    await sys.writeTextFile(`${dir}/tokenizer_config.json`, "[");
    await assertRejects(() => Tokenizer.load(dir), CheckpointError, `${dir}/tokenizer_config.json`);
  });
});
