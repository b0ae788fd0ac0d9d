/**
 * Constrained-decoding tests without a model: a matcher's mask decides which tokens may come,
 * and a seeded picker stands in for the sampler (uniform among allowed tokens, sometimes the
 * best by a fake score that prefers closing a structure, so outputs end in bounded steps).
 * @module
 */
import Ajv2020 from "ajv/dist/2020.js";
import { Rng } from "../../bench/rng.ts";
import { allowedIds } from "../../src/grammar/bitmask.ts";
import {
  GrammarCompiler,
  type GrammarCompilerOptions,
} from "../../src/grammar/grammar_compiler.ts";
import type { GrammarMatcher } from "../../src/grammar/matcher.ts";
import {
  buildVocabulary,
  type Vocabulary,
  type VocabularyOptions,
} from "../../src/grammar/vocabulary.ts";
import { Tokenizer } from "../../src/model/tokenizer.ts";
import { MODELS_DIR } from "./fixtures.ts";
import * as sys from "./platform.ts";

/** A reference model's tokenizer, its tokenizer.json and its vocabulary for xgrammar. */
export async function loadVocabulary(
  name: string,
  options: Omit<VocabularyOptions, "tokenizerJson"> = {},
): Promise<{ tokenizer: Tokenizer; json: Record<string, unknown>; vocabulary: Vocabulary }> {
  const dir = MODELS_DIR + name;
  const tokenizer = await Tokenizer.load(dir);
  const json = JSON.parse(await sys.readTextFile(`${dir}/tokenizer.json`));
  return {
    tokenizer,
    json,
    vocabulary: buildVocabulary(tokenizer, { ...options, tokenizerJson: json }),
  };
}

/** A compiler for a reference model's vocabulary. */
export async function compilerFor(
  name: string,
  options: GrammarCompilerOptions = {},
): Promise<{ tokenizer: Tokenizer; compiler: GrammarCompiler }> {
  const { tokenizer, vocabulary } = await loadVocabulary(name);
  return { tokenizer, compiler: await GrammarCompiler.create(vocabulary, options) };
}

/** Token ids spelling `text` one character at a time (its piece, "▁" for a space, else its bytes). */
export function spell(tokenizer: Tokenizer, text: string): number[] {
  return [...text].flatMap((ch) => {
    const id = tokenizer.pieceToToken(ch === " " ? "▁" : ch);
    if (id !== undefined) return [id];
    return [...new TextEncoder().encode(ch)].map((b) =>
      tokenizer.pieceToToken(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`)!
    );
  });
}

/** What {@link generate} produced. */
export interface Generated {
  ids: number[];
  /** Decoded without special tokens (the stop token). */
  text: string;
  terminated: boolean;
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  seed: number;
  maxSteps?: number;
  /** Probability of picking by the fake score instead of uniformly (default 0.3). */
  greedy?: number;
}

// Characters that close a JSON structure or a quoted string, and separators of tool calls.
const CLOSING = /["}\]>]/g;

/**
 * Runs a matcher to termination: at each step fills the mask, checks that it allows something,
 * picks an allowed token and requires the matcher to accept it. After `maxSteps / 2` steps
 * (or with probability `greedy`) it picks by a score that prefers stop tokens, then tokens
 * that close structures, then short tokens.
 */
export function generate(
  matcher: GrammarMatcher,
  tokenizer: Tokenizer,
  stopIds: readonly number[],
  options: GenerateOptions,
): Generated {
  const rng = new Rng(options.seed);
  const maxSteps = options.maxSteps ?? 400;
  const greedy = options.greedy ?? 0.3;
  const mask = new Uint32Array(matcher.maskWords);
  const ids: number[] = [];
  const score = (id: number) => {
    if (stopIds.includes(id)) return 1e6;
    const piece = tokenizer.decode([id]);
    return (piece.match(CLOSING)?.length ?? 0) * 100 - piece.length;
  };
  for (let step = 0; step < maxSteps && !matcher.isTerminated(); step++) {
    matcher.fillNextTokenBitmask(mask);
    const allowed = allowedIds(mask, matcher.vocabSize);
    if (allowed.length === 0) {
      throw new Error(
        `no token allowed after ${JSON.stringify(tokenizer.decode(ids))} (ids ${ids})`,
      );
    }
    let id: number;
    if (step >= maxSteps / 2 || rng.next() < greedy) {
      let best = -Infinity;
      id = allowed[0];
      for (const a of rng.shuffle([...allowed])) {
        const s = score(a);
        if (s > best) [best, id] = [s, a];
      }
    } else {
      id = allowed[Math.floor(rng.next() * allowed.length)];
    }
    if (!matcher.acceptToken(id)) {
      throw new Error(`the matcher rejected token ${id}, which its mask allowed`);
    }
    ids.push(id);
  }
  return {
    ids,
    text: tokenizer.decode(ids, { skipSpecialTokens: true }),
    terminated: matcher.isTerminated(),
  };
}

/** A JSON-schema validator (draft 2020-12, as the schemas use prefixItems). */
export function validator(schema: unknown): ((value: unknown) => boolean) & { errors?: unknown } {
  // deno-lint-ignore no-explicit-any
  const ajv = new (Ajv2020 as any)({ strict: true, strictTuples: false, allErrors: true });
  return ajv.compile(schema);
}
