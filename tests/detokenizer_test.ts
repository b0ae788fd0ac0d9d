/** Request-side text: incremental detokenization and stop strings. */
import { test } from "./helpers/test.ts";
import { IncrementalDetokenizer, StopStringMatcher } from "../src/api/detokenizer.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

test("detokenizer: deltas concatenate to the full decode, leading spaces kept", async () => {
  const tok = await Tokenizer.load(modelDir("stories260K"));
  const golden = await loadGolden("stories260K");
  for (const c of golden.cases) {
    const d = new IncrementalDetokenizer(tok, c.prompt_ids);
    let text = "";
    for (const id of c.greedy_ids) text += d.push([id]);
    text += d.flush();
    const full = tok.decode([...c.prompt_ids, ...c.greedy_ids], { skipSpecialTokens: true });
    const prompt = tok.decode(c.prompt_ids, { skipSpecialTokens: true });
    assertEquals(prompt + text, full);
  }
});

test("detokenizer: a UTF-8 character split over byte-fallback tokens is emitted whole", async () => {
  const tok = await Tokenizer.load(modelDir("stories260K"));
  const ids = tok.encode("Tom said: héllo 😀 ok", { addSpecialTokens: false });
  const d = new IncrementalDetokenizer(tok, [1]);
  const deltas = ids.map((id) => d.push([id]));
  deltas.push(d.flush());
  assertEquals(deltas.join(""), tok.decode(ids));
  for (const delta of deltas) assert(!delta.includes("\uFFFD"), `split character in ${JSON.stringify(delta)}`);
  // The emoji takes 4 byte tokens: three of them produce nothing.
  assert(deltas.filter((x) => x === "").length >= 3, JSON.stringify(deltas));
});

test("stop strings: text stops before the match and partial matches are held back", () => {
  const m = new StopStringMatcher(["STOP", "\n\n"]);
  assertEquals(m.push("hello S"), "hello ");
  assertEquals(m.push("T"), "");
  assertEquals(m.push("x"), "STx");
  assertEquals(m.push(" a\n"), " a");
  assertEquals(m.push("\nmore"), "");
  assert(m.stopped);
  assertEquals(m.push("later"), "");
  const n = new StopStringMatcher(["end"]);
  assertEquals(n.push("the e"), "the ");
  assertEquals(n.flush(), "e");
});
