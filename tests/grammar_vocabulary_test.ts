/**
 * xgrammar loads on this runtime, and its view of each reference model's vocabulary is ours:
 * vocabulary type, special and stop tokens, and the text of every token.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { loadVocabulary } from "./helpers/grammar.ts";
import { MODEL_NAMES } from "./helpers/reference.ts";
import { allowedIds, applyBitmask, bitmaskWords, isAllowed } from "../src/grammar/bitmask.ts";
import { GrammarCompiler } from "../src/grammar/grammar_compiler.ts";
import {
  buildVocabulary,
  byteLevelChars,
  detectAddPrefixSpace,
  detectVocabType,
  tokenBytes,
} from "../src/grammar/vocabulary.ts";
import { loadXGrammar, tokenizerInfoOf } from "../src/grammar/xgrammar.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { byteLevelTokenizerJson } from "../bench/byte_level_tokenizer.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });
function validUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

test("xgrammar: loads (WebAssembly inlined, no network) and two instances are independent", async () => {
  const a = await loadXGrammar();
  const b = await loadXGrammar();
  const ebnf = await a.Testings._jsonSchemaToEBNF(JSON.stringify({ type: "boolean" }), false, -1);
  assert(ebnf.includes("root ::="), ebnf);
  // An abort in one instance (xgrammar has no C++ exceptions in this build) leaves the other usable.
  let threw = false;
  try {
    await a.Grammar.fromEBNF("root ::= undefined_rule");
  } catch {
    threw = true;
  }
  assert(threw, "a bad grammar must throw");
  assert(
    a.takeLog().some((l) => l.includes('Rule "undefined_rule" is not defined')),
    "the reason reaches the captured log",
  );
  assert((await b.Grammar.fromEBNF('root ::= "x"')).toString().includes("root"));
});

for (const name of MODEL_NAMES) {
  test(`vocabulary ${name}: xgrammar decodes every token as our tokenizer does`, async () => {
    const { tokenizer, vocabulary: v } = await loadVocabulary(name);
    assertEquals(v.vocabType, "byte_fallback");
    assertEquals(v.addPrefixSpace, true);
    assertEquals(v.stopTokenIds, tokenizer.eosTokenIds);
    assertEquals(v.vocabSize, tokenizer.vocabSize);
    const xg = await loadXGrammar();
    const info = await tokenizerInfoOf(xg, v);
    assertEquals(info.getVocabSize(), tokenizer.vocabSize);
    const decoded = info.getDecodedVocabHandle();
    // Our decode of one token, without the decoder's leading-space strip: decode it after "a".
    const a = tokenizer.pieceToToken("a")!;
    const prefix = tokenizer.decode([a]);
    let compared = 0;
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      if (tokenizer.isSpecial(id)) {
        assertEquals(v.encoded[id], "", `special token ${id} must be hidden from grammars`);
        assertEquals(decoded.get(id), "");
        continue;
      }
      const bytes = tokenBytes(v, id);
      assert(bytes.length > 0, `token ${id} has no bytes`);
      const ours = tokenizer.decode([a, id]).slice(prefix.length);
      const text = validUtf8(bytes);
      if (text === null) {
        // A lone byte of a multi-byte character: one byte, which our decoder shows as U+FFFD.
        assertEquals(bytes.length, 1, `token ${id}`);
        assertEquals(ours, "\uFFFD", `token ${id}`);
        continue;
      }
      assertEquals(
        decoded.get(id),
        text,
        `xgrammar's text of token ${id} (${tokenizer.tokenToPiece(id)})`,
      );
      assertEquals(ours, text, `our text of token ${id} (${tokenizer.tokenToPiece(id)})`);
      compared++;
    }
    assert(compared > 300, `compared ${compared} tokens`);
    decoded.delete();
  });
}

test("vocabulary: a byte token is that byte to the grammar (é = C3 A9, as one token or two)", async () => {
  const { tokenizer, vocabulary } = await loadVocabulary("stories260K");
  const compiler = await GrammarCompiler.create(vocabulary, { probe: false });
  const m = await (await compiler.compile({ type: "choice", choices: ["é"] })).createMatcher();
  const c3 = tokenizer.pieceToToken("<0xC3>")!;
  const a9 = tokenizer.pieceToToken("<0xA9>")!;
  const e = tokenizer.pieceToToken("é");
  const mask = new Uint32Array(m.maskWords);
  m.fillNextTokenBitmask(mask);
  assertEquals(
    allowedIds(mask, m.vocabSize),
    e === undefined ? [c3] : [c3, e].sort((x, y) => x - y),
  );
  assert(m.acceptToken(c3));
  m.fillNextTokenBitmask(mask);
  assertEquals(allowedIds(mask, m.vocabSize), [a9]);
  assert(m.acceptToken(a9));
  m.fillNextTokenBitmask(mask);
  assertEquals(allowedIds(mask, m.vocabSize), tokenizer.eosTokenIds);
  compiler.close();
});

test("vocabulary: a GPT-2 style byte-level tokenizer is detected and decoded byte for byte", async () => {
  // A byte-level BPE: the 256 byte characters, a few merges, and an added special token.
  const vocab: Record<string, number> = {};
  byteLevelChars().forEach((ch, b) => (vocab[ch] = b));
  const merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["Ã", "©"]];
  for (const [x, y] of merges) vocab[x + y] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  vocab["<|endoftext|>"] = eos;
  const json = byteLevelTokenizerJson(vocab, merges.map((m) => m.join(" ")), ["<|endoftext|>"]);
  const tokenizer = new Tokenizer({ tokenizer: json, config: { eos_token: "<|endoftext|>" } });
  assertEquals(detectVocabType(json), "byte_level");
  assertEquals(detectAddPrefixSpace(json), false);
  const v = buildVocabulary(tokenizer, { tokenizerJson: json, vocabSize: 300 });
  assertEquals(v.vocabSize, 300, "padded to the model's logits");
  assertEquals(v.stopTokenIds, [eos]);
  assertEquals(v.encoded[eos], "");
  // Every token's bytes are what our tokenizer decodes it to (whole characters compared).
  assertEquals(new TextDecoder().decode(tokenBytes(v, vocab["Ġthe"])), " the");
  assertEquals(new TextDecoder().decode(tokenBytes(v, vocab["Ã©"])), "é");
  for (const text of ["the", " the café", '{"a": [1, 2]}\n']) {
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    const bytes = ids.flatMap((id) => [...tokenBytes(v, id)]);
    assertEquals(
      new TextDecoder().decode(Uint8Array.from(bytes)),
      tokenizer.decode(ids),
      JSON.stringify(text),
    );
  }
  const xg = await loadXGrammar();
  const info = await tokenizerInfoOf(xg, v);
  const decoded = info.getDecodedVocabHandle();
  assertEquals(decoded.get(vocab["Ġthe"]), " the");
  assertEquals(decoded.get(vocab["Ã©"]), "é");
  decoded.delete();
  // The grammar sees the bytes: "é" is one token here.
  const compiler = await GrammarCompiler.create(v, { probe: false });
  const m = await (await compiler.compile({ type: "choice", choices: [" the é"] })).createMatcher();
  for (const id of [vocab["Ġthe"], vocab["Ġ"], vocab["Ã©"]]) {
    assert(m.acceptToken(id), `token ${id}`);
  }
  const mask = new Uint32Array(m.maskWords);
  m.fillNextTokenBitmask(mask);
  assertEquals(allowedIds(mask, 300), [eos]);
});

test("bitmask: layout, applyBitmask sets disallowed logits to -Infinity", () => {
  assertEquals(bitmaskWords(512), 16);
  assertEquals(bitmaskWords(513), 17);
  const mask = new Uint32Array(2);
  mask[0] = (1 << 3) | (1 << 31);
  mask[1] = 1 << 1;
  assert(isAllowed(mask, 3) && isAllowed(mask, 31) && isAllowed(mask, 33) && !isAllowed(mask, 0));
  assertEquals(allowedIds(mask, 40), [3, 31, 33]);
  const logits = Float32Array.from({ length: 40 }, (_, i) => i);
  applyBitmask(logits, mask);
  assertEquals([...logits].map((x, i) => (x === -Infinity ? -1 : i)).filter((i) => i >= 0), [
    3,
    31,
    33,
  ]);
});
