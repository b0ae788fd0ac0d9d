/**
 * Command-line flags of `serve.ts`.
 * @module
 */
import type { AttentionImpl, EngineOptions, Quantization, SchedulerPolicy, SpeculativeConfig } from "../../mod.ts";
import { LlmError } from "../types/api.ts";
import { KERNEL_FAMILIES, KV_DTYPES, POOLINGS, QUANTIZATIONS } from "../types/api.ts";
import { reasoningParserName, reasoningParserNames } from "../api/reasoning.ts";
import { parseSpeculativeConfig } from "../engine/speculative_config.ts";

/** The model served when `--model` is omitted. */
export const DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct";

/** Environment variable read for the API key when `--api-key` is absent. */
export const API_KEY_ENV = "WEBGPU_LLM_API_KEY";

/** The largest request body by default (also `cli batch`'s largest input line). */
export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

/** Parsed server options. */
export interface ServeOptions {
  /** A checkpoint directory, a .gguf file or a Hugging Face hub id. */
  model: string;
  /** Which .gguf of a hub repository holding several. */
  ggufFile?: string;
  /** Load-time quantization of the decoder's linear weights. */
  quantization?: Quantization;
  host: string;
  port: number;
  maxBatchTokens?: number;
  numBlocks?: number;
  /** The KV cache's byte budget (engine default 256 MiB). */
  kvCacheBytes?: number;
  /** GPU memory the engine may use in all; the KV cache gets what the weights leave. */
  gpuMemoryBytes?: number;
  blockSize?: number;
  maxSeqs?: number;
  /** Requests allowed to wait for a sequence slot before new ones get 429. */
  maxQueue: number;
  attn?: AttentionImpl;
  /** Kernel family, KV-cache type and quantized-activation path (engine defaults when absent). */
  tuning?: Pick<EngineOptions, "kernelFamily" | "kvDtype" | "quantizedActivations" | "allowFallbackAdapter" | "pooling" | "speculative">;
  policy?: SchedulerPolicy;
  apiKey?: string;
  /** Reasoning parser of chat outputs: a name, "none", or absent (chosen by the chat template). */
  reasoningParser?: string;
  /** The name clients use in `model` (default: the `--model` value). */
  servedModelName: string;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
  /** The hard deadline of a shutdown, from SIGINT/SIGTERM to closed connections (drain delay included). */
  shutdownTimeoutMs: number;
  /** After SIGTERM, /health answers 503 for this long while requests are still admitted. */
  drainDelayMs?: number;
  /** Sequences one request may ask for (prompts x n; default: max-seqs). */
  maxRequestSeqs?: number;
  /** Deadline for a request's headers. */
  headerTimeoutMs?: number;
  /** Deadline for a request's body, from the end of its headers. */
  bodyTimeoutMs?: number;
  /** Keep-alive connections idle this long are closed. */
  idleTimeoutMs?: number;
  /** Open connections at most (default: 1024, or less when the open-file limit is lower). */
  maxConnections?: number;
  /** A response write that makes no progress this long closes the connection (slow readers). */
  writeTimeoutMs?: number;
  /** Ignore unknown request fields instead of answering 400. */
  lenientFields?: boolean;
}

/** A bad command line. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Help text. */
export const USAGE = `Usage: deno run -A serve.ts [flags]

  --model DIR|FILE|HUB_ID    checkpoint directory, .gguf file or Hugging Face id (default
                             ${DEFAULT_MODEL})
  --gguf-file NAME           the .gguf to use from a hub repository holding several
  --quantization q8_0|q4_0|none  quantize the decoder's linear weights while loading (default none)
  --host HOST                listen address (default 127.0.0.1)
  --port N                   listen port (default 8000; 0 picks a free one)
  --max-batch-tokens N       token budget of one step (default 256)
  --num-blocks N             KV-cache blocks (default: sized from the budget below)
  --kv-cache-bytes N         the KV cache's bytes (default 256 MiB; suffixes K, M, G: 2^10...)
  --gpu-memory-bytes N       GPU memory the engine may use in all: the KV cache gets what the
                             weights (every expert included) and step buffers leave, capped
                             by --kv-cache-bytes when given (WebGPU reports no device memory)
  --block-size N             tokens per KV block (default 16)
  --max-seqs N               sequences running at once (default 32)
  --max-queue N              requests waiting beyond those before 429 (default 64)
  --attn paged|eager         attention implementation (default paged)
  --kernel-family cpu|gpu    matmul kernels (default: cpu on CPU/fallback adapters, else gpu)
  --kv-dtype f16|f32         KV-cache element type (default f16 where the adapter has shader-f16)
  --allow-fallback-adapter   run on an OpenGL or software fallback adapter when it is the only
                             one (default: refused; a CPU Vulkan driver, lavapipe, is used)
  --quantized-activations    with q8_0/q4_0 weights, also quantize activations to 8 bits per
                             block (llama.cpp's CPU arithmetic; off: exact f32 activations)
  --policy fifo|prefill_first  scheduling policy (default fifo)
  --speculative-config JSON  speculative decoding, vLLM's flag: '{"method":"ngram",
                             "num_speculative_tokens":4,"prompt_lookup_max":4,
                             "prompt_lookup_min":2}', or a draft model with the same tokenizer:
                             '{"method":"draft","num_speculative_tokens":4,"model":"DIR"}' or
                             '{"method":"mtp","num_speculative_tokens":2}' (Qwen3.5's MTP head)
                             (default off; see docs/speculative.md)
  --pooling last|mean        how /v1/embeddings pools hidden states (default: the checkpoint's
                             sentence-transformers config, else last token + end-of-text)
  --api-key KEY              require "Authorization: Bearer KEY" on /v1 (or ${API_KEY_ENV})
  --reasoning-parser NAME|none  split reasoning off chat answers with this parser ("think":
                             <think>...</think>; "harmony": gpt-oss's analysis channel);
                             default: the one the checkpoint calls for
  --served-model-name NAME   model name in the API (default: the --model value)
  --max-body-bytes N         largest request body (default ${DEFAULT_MAX_BODY_BYTES})
  --shutdown-timeout S       hard deadline in seconds from SIGINT/SIGTERM to exit, drain delay
                             included: in-flight work still running then is cancelled (default 10)
  --drain-delay S            seconds after SIGTERM during which /health answers 503 but requests
                             are still served, so a load balancer stops sending first (default 0)
  --max-request-seqs N       sequences one request may ask for, prompts x n (default: --max-seqs)
  --header-timeout S         deadline for a request's headers (default 10)
  --body-timeout S           deadline for a request's body after its headers (default 30)
  --idle-timeout S           close keep-alive connections idle this long (default 5)
  --max-connections N        open connections at most; more get 503 (default 1024, lowered to
                             fit the open-file limit)
  --write-timeout S          close a connection whose client reads nothing of its response for
                             this long, freeing its sequence (default 30)
  --lenient-fields           ignore unknown request fields (default: 400 naming the field)
  --help                     this text`;

const VALUE_FLAGS = new Set([
  "model",
  "gguf-file",
  "quantization",
  "host",
  "port",
  "max-batch-tokens",
  "num-blocks",
  "kv-cache-bytes",
  "gpu-memory-bytes",
  "block-size",
  "max-seqs",
  "max-queue",
  "attn",
  "kernel-family",
  "kv-dtype",
  "policy",
  "speculative-config",
  "pooling",
  "api-key",
  "served-model-name",
  "reasoning-parser",
  "max-body-bytes",
  "shutdown-timeout",
  "drain-delay",
  "max-request-seqs",
  "header-timeout",
  "body-timeout",
  "idle-timeout",
  "max-connections",
  "write-timeout",
]);

/** Flags that take no value. */
const SWITCH_FLAGS = new Set(["quantized-activations", "lenient-fields", "allow-fallback-adapter"]);

/** Parses `serve.ts` flags; `null` means `--help` was asked for. */
/**
 * A byte-count flag's value: digits with an optional binary suffix K, M or G (`KiB`... too),
 * e.g. `8G`, `512MiB`, `1048576`. Serve and the CLI share it.
 */
export function byteCountFlag(name: string, v: string): number {
  const m = /^(\d+)(?:([KMG])(?:iB)?)?$/i.exec(v);
  const n = m ? Number(m[1]) * 2 ** (m[2] ? 10 * ("KMG".indexOf(m[2].toUpperCase()) + 1) : 0) : NaN;
  if (!m || !(n >= 1) || !Number.isSafeInteger(n)) {
    throw new UsageError(`--${name} must be a byte count (e.g. 8G, 512M, 1048576), got ${v}`);
  }
  return n;
}

export function parseServeArgs(
  argv: readonly string[],
  env: (name: string) => string | undefined,
): ServeOptions | null {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") return null;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (m && SWITCH_FLAGS.has(m[1]) && m[2] === undefined) {
      values.set(m[1], "true");
      continue;
    }
    if (!m || !VALUE_FLAGS.has(m[1])) throw new UsageError(`unknown argument ${arg}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
    values.set(m[1], value);
  }
  const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const v = values.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) {
      throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${v}`);
    }
    return n;
  };
  /** A byte count: an integer, or one with a binary suffix K, M or G (KiB, MiB, GiB also read). */
  const bytes = (name: string): number | undefined => {
    const v = values.get(name);
    return v === undefined ? undefined : byteCountFlag(name, v);
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T | undefined => {
    const v = values.get(name);
    if (v === undefined) return undefined;
    if (!allowed.includes(v as T)) {
      throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got ${v}`);
    }
    return v as T;
  };
  const seconds = (name: string, max = 3600): number | undefined => {
    const v = values.get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || n > max) {
      throw new UsageError(`--${name} must be a number of seconds in [0, ${max}], got ${v}`);
    }
    return Math.round(n * 1000);
  };
  const positiveSeconds = (name: string): number | undefined => {
    const ms = seconds(name);
    if (ms === 0) throw new UsageError(`--${name} must be more than 0`);
    return ms;
  };
  const shutdownTimeoutMs = seconds("shutdown-timeout") ?? 10_000;
  const drainDelayMs = seconds("drain-delay") ?? 0;
  if (drainDelayMs > 0 && drainDelayMs >= shutdownTimeoutMs) {
    throw new UsageError(
      `--drain-delay (${drainDelayMs / 1000} s) must be shorter than --shutdown-timeout (${
        shutdownTimeoutMs / 1000
      } s), which includes it`,
    );
  }
  const model = values.get("model") ?? DEFAULT_MODEL;
  if (!model.trim()) throw new UsageError("--model is empty");
  return {
    model,
    host: values.get("host") ?? "127.0.0.1",
    port: int("port", 0, 65535) ?? 8000,
    maxBatchTokens: int("max-batch-tokens", 1),
    numBlocks: int("num-blocks", 1),
    kvCacheBytes: bytes("kv-cache-bytes"),
    gpuMemoryBytes: bytes("gpu-memory-bytes"),
    blockSize: int("block-size", 1, 1024),
    maxSeqs: int("max-seqs", 1, 1024),
    maxQueue: int("max-queue", 0) ?? 64,
    attn: oneOf("attn", ["paged", "eager"] as const),
    quantization: oneOf("quantization", QUANTIZATIONS),
    tuning: {
      kernelFamily: oneOf("kernel-family", KERNEL_FAMILIES),
      kvDtype: oneOf("kv-dtype", KV_DTYPES),
      quantizedActivations: values.has("quantized-activations") || undefined,
      allowFallbackAdapter: values.has("allow-fallback-adapter") || undefined,
      pooling: oneOf("pooling", POOLINGS),
      speculative: speculativeConfigFlag(values.get("speculative-config")),
    },
    ggufFile: values.get("gguf-file"),
    policy: oneOf("policy", ["fifo", "prefill_first"] as const),
    apiKey: values.get("api-key") ?? (env(API_KEY_ENV) || undefined),
    servedModelName: values.get("served-model-name") ?? model,
    reasoningParser: reasoningParserFlag(values.get("reasoning-parser")),
    maxBodyBytes: int("max-body-bytes", 1) ?? DEFAULT_MAX_BODY_BYTES,
    shutdownTimeoutMs,
    drainDelayMs,
    maxRequestSeqs: int("max-request-seqs", 1),
    headerTimeoutMs: positiveSeconds("header-timeout"),
    bodyTimeoutMs: positiveSeconds("body-timeout"),
    idleTimeoutMs: positiveSeconds("idle-timeout"),
    maxConnections: int("max-connections", 1),
    writeTimeoutMs: positiveSeconds("write-timeout"),
    lenientFields: values.has("lenient-fields") || undefined,
  };
}

/** `--reasoning-parser`: a known parser name or "none". */
function reasoningParserFlag(v: string | undefined): string | undefined {
  if (v === undefined || v === "none") return v;
  if (!reasoningParserName(v)) {
    throw new UsageError(`--reasoning-parser must be none or one of ${reasoningParserNames().join(", ")}, got ${v}`);
  }
  return v;
}

/** `--speculative-config`: vLLM's JSON; a bad field is a usage error naming it. */
export function speculativeConfigFlag(v: string | undefined): SpeculativeConfig | undefined {
  if (v === undefined) return undefined;
  try {
    return parseSpeculativeConfig(v);
  } catch (e) {
    if (e instanceof LlmError) throw new UsageError(`--speculative-config: ${e.message}`);
    throw e;
  }
}
