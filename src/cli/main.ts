/**
 * Command line: `generate` runs a request through the engine (the same path as `mod.ts` and
 * serve.ts); `batch` answers an OpenAI Batch API file; `logits` prints the teacher-forced
 * logits of token ids; `convert` writes a checkpoint as a GGUF file llama.cpp runs; `embed`
 * prints a text's embedding (the same path as `engine.embed` and /v1/embeddings).
 * Usage: see {@link USAGE} (`deno task cli --help`).
 * @module
 */
import process from "node:process";
import { args, exit, RUNTIME, scriptCommand } from "../runtime/runtime.ts";
import { exitWithGuard, isGuardedChild, runGuarded } from "./panic_guard.ts";
import { createEngine, type GenerateOptions, LlmError } from "../../mod.ts";
import {
  type AttentionImpl,
  type EngineOptions,
  KERNEL_FAMILIES,
  KV_DTYPES,
  POOLINGS,
  type Quantization,
  QUANTIZATIONS,
} from "../types/api.ts";
import { CONVERT_QUANTIZATIONS, convertToGguf } from "../model/gguf/convert.ts";
import { ModelRunner } from "../runner/model_runner.ts";
import { buildStepBatch } from "../runner/step_meta.ts";
import { runBatch } from "./batch.ts";
import { byteCountFlag, speculativeConfigFlag, UsageError } from "../server/args.ts";
import { cliEngineNote } from "../server/startup_notes.ts";

const USAGE = `usage:
  cli generate --model DIR|FILE.gguf --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]
               [--top-p P] [--min-p P] [--seed S] [--ignore-eos] [--json] [--attn paged|eager]
               [--quantization q8_0|q4_0|none] [--quantized-activations]
               [--kernel-family cpu|gpu] [--kv-dtype f16|f32] [--gpu-memory-bytes N]
               [--allow-fallback-adapter] [--speculative-config JSON]
  cli batch --model DIR|FILE.gguf --input requests.jsonl --output results.jsonl [--resume]
            [--concurrency N] [--served-model-name NAME] [--max-batch-tokens N] [--max-seqs N]
            [--max-line-bytes N] [--speculative-config JSON]
            [--attn paged|eager] [--quantization q8_0|q4_0|none] [--quantized-activations]
            [--kernel-family cpu|gpu] [--kv-dtype f16|f32] [--gpu-memory-bytes N]
            [--allow-fallback-adapter]
  cli logits --model DIR|FILE.gguf --ids 1,2,3 [--json] [--attn paged|eager] [--quantization q8_0|q4_0|none]
             [--allow-fallback-adapter]
  cli convert --model DIR --out FILE.gguf [--quantization q8_0|q4_0|q4_k_m|none]
  cli embed --model DIR|FILE.gguf --input TEXT [--dimensions N] [--pooling last|mean]
            [--kernel-family cpu|gpu] [--kv-dtype f16|f32] [--gpu-memory-bytes N]
            [--allow-fallback-adapter]`;

/** The flags each command accepts; `true` marks a boolean flag. */
const COMMANDS: Record<string, Record<string, boolean>> = {
  generate: {
    model: false,
    prompt: false,
    "max-tokens": false,
    temperature: false,
    "top-k": false,
    "top-p": false,
    "min-p": false,
    seed: false,
    "ignore-eos": true,
    json: true,
    attn: false,
    quantization: false,
    "kernel-family": false,
    "kv-dtype": false,
    "gpu-memory-bytes": false,
    "quantized-activations": true,
    "allow-fallback-adapter": true,
    "speculative-config": false,
  },
  batch: {
    model: false,
    input: false,
    output: false,
    resume: true,
    concurrency: false,
    "served-model-name": false,
    "max-line-bytes": false,
    "max-batch-tokens": false,
    "max-seqs": false,
    "speculative-config": false,
    attn: false,
    quantization: false,
    "kernel-family": false,
    "kv-dtype": false,
    "gpu-memory-bytes": false,
    "quantized-activations": true,
    "allow-fallback-adapter": true,
  },
  logits: { model: false, ids: false, json: true, attn: false, quantization: false, "allow-fallback-adapter": true },
  convert: { model: false, out: false, quantization: false },
  embed: {
    model: false,
    input: false,
    dimensions: false,
    pooling: false,
    "kernel-family": false,
    "kv-dtype": false,
    "gpu-memory-bytes": false,
    "allow-fallback-adapter": true,
  },
};

/** Parses `command --flag value` / `--flag=value` / boolean flags; unknown flags are errors. */
export function parseArgs(
  argv: string[],
): { command: string | undefined; flags: Map<string, string> } {
  const flags = new Map<string, string>();
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      flags.set("help", "true");
      continue;
    }
    if (!a.startsWith("--")) {
      if (command !== undefined) throw new UsageError(`unexpected argument ${a}`);
      if (!(a in COMMANDS)) throw new UsageError(`unknown command ${a}`);
      command = a;
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const known = command === undefined ? undefined : COMMANDS[command][name];
    if (known === undefined) {
      throw new UsageError(
        command === undefined
          ? `--${name} before the command`
          : `unknown flag --${name} for ${command}`,
      );
    }
    if (eq > 0) flags.set(name, a.slice(eq + 1));
    else if (known) flags.set(name, "true");
    else {
      const v = argv[++i];
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

function number(flags: Map<string, string>, name: string, integer = false): number | undefined {
  const raw = flags.get(name);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got ${raw}`);
  }
  return v;
}

function attnOf(flags: Map<string, string>): AttentionImpl {
  const a = flags.get("attn") ?? "paged";
  if (a !== "paged" && a !== "eager") {
    throw new UsageError(`--attn must be paged or eager, got ${a}`);
  }
  return a;
}

function oneOf<T extends string>(
  flags: Map<string, string>,
  name: string,
  allowed: readonly T[],
): T | undefined {
  const v = flags.get(name);
  if (v !== undefined && !allowed.includes(v as T)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got ${v}`);
  }
  return v as T | undefined;
}

/**
 * `--kernel-family`, `--kv-dtype`, `--gpu-memory-bytes` and `--quantized-activations` (engine
 * defaults when absent).
 */
function tuningOf(
  flags: Map<string, string>,
): Pick<EngineOptions, "kernelFamily" | "kvDtype" | "gpuMemoryBytes" | "quantizedActivations" | "allowFallbackAdapter"> {
  const memory = flags.get("gpu-memory-bytes");
  return {
    kernelFamily: oneOf(flags, "kernel-family", KERNEL_FAMILIES),
    kvDtype: oneOf(flags, "kv-dtype", KV_DTYPES),
    gpuMemoryBytes: memory === undefined ? undefined : byteCountFlag("gpu-memory-bytes", memory),
    quantizedActivations: flags.has("quantized-activations") || undefined,
    allowFallbackAdapter: flags.has("allow-fallback-adapter") || undefined,
  };
}

function quantizationOf(flags: Map<string, string>): Quantization {
  return quantizationIn(flags, QUANTIZATIONS);
}

/** `--quantization`, one of `values` ("none" when absent). */
function quantizationIn<Q extends string>(flags: Map<string, string>, values: readonly Q[]): Q {
  const q = flags.get("quantization") ?? "none";
  if (!(values as readonly string[]).includes(q)) {
    throw new UsageError(`--quantization must be one of ${values.join(", ")}, got ${q}`);
  }
  return q as Q;
}

async function convert(flags: Map<string, string>): Promise<number> {
  const out = required(flags, "out");
  if (!/\.gguf$/i.test(out)) throw new UsageError(`--out must name a .gguf file, got ${out}`);
  const r = await convertToGguf(required(flags, "model"), out, {
    // convert also writes Q4_K_M-like files (K-quants are read, not made, at load time).
    quantization: quantizationIn(flags, CONVERT_QUANTIZATIONS),
  });
  console.log(`wrote ${r.path}: ${r.tensors} tensors, ${r.bytes} bytes, ${r.fileType}`);
  return 0;
}

async function generate(flags: Map<string, string>): Promise<number> {
  const model = required(flags, "model");
  const prompt = required(flags, "prompt");
  const options: GenerateOptions = {
    prompt,
    maxTokens: number(flags, "max-tokens", true),
    temperature: number(flags, "temperature"),
    topK: number(flags, "top-k", true),
    topP: number(flags, "top-p"),
    minP: number(flags, "min-p"),
    seed: number(flags, "seed", true),
    ignoreEos: flags.has("ignore-eos"),
  };
  const engine = await createEngine({
    model,
    attn: attnOf(flags),
    maxSeqs: 1,
    quantization: quantizationOf(flags),
    ...tuningOf(flags),
    speculative: speculativeConfigFlag(flags.get("speculative-config")),
  });
  process.stderr.write(cliEngineNote(engine.info));
  try {
    if (flags.has("json")) {
      const r = await engine.generate(options);
      console.log(
        JSON.stringify({
          prompt_ids: r.promptIds,
          ids: r.ids,
          text: r.text,
          finish_reason: r.finishReason,
        }),
      );
    } else {
      process.stdout.write(prompt);
      for await (const d of engine.stream(options)) process.stdout.write(d.text);
      process.stdout.write("\n");
    }
  } finally {
    await engine.close();
  }
  return 0;
}

function positive(flags: Map<string, string>, name: string): number | undefined {
  const v = number(flags, name, true);
  if (v !== undefined && v < 1) {
    throw new UsageError(`--${name} must be a positive integer, got ${v}`);
  }
  return v;
}

function batch(flags: Map<string, string>): Promise<number> {
  return runBatch({
    model: required(flags, "model"),
    input: required(flags, "input"),
    output: required(flags, "output"),
    resume: flags.has("resume"),
    concurrency: positive(flags, "concurrency"),
    servedModelName: flags.get("served-model-name"),
    maxBatchTokens: positive(flags, "max-batch-tokens"),
    maxSeqs: positive(flags, "max-seqs"),
    maxLineBytes: positive(flags, "max-line-bytes"),
    attn: attnOf(flags),
    quantization: quantizationOf(flags),
    tuning: { ...tuningOf(flags), speculative: speculativeConfigFlag(flags.get("speculative-config")) },
  });
}

async function logits(flags: Map<string, string>): Promise<number> {
  const model = required(flags, "model");
  const ids = required(flags, "ids").split(",").map((s) => {
    const v = Number(s.trim());
    if (s.trim() === "" || !Number.isInteger(v) || v < 0) {
      throw new UsageError(`--ids must be comma-separated token ids, got ${s}`);
    }
    return v;
  });
  const runner = await ModelRunner.load(model, {
    attn: attnOf(flags),
    maxTokens: Math.max(ids.length, 16),
    maxLogitRows: ids.length,
    maxSeqs: 1,
    quantization: quantizationOf(flags),
    allowFallbackAdapter: flags.has("allow-fallback-adapter"),
    // Logits for comparison with references: an f32 KV cache whatever the adapter's default.
    kvDtype: "f32",
  });
  try {
    const vocab = runner.spec.vocabSize;
    const bad = ids.find((i) => i >= vocab);
    if (bad !== undefined) {
      throw new UsageError(`token id ${bad} is outside the vocabulary (${vocab})`);
    }
    const bs = runner.cache.options.blockSize;
    const table = Array.from({ length: Math.ceil(ids.length / bs) }, (_, i) => i);
    const out = await runner.logits(
      buildStepBatch([{ tokens: ids, start: 0, blockTable: table, logits: "all" }], bs),
    );
    const rows = ids.map((_, r) => Array.from(out.subarray(r * vocab, (r + 1) * vocab)));
    if (flags.has("json")) console.log(JSON.stringify({ logits: rows }));
    else {
      rows.forEach((row, r) => {
        const top = row.map((v, i): [number, number] => [v, i]).sort((a, b) => b[0] - a[0]).slice(
          0,
          5,
        );
        console.log(`${r}: ${top.map(([v, i]) => `${i}:${v.toFixed(4)}`).join(" ")}`);
      });
    }
  } finally {
    runner.close();
  }
  return 0;
}

/** Prints `{"embedding": [...], "prompt_tokens": N}` for one text. */
async function embed(flags: Map<string, string>): Promise<number> {
  const model = required(flags, "model");
  const input = required(flags, "input");
  const dimensions = positive(flags, "dimensions");
  const pooling = oneOf(flags, "pooling", POOLINGS);
  const engine = await createEngine({ model, maxSeqs: 1, pooling, ...tuningOf(flags) });
  process.stderr.write(cliEngineNote(engine.info));
  try {
    const r = await engine.embed({ input, dimensions });
    console.log(JSON.stringify({ embedding: Array.from(r.embeddings[0]), prompt_tokens: r.usage.promptTokens }));
  } finally {
    await engine.close();
  }
  return 0;
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const { command, flags } = parseArgs(argv);
  if (flags.has("help") || command === undefined) {
    console.log(USAGE);
    return command === undefined && !flags.has("help") ? 2 : 0;
  }
  if (command === "batch") return await batch(flags);
  if (command === "convert") return await convert(flags);
  if (command === "embed") return await embed(flags);
  return command === "generate" ? await generate(flags) : await logits(flags);
}

if (import.meta.main && RUNTIME === "deno" && !isGuardedChild()) {
  // Under Deno the command runs in a child whose panics this process turns into a nonzero status.
  const { cmd, args: childArgs } = scriptCommand(new URL(import.meta.url).pathname, args());
  exit((await runGuarded(cmd, childArgs)).code);
} else if (import.meta.main) {
  if (isGuardedChild()) exitWithGuard(exit);
  try {
    exit(await main(args()));
  } catch (e) {
    const err = e as Error;
    const code = e instanceof LlmError ? ` [${e.code}]` : "";
    console.error(`error: ${err.name === "Error" ? "" : err.name + ": "}${err.message}${code}`);
    if (err instanceof UsageError) console.error(USAGE);
    // A bad request option is a usage error too.
    exit(err instanceof UsageError || (e instanceof LlmError && e.param !== undefined) ? 2 : 1);
  }
}
