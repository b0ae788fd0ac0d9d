/**
 * Command line: `generate` (greedy continuation) and `logits` (teacher-forced forward).
 * Usage: deno task cli generate --model DIR --prompt TEXT --max-tokens N [--temperature 0]
 *        [--ignore-eos] [--json] [--attn paged|eager]
 *        deno task cli logits --model DIR --ids 1,2,3 [--json] [--attn paged|eager]
 * @module
 */
import { args, exit } from "../runtime/runtime.ts";
import { ModelRunner } from "../model/model_runner.ts";
import { greedyGenerate } from "../model/greedy.ts";
import { buildStepBatch } from "../model/step_batch.ts";
import type { AttentionImpl } from "../model/forward.ts";

/** Raised for bad command-line usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const USAGE = `usage:
  cli generate --model DIR --prompt TEXT --max-tokens N [--temperature 0] [--ignore-eos] [--json] [--attn paged|eager]
  cli logits --model DIR --ids 1,2,3 [--json] [--attn paged|eager]`;

const BOOLEAN_FLAGS = new Set(["ignore-eos", "json", "help"]);

/** Parses `--flag value` / `--flag=value` / boolean flags. */
export function parseArgs(args: string[]): { command: string | undefined; flags: Map<string, string> } {
  const flags = new Map<string, string>();
  let command: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) {
      if (command !== undefined) throw new UsageError(`unexpected argument ${a}`);
      command = a;
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (eq > 0) flags.set(name, a.slice(eq + 1));
    else if (BOOLEAN_FLAGS.has(name)) flags.set(name, "true");
    else {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      flags.set(name, v);
    }
  }
  return { command, flags };
}

function required(flags: Map<string, string>, name: string): string {
  const v = flags.get(name);
  if (v === undefined) throw new UsageError(`missing --${name}`);
  return v;
}

function integer(flags: Map<string, string>, name: string, fallback?: number): number {
  const raw = flags.get(name);
  if (raw === undefined) {
    if (fallback === undefined) throw new UsageError(`missing --${name}`);
    return fallback;
  }
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new UsageError(`--${name} must be a non-negative integer, got ${raw}`);
  return v;
}

function attnOf(flags: Map<string, string>): AttentionImpl {
  const a = flags.get("attn") ?? "paged";
  if (a !== "paged" && a !== "eager") throw new UsageError(`--attn must be paged or eager, got ${a}`);
  return a;
}

/** Runs the CLI; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const { command, flags } = parseArgs(args);
  if (flags.has("help") || command === undefined) {
    console.log(USAGE);
    return command === undefined && !flags.has("help") ? 2 : 0;
  }
  const json = flags.has("json");
  if (command === "generate") {
    const model = required(flags, "model");
    const prompt = required(flags, "prompt");
    const maxTokens = integer(flags, "max-tokens", 64);
    const temperature = Number(flags.get("temperature") ?? "0");
    if (temperature !== 0) {
      throw new UsageError("the CLI samples greedily only (--temperature 0); sampling is in the engine API");
    }
    const runner = await ModelRunner.load(model, { attn: attnOf(flags) });
    try {
      const promptIds = runner.tokenizer.encode(prompt);
      const ids = await greedyGenerate(runner, promptIds, {
        maxTokens,
        ignoreEos: flags.has("ignore-eos"),
      });
      const text = runner.tokenizer.decode(ids, { skipSpecialTokens: true });
      if (json) console.log(JSON.stringify({ prompt_ids: promptIds, ids, text }));
      else console.log(prompt + text);
    } finally {
      runner.close();
    }
    return 0;
  }
  if (command === "logits") {
    const model = required(flags, "model");
    const ids = required(flags, "ids").split(",").map((s) => {
      const v = Number(s.trim());
      if (!Number.isInteger(v) || v < 0) throw new UsageError(`--ids must be comma-separated token ids, got ${s}`);
      return v;
    });
    if (ids.length === 0) throw new UsageError("--ids is empty");
    const runner = await ModelRunner.load(model, {
      attn: attnOf(flags),
      maxTokens: Math.max(ids.length, 16),
      maxLogitRows: ids.length,
      maxSeqs: 1,
    });
    try {
      const vocab = runner.spec.vocabSize;
      const bad = ids.find((i) => i >= vocab);
      if (bad !== undefined) throw new UsageError(`token id ${bad} is outside the vocabulary (${vocab})`);
      const table = runner.blocks.allocate(Math.ceil(ids.length / runner.cache.options.blockSize));
      const batch = buildStepBatch([{ tokens: ids, start: 0, blockTable: table, logits: "all" }], runner.cache.options.blockSize);
      const { logits } = await runner.run(batch, { logits: true });
      runner.blocks.release(table);
      const rows = ids.map((_, r) => Array.from(logits!.subarray(r * vocab, (r + 1) * vocab)));
      if (json) console.log(JSON.stringify({ logits: rows }));
      else {
        rows.forEach((row, r) => {
          const top = row.map((v, i) => [v, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
          console.log(`${r}: ${top.map(([v, i]) => `${i}:${v.toFixed(4)}`).join(" ")}`);
        });
      }
    } finally {
      runner.close();
    }
    return 0;
  }
  throw new UsageError(`unknown command ${command}`);
}

if (import.meta.main) {
  try {
    exit(await main(args()));
  } catch (e) {
    const err = e as Error;
    console.error(`error: ${err.name === "Error" ? "" : err.name + ": "}${err.message}`);
    if (err instanceof UsageError) console.error(USAGE);
    exit(err instanceof UsageError ? 2 : 1);
  }
}
