/**
 * The reasoning parser (deterministic text in, reasoning and answer out, in any split into
 * pieces), its choice from the chat template, and the grammar gate that starts a constraint
 * after the reasoning's end marker.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { detectReasoningParser, REASONING_PARSERS, reasoningStart, ThinkStreamParser } from "../src/api/reasoning.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { EngineGrammar } from "../src/engine/constraints.ts";
import { modelDir } from "./helpers/reference.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";
import { OutputParser } from "../src/api/output_parser.ts";
import { ToolCallStreamParser } from "../src/grammar/tool_calls.ts";
import type { ToolCall } from "../src/types/api.ts";

/** Runs the parser over `text` cut into pieces of `size` characters. */
function split(text: string, open: boolean, size: number): { reasoning: string; content: string } {
  const p = new ThinkStreamParser("<think>", "</think>", open ? "open" : "expect");
  let reasoning = "";
  let content = "";
  for (let i = 0; i < text.length; i += size) {
    const r = p.push(text.slice(i, i + size));
    reasoning += r.reasoning;
    content += r.content;
  }
  const r = p.finish();
  return { reasoning: reasoning + r.reasoning, content: content + r.content };
}

const CASES: { text: string; open: boolean; reasoning: string; content: string }[] = [
  { text: "<think>\nplan it\n</think>\n\nthe answer", open: false, reasoning: "plan it\n", content: "the answer" },
  { text: "  <think>a<b</think>c", open: false, reasoning: "a<b", content: "c" },
  { text: "no reasoning here", open: false, reasoning: "", content: "no reasoning here" },
  { text: "<thin", open: false, reasoning: "", content: "<thin" },
  // Opened by the prompt: everything up to the end marker is reasoning.
  { text: "step 1</think>\n\nyes", open: true, reasoning: "step 1", content: "yes" },
  // Cut by max_tokens inside the block: reasoning, not content.
  { text: "<think>still thinking </thi", open: false, reasoning: "still thinking </thi", content: "" },
  { text: "still thinking", open: true, reasoning: "still thinking", content: "" },
  { text: "a</think>b</think>c", open: true, reasoning: "a", content: "b</think>c" },
];

test("reasoning parser: splits reasoning from the answer whatever the streaming pieces", () => {
  for (const c of CASES) {
    for (const size of [1, 2, 3, 7, 1000]) {
      assertEquals(split(c.text, c.open, size), { reasoning: c.reasoning, content: c.content }, `${JSON.stringify(c.text)} in pieces of ${size}`);
    }
  }
});

test("reasoning parser: chosen by the chat template, and the prompt says whether a block is open", async () => {
  const think = await Tokenizer.load(modelDir("qwen3-think-tiny"));
  assertEquals(detectReasoningParser(think), "think");
  assertEquals(detectReasoningParser(await Tokenizer.load(modelDir("qwen3-tiny"))), null);
  const open = reasoningStart(REASONING_PARSERS.think, think, think.encode("<|im_start|>assistant\n<think>\n", { addSpecialTokens: false }));
  assertEquals(open, { start: "open", gate: { startTokenId: 3, endTokenIds: [4], open: true } });
  // A template that turns thinking off closes the block itself: no reasoning, no gate.
  const closed = reasoningStart(REASONING_PARSERS.think, think, think.encode("assistant\n<think>\n\n</think>\n\n", { addSpecialTokens: false }));
  assertEquals(closed, { start: "closed", gate: null });
  const history = reasoningStart(REASONING_PARSERS.think, think, think.encode("<think>a</think>b<|im_end|>\nuser\nhi\nassistant\n", { addSpecialTokens: false }));
  assertEquals(history, { start: "expect", gate: { startTokenId: 3, endTokenIds: [4], open: false } });
  const p = new ThinkStreamParser("<think>", "</think>", "closed");
  assertEquals([p.push("<think>x</think>y"), p.finish()], [{ reasoning: "", content: "<think>x</think>y" }, { reasoning: "", content: "" }]);
});

function allowed(mask: Uint32Array, id: number): boolean {
  return (mask[id >>> 5] & (1 << (id & 31))) !== 0;
}

test("reasoning gate: the grammar starts after </think>; before it every token is allowed", async () => {
  const dir = modelDir("qwen3-think-tiny");
  const tok = await Tokenizer.load(dir);
  const grammar = new EngineGrammar({ model: dir, vocabSize: 512, architecture: "qwen3" });
  const spec = { type: "regex" as const, pattern: "yes" };
  const yes = tok.pieceToToken("y")!;
  const other = tok.pieceToToken("z")!;
  assert(yes !== undefined && other !== undefined);
  const words = 512 / 32;
  // Opened by the prompt: free until the end marker, then only the grammar.
  const open = await grammar.constraint(spec, false, { reasoning: { startTokenId: 3, endTokenIds: [4], open: true } });
  const mask = new Uint32Array(words);
  open.fillMask(mask, 0);
  assert(mask.every((w) => w === 0xffffffff), "every token allowed while reasoning");
  assert(open.accept(other) && open.accept(3) && !open.terminated);
  assert(open.accept(4), "the end marker");
  open.fillMask(mask, 0);
  assert(allowed(mask, yes) && !allowed(mask, other) && !allowed(mask, 4), "the grammar after </think>");
  assert(!open.accept(other), "the grammar rejects what it does not allow");
  open.dispose();
  // Not opened: the first token is the grammar's or the start marker.
  const expect = await grammar.constraint(spec, false, { reasoning: { startTokenId: 3, endTokenIds: [4], open: false } });
  expect.fillMask(mask, 0);
  assert(allowed(mask, 3) && allowed(mask, yes) && !allowed(mask, other), "grammar or <think> first");
  assert(expect.accept(yes), "an answer without reasoning is constrained from its first token");
  assert(!expect.accept(3), "no reasoning once the answer started");
  expect.dispose();
  // No gate: the grammar from the first token.
  const plain = await grammar.constraint(spec, false);
  plain.fillMask(mask, 0);
  assert(!allowed(mask, 3) && allowed(mask, yes));
  plain.dispose();
});

test("reasoning parser: --reasoning-parser takes a known name or none", () => {
  const parse = (...argv: string[]) => parseServeArgs(argv, () => undefined)!;
  assertEquals(parse().reasoningParser, undefined);
  assertEquals(parse("--reasoning-parser", "none").reasoningParser, "none");
  assertEquals(parse("--reasoning-parser=qwen3").reasoningParser, "qwen3");
  let error: unknown = null;
  try {
    parse("--reasoning-parser", "harmony-ish");
  } catch (e) {
    error = e;
  }
  assert(error instanceof UsageError && error.message.includes("think"), String(error));
});

test("reasoning parser: tool calls are parsed in the answer only, after the reasoning", () => {
  const call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>';
  const text = `<think>\nmaybe ${call}\n</think>\n\n${call}`;
  for (const size of [1, 5, 1000]) {
    const p = new OutputParser(REASONING_PARSERS.think.parser("expect"), new ToolCallStreamParser("hermes"));
    let reasoning = "";
    let content = "";
    const calls: ToolCall[] = [];
    for (let i = 0; i <= text.length; i += size) {
      const out = p.push(text.slice(i, i + size), i + size > text.length);
      reasoning += out.reasoning ?? "";
      content += out.text;
      for (const d of out.calls ?? []) {
        const c = (calls[d.index] ??= { id: "", name: "", arguments: "" });
        c.name += d.function.name ?? "";
        c.arguments += d.function.arguments ?? "";
      }
    }
    // The call written while reasoning stays reasoning text; the answer's call is a call.
    assertEquals(reasoning, `maybe ${call}\n`, `pieces of ${size}`);
    assertEquals(content.trim(), "");
    assertEquals(calls.map((c) => [c.name, JSON.parse(c.arguments)]), [["add", { a: 1, b: 2 }]]);
    assertEquals(p.calls, 1);
  }
});
