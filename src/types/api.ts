/**
 * The public types of webgpu-llm, in one place: request and sampling options, what requests
 * return, engine options and statistics, and the typed errors (each with a code) that every
 * layer raises. Everything else imports these; this module imports nothing.
 * @module
 */

/** Why a completion ended, as the engine decides it. */
export type FinishReason = "stop" | "length" | "cancelled";

/**
 * Why a completion ended, as callers see it: the engine's reason, or "tool_calls" when the
 * output was parsed into tool calls (the model stopped after calling tools).
 */
export type OutputFinishReason = FinishReason | "tool_calls";

/** Attention implementation: the fast paged kernel or the plain eager reference. */
export type AttentionImpl = "paged" | "eager";

/**
 * Kernel family: "cpu" (shaped for CPU adapters such as lavapipe: column-block weights, one
 * invocation per 8 output columns) or "gpu" (coalesced padded-row weights, workgroup
 * reductions, tiled GEMM for prefill). Both are correct on any adapter.
 */
export type KernelFamily = "cpu" | "gpu";

/** The values of {@link KernelFamily}, for flag parsing. */
export const KERNEL_FAMILIES: readonly KernelFamily[] = ["cpu", "gpu"];

/** KV-cache element type: f16 halves the cache's bytes (twice the blocks for a budget). */
export type KvDtype = "f16" | "f32";

/** The values of {@link KvDtype}, for flag parsing. */
export const KV_DTYPES: readonly KvDtype[] = ["f16", "f32"];

/**
 * How an embedding pools a sequence's final hidden states (after the final norm, before the
 * LM head): the last token's (Qwen3-Embedding's recipe, with the end-of-text token appended)
 * or the mean over all tokens (sentence-transformers' mean pooling).
 */
export type Pooling = "last" | "mean";

/** The values of {@link Pooling}, for flag parsing. */
export const POOLINGS: readonly Pooling[] = ["last", "mean"];

/** Scheduling policy: decodes first ("fifo") or pending prefills first. */
export type SchedulerPolicy = "fifo" | "prefill_first";

/**
 * How one token is drawn from the model's logits, resolved (every field has its value).
 * Requests, sequences and the GPU sampler's row layout all use this one type.
 */
export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Keep the smallest set with this much probability; 1 = off. */
  topP: number;
  /** Drop tokens below minP times the best token's probability; 0 = off. */
  minP: number;
  /** HF repetition penalty over prompt and output tokens; 1 = off. */
  repetitionPenalty: number;
  /** OpenAI presence penalty over output tokens; 0 = off. */
  presencePenalty: number;
  /** OpenAI frequency penalty over output tokens; 0 = off. */
  frequencyPenalty: number;
  /** Seed of the random stream (u32): same seed, same output, whatever shares the batch. */
  seed: number;
  /** Report the log-probability of each sampled token. */
  logprobs: boolean;
  /** Most likely alternatives reported per token (0 = none; needs `logprobs`). */
  topLogprobs: number;
}

/** The neutral value of every sampling parameter (greedy, nothing filtered or penalised). */
export const SAMPLING_DEFAULTS: Readonly<SamplingParams> = Object.freeze({
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 0,
  logprobs: false,
  topLogprobs: 0,
});

/** Tokens generated when a request does not say (bounded by the context that is left). */
export const DEFAULT_MAX_TOKENS = 256;

/** A JSON schema: an object, or `true` for any value. */
export type JsonSchema = Record<string, unknown> | boolean;

/** An output constraint (`responseFormat`); the output is generated to match it. */
export type ResponseFormat =
  /** Any JSON object (OpenAI's `{"type": "json_object"}`). */
  | { type: "json_object" }
  /** JSON valid against a schema; `strict: false` allows properties the schema does not list. */
  | { type: "json_schema"; schema: JsonSchema; strict?: boolean }
  /** Text matching a regular expression in full (vLLM's `guided_regex`). */
  | { type: "regex"; pattern: string }
  /** Exactly one of some strings (vLLM's `guided_choice`). */
  | { type: "choice"; choices: string[] }
  /** An EBNF grammar in xgrammar's dialect, start rule `root` (vLLM's `guided_grammar`). */
  | { type: "ebnf"; grammar: string };

/** A function the model may call (OpenAI's `tools[].function`). */
export interface ToolFunction {
  name: string;
  description?: string;
  /** JSON schema of the arguments object (absent: any object). */
  parameters?: Record<string, unknown>;
}

/**
 * Which tool calls a request allows: "none" (no calls parsed), "auto" (the model decides;
 * calls are parsed out of its text), "required" (one or more calls, enforced by a grammar) or
 * one named function (exactly one call of it, enforced).
 */
export type ToolChoiceOption = "none" | "auto" | "required" | { name: string };

/** A model family's tool-call format (see `src/grammar/tool_format.ts`). */
export type ToolCallFormat = "hermes" | "llama3_json" | "mistral" | "harmony";

/** Tool calls in a model family's format, their arguments valid against each tool's schema. */
export interface ToolCallSpec {
  type: "tool_calls";
  format: ToolCallFormat;
  tools: ToolFunction[];
  /**
   * "required": one or more calls and nothing else; a name: exactly one call of that function;
   * "auto": free text, and wherever a call starts it must be a valid call.
   */
  choice: Exclude<ToolChoiceOption, "none">;
  /** Whether several calls may follow each other ("required" and "auto"; default true). */
  parallel?: boolean;
}

/** What the engine constrains an output to (a checked, normalized spec). */
export type GrammarSpec = ResponseFormat | ToolCallSpec;

/** One tool call parsed out of an output. */
export interface ToolCall {
  id: string;
  /** The function's name. */
  name: string;
  /** The arguments as JSON text. */
  arguments: string;
}

/** A piece of a tool call as it streams (OpenAI's `delta.tool_calls[i]`). */
export interface ToolCallDelta {
  /** Which call of the completion (0, 1, ...). */
  index: number;
  /** Set on the call's first piece. */
  id?: string;
  type?: "function";
  function: { name?: string; arguments?: string };
}

/** Options of one generation request (`engine.generate` / `engine.stream`). */
export interface GenerateOptions extends
  Partial<
    Pick<
      SamplingParams,
      "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty" | "presencePenalty" | "frequencyPenalty" | "seed"
    >
  > {
  /** Prompt text (tokenized with BOS as the model's tokenizer config says) or token ids. */
  prompt: string | readonly number[];
  /** Tokens to generate at most (default {@link DEFAULT_MAX_TOKENS}, bounded by the context). */
  maxTokens?: number;
  /** Stop strings: the text ends before the first match. */
  stop?: string | readonly string[];
  /** Extra token ids that end the request. */
  stopTokenIds?: readonly number[];
  /** Keep going past EOS. */
  ignoreEos?: boolean;
  /** true = the logprob of each sampled token; a number = also that many alternatives. */
  logprobs?: boolean | number;
  /** Independent completions of the same prompt (they share the prompt's KV blocks). */
  n?: number;
  /** Cancels the request: it leaves at the next step and its blocks return to the pool. */
  signal?: AbortSignal;
  /** Constrains the output to JSON, a schema, a regex, a choice or a grammar. */
  responseFormat?: ResponseFormat;
  /** false: no speculative decoding for this request (default: the engine's setting). */
  speculative?: boolean;
  /**
   * Functions the model may call. Their calls are parsed out of the output in the model's
   * tool-call format (`toolCalls`, finish reason "tool_calls"); render them into the prompt
   * yourself (the server passes them to the chat template).
   */
  tools?: readonly ToolFunction[];
  /** Which calls are allowed (default "auto" with tools, "none" without). */
  toolChoice?: ToolChoiceOption;
  /** Whether several calls may follow each other (default true). */
  parallelToolCalls?: boolean;
  /**
   * Splits the model's reasoning off its answer with this parser (e.g. "think" for
   * `<think>...</think>`; see `REASONING_PARSERS`): deltas carry it in `reasoning`, `text` is
   * the answer alone, and tool calls and `responseFormat` apply to the answer only.
   */
  reasoningParser?: string;
}

/**
 * Where an output's reasoning ends, for its grammar: the constraint starts after the end
 * marker, so the reasoning before it is free text.
 */
export interface ReasoningGate {
  /** The one token that opens a reasoning block (absent: only the prompt opens one, see `open`). */
  startTokenId?: number;
  /**
   * The ids that end the reasoning, in order: one token for `</think>`; for gpt-oss's
   * harmony the final channel's header `<|channel|>final<|message|>` (three tokens).
   */
  endTokenIds: number[];
  /** The output starts in reasoning (the prompt opened the block; harmony: always). */
  open: boolean;
}

/** A validated request, as the engine receives it (plain data: it crosses to the Worker). */
export interface EngineRequest {
  promptIds: number[];
  /** Completions; completion i samples with seed `sampling.seed + i`. */
  n: number;
  maxTokens: number;
  sampling: SamplingParams;
  /** Ids that end a completion: the given stop ids, plus EOS unless ignored. */
  stopTokenIds: number[];
  /** The output constraint, already checked on the caller's side (absent: none). */
  grammar?: GrammarSpec;
  /** With a grammar: it applies only after the output's reasoning (absent: from the start). */
  reasoning?: ReasoningGate;
  /** What the check's compile of `grammar` took, in ms (a slow one is compiled off the engine's thread). */
  grammarCompileMs?: number;
  /** false: no speculative decoding for this request (absent: the engine's setting). */
  speculative?: boolean;
}

/** A validated embedding request, as the engine receives it (plain data). */
export interface EmbedRequest {
  /** Token ids of each input (the end-of-text token already appended for last pooling). */
  inputs: number[][];
  pooling: Pooling;
}

/** Options of `engine.embed`. */
export interface EmbedOptions {
  /**
   * What to embed: a string, an array of strings, token ids, or an array of token-id arrays
   * (OpenAI's `input`). Each string or id array is one input and gets one embedding.
   */
  input: string | readonly number[] | readonly (string | readonly number[])[];
  /** Keep the first `dimensions` values, then L2-normalize again (default: all of them). */
  dimensions?: number;
  /** Cancels the request: it leaves at the next step. */
  signal?: AbortSignal;
}

/** Result of `embed`: one L2-normalized vector per input, in input order. */
export interface EmbedResult {
  embeddings: Float32Array[];
  /** Tokens of every input together (end-of-text tokens included). */
  usage: { promptTokens: number };
}

/** Logprob information for one generated token. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** Most likely alternatives, best first. */
  top?: { id: number; logprob: number }[];
}

/** Token counts of a request. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens: number;
}

/** One completion of a request. */
export interface Completion {
  index: number;
  ids: number[];
  /** The output text; with tools, the text outside tool calls; with a reasoning parser, the answer. */
  text: string;
  /** The reasoning before the answer (requests with a `reasoningParser`). */
  reasoning?: string;
  finishReason: OutputFinishReason;
  logprobs?: TokenLogprob[];
  /** Tool calls parsed out of the output (requests with tools). */
  toolCalls?: ToolCall[];
}

/** Result of `generate`: the first completion's fields, plus all completions when n > 1. */
export interface GenerateResult extends Completion {
  usage: Usage;
  promptIds: number[];
  choices: Completion[];
  /** Parts of a `responseFormat` or tool schema enforced more loosely than written. */
  warnings?: string[];
}

/** One streamed piece of a completion. */
export interface GenerateDelta {
  index: number;
  /** New text (possibly empty while a character or a possible stop string is held back). */
  text: string;
  /** New token ids. */
  ids: number[];
  /** New reasoning text (requests with a `reasoningParser`). */
  reasoning?: string;
  logprobs?: TokenLogprob[];
  /** Tool-call pieces (requests with tools): name and id first, then argument text. */
  toolCalls?: ToolCallDelta[];
  /** Set on the completion's last delta. */
  finishReason?: OutputFinishReason;
  /** Set on the request's last delta. */
  usage?: Usage;
  /** On the request's first delta: parts of the constraint enforced more loosely than written. */
  warnings?: string[];
}

/**
 * Load-time quantization of the decoder's linear weights to llama.cpp's Q8_0 or Q4_0 blocks
 * (embeddings, LM head and norms keep their precision).
 */
export type Quantization = "q8_0" | "q4_0" | "none";

/** The values of {@link Quantization}, for flag parsing. */
export const QUANTIZATIONS: readonly Quantization[] = ["q8_0", "q4_0", "none"];

/** Options of `createEngine`. */
export interface EngineOptions {
  /** A Hugging Face checkpoint directory, or a `.gguf` file. */
  model: string;
  /** Speculative decoding (default: off). See docs/speculative.md. */
  speculative?: SpeculativeConfig;
  /** Token budget of one step (default 256). */
  maxBatchTokens?: number;
  /** KV blocks; sized from `kvCacheBytes` when absent. */
  numBlocks?: number;
  /** Tokens per KV block (default 16). */
  blockSize?: number;
  /** KV-cache memory budget when `numBlocks` is absent (default 256 MiB). */
  kvCacheBytes?: number;
  /**
   * GPU memory the engine may use in all (WebGPU reports none): the KV cache then gets what
   * the weights, every expert of a mixture included, and the step's buffers leave, as vLLM's
   * `gpu_memory_utilization` does with a fraction of the device (`kvCacheBytes` still caps
   * it). Too small for the weights: a `device_limit` error at load.
   */
  gpuMemoryBytes?: number;
  /** Attention implementation (default "paged"). */
  attn?: AttentionImpl;
  /** Scheduling policy (default "fifo"). */
  policy?: SchedulerPolicy;
  /** Most sequences running at once (default 32). */
  maxSeqs?: number;
  /** Steps between GPU->CPU readbacks (default 8). */
  stepsPerSync?: number;
  /**
   * Steps between readbacks while a constrained sequence (`responseFormat`, forced tool
   * calls) waits for its token, which it needs on the CPU before its next step (default 2;
   * `stepsPerSync` leaves the other sequences' readbacks as they are).
   */
  constrainedStepsPerSync?: number;
  /** Longest sequence in tokens (default: the model's max_position_embeddings). */
  maxContext?: number;
  /** Matrix storage on the GPU ("auto": f32 checkpoints stay f32, 16-bit ones become f16). */
  weightDType?: "auto" | "f32" | "f16";
  /** Quantize the decoder's linear weights while loading (default "none"). */
  quantization?: Quantization;
  /**
   * Quantized weights (load-time or GGUF Q8_0/Q4_0): also quantize activations to Q8 blocks
   * and sum exact int8 products, as llama.cpp's CPU kernels do (faster on CPU adapters, within
   * ~1e-2 of the logit range); default false: f32 activations times the dequantized weights.
   */
  quantizedActivations?: boolean;
  /** Kernel family (default: "cpu" on fallback/CPU adapters, else "gpu"). */
  kernelFamily?: KernelFamily;
  /** KV-cache element type (default "f16" where the adapter has `shader-f16`, else "f32"). */
  kvDtype?: KvDtype;
  /**
   * Run on an OpenGL or software fallback adapter when it is all there is (default false:
   * the engine refuses it with a `fallback_adapter` error; a CPU Vulkan driver such as Mesa's
   * lavapipe is not a fallback here and is always used).
   */
  allowFallbackAdapter?: boolean;
  /**
   * How embeddings pool the final hidden states (default: what the checkpoint's
   * sentence-transformers `modules.json` / `1_Pooling/config.json` says, else "last").
   */
  pooling?: Pooling;
  /**
   * A grammar whose check compile took longer than this (ms) is compiled and matched in a
   * Worker of its own instead of on the engine's thread (default 250; Infinity: never).
   */
  grammarHostCompileMs?: number;
}

/** What a running engine's model looks like to callers: the limits requests are checked against. */
export interface EngineInfo {
  vocabSize: number;
  /** Longest sequence (prompt plus output) in tokens. */
  maxContext: number;
  maxTopLogprobs: number;
  maxN: number;
  eosTokenIds: number[];
  architecture: string;
  device: string;
  kvBlocksTotal: number;
  blockSize: number;
  /** Most sequences running at once. */
  maxSeqs: number;
  /** The matmul kernels in use. */
  kernelFamily: KernelFamily;
  /** The KV cache's element type. */
  kvDtype: KvDtype;
  /**
   * How the decoder's linear weights are stored, one entry per kind present: "f16" / "f32"
   * (16/32-bit values), "q8_0" / "q4_0" (llama.cpp blocks, in-kernel), "q4x" (Q4_K GGUF
   * weights transcoded at load to nibble blocks with an f32 scale and min, in-kernel, 6 bits a
   * weight), "q8x" (Q6_K GGUF weights, and fused matrices mixing types, transcoded at load to
   * int8 blocks with f32 scales, in-kernel, 11 bits a weight).
   */
  linearWeights: string[];
  /** Width of the final hidden state (an embedding's full dimension). */
  hiddenSize: number;
  /**
   * How embeddings are pooled, or null when the checkpoint's sentence-transformers config asks
   * for a pooling this engine does not implement (embedding requests are then refused unless
   * `pooling` is set).
   */
  pooling: Pooling | null;
  /**
   * Parameters of the model: all of them, and those one token uses (a mixture of experts
   * reads k of its E experts per layer; equal for a dense model).
   */
  parameters?: { total: number; active: number };
  /**
   * Where the GPU memory went: the weights as uploaded (`expertBytes` of them the experts, all
   * E of every sparse layer), the KV cache, and what the cache was sized from: `kvBudget`
   * ("default" 256 MiB, "kv_cache_bytes", "gpu_memory_bytes": what the weights and step
   * buffers left of `gpuMemoryBytes`; "num_blocks" when blocks were given).
   */
  memory?: { weightBytes: number; expertBytes: number; kvCacheBytes: number; kvBudget: "default" | "kv_cache_bytes" | "gpu_memory_bytes" | "num_blocks"; gpuMemoryBytes?: number };
}

/** A histogram's state. Bucket bounds are upper bounds (le); counts are cumulative. */
export interface HistogramSnapshot {
  buckets: number[];
  cumulativeCounts: number[];
  count: number;
  sum: number;
  /** Percentiles over the most recent samples (0 when empty). */
  p50: number;
  p95: number;
  p99: number;
}

/** Everything `engine.stats()` reports. Times in seconds, sizes in bytes. */
/**
 * Speculative decoding (vLLM's `--speculative-config`, camel-cased): "ngram" (prompt lookup),
 * "draft" (a smaller model with the same tokenizer) or "mtp" (the checkpoint's own
 * multi-token-prediction head, Qwen3.5). See docs/speculative.md.
 */
export type SpeculativeConfig = NgramSpeculativeConfig | DraftSpeculativeConfig | MtpSpeculativeConfig;

/** Fields every speculative method takes. */
export interface SpeculativeConfigBase {
  /** Most tokens drafted per verification. */
  numSpeculativeTokens: number;
  /**
   * No sequence starts a new verification while this many running sequences decode (vLLM's
   * `disable_by_batch_size`): where steps are compute-bound, k extra rows per sequence cost
   * more than they save. Speculation resumes when the batch shrinks. Default: no limit.
   */
  disableByBatchSize?: number;
}

/**
 * n-gram (prompt lookup) drafts: each step proposes up to `numSpeculativeTokens` tokens that
 * followed the latest earlier occurrence of the sequence's last n tokens (n from
 * `promptLookupMax` down to `promptLookupMin`), verified in one step.
 */
export interface NgramSpeculativeConfig extends SpeculativeConfigBase {
  method: "ngram";
  promptLookupMax: number;
  promptLookupMin: number;
}

/**
 * A draft model: a second, smaller checkpoint with the same tokenizer proposes up to
 * `numSpeculativeTokens` tokens (greedy, in batched steps of its own), verified in one step
 * of the target.
 */
export interface DraftSpeculativeConfig extends SpeculativeConfigBase {
  method: "draft";
  /** The draft model: a checkpoint directory or a .gguf file. */
  model: string;
}

/**
 * The checkpoint's own multi-token-prediction head (Qwen3.5's `mtp.*` tensors) drafts up to
 * `numSpeculativeTokens` tokens from the target's hidden states (greedy, chained).
 */
export interface MtpSpeculativeConfig extends SpeculativeConfigBase {
  method: "mtp";
}

export interface EngineStats {
  /** Blocks held by live requests, and in all. */
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Unreferenced blocks kept for the prefix cache (reusable, evictable). */
  kvBlocksCached: number;
  /**
   * KV blocks' bytes plus, for a hybrid model, its recurrent-state slots' (and their snapshots
   * with speculation on), plus, with MTP speculation, the hidden-row stores (the target's and
   * the head's) and the head's KV layer.
   */
  kvBytesTotal: number;
  kvBytesUsed: number;
  /** kvBytesUsed / kvBytesTotal (blocks and state slots together). */
  kvUsage: number;
  /** Hybrid models: recurrent-state slots held by sequences, and in all (0 and 0 otherwise). */
  stateSlotsUsed: number;
  stateSlotsTotal: number;
  running: number;
  waiting: number;
  steps: number;
  /** GPU->CPU waits, and decode steps per wait. */
  syncs: number;
  stepsPerSync: number;
  prefillTokens: number;
  decodeTokens: number;
  /** decode tokens / prefill tokens (0 before any prefill). */
  decodePrefillRatio: number;
  promptTokens: number;
  generationTokens: number;
  preemptions: number;
  /** Speculative decoding: verification steps (drafts), draft tokens verified, and accepted (in all, and per draft position). */
  specDrafts: number;
  specDraftTokens: number;
  specAcceptedTokens: number;
  specAcceptedPerPosition: number[];
  /** Speculative "draft" / "mtp" methods: KV blocks the draft model's (or MTP head's) sequences hold, and in all (0 and 0 otherwise). */
  specDraftKvBlocksUsed: number;
  specDraftKvBlocksTotal: number;
  /** Hybrid models: tokens recomputed after rejected drafts (the recurrent state restored from its snapshot, then replayed). */
  specReplayTokens: number;
  /** Prompt tokens looked up in the prefix cache, and found. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  requestsFinished: Record<FinishReason, number>;
  /** Embedding inputs finished (one per input of an embedding request). */
  embeddingsFinished: number;
  /** Scheduled tokens / token budget per step. */
  batchFill: HistogramSnapshot;
  stepTokens: HistogramSnapshot;
  ttft: HistogramSnapshot;
  interTokenLatency: HistogramSnapshot;
  e2eLatency: HistogramSnapshot;
  queueTime: HistogramSnapshot;
  /** Generated tokens per second over the last few seconds. */
  tokensPerSecond: number;
  /** performance.timeOrigin-relative time of the last step (ms), for liveness checks. */
  lastStepAt: number;
  uptimeSeconds: number;
  /** When this snapshot was taken (the engine's performance.now(), ms): newer wins. */
  at: number;
  /** Set when the step loop has died (the engine serves nothing more). */
  error: string | null;
}

/** What went wrong, as a stable code (callers branch on it, never on message text). */
export type ErrorCode =
  /** A request option is invalid; `param` names it. */
  | "invalid_request"
  /** Prompt plus maxTokens exceed the context or the KV cache. */
  | "context_length_exceeded"
  /**
   * A `responseFormat` or tool schema that cannot be enforced: malformed, an unsupported
   * keyword, a bad regex or grammar, or too large to compile in time; `param` names the option.
   */
  | "invalid_grammar"
  /** The engine cannot start (see the message; the cause of a Worker failure). */
  | "engine_start_failed"
  /** The engine's step loop or Worker has died; it serves nothing more. */
  | "engine_failed"
  /** The engine was closed. */
  | "engine_closed"
  /** No WebGPU adapter on this machine. */
  | "no_gpu_adapter"
  /** The only adapter is an OpenGL or software fallback, and `allowFallbackAdapter` is off. */
  | "fallback_adapter"
  /** A checkpoint file is missing, malformed or inconsistent. */
  | "checkpoint_invalid"
  /** The checkpoint's architecture is not implemented. */
  | "unsupported_architecture"
  /** The requested shapes do not fit the device (KV cache, activations). */
  | "device_limit"
  /** A model id could not be resolved or downloaded. */
  | "model_not_found"
  /** A bug: an internal invariant did not hold. */
  | "internal";

/** The base of every error webgpu-llm raises; `code` says what kind it is. */
export class LlmError extends Error {
  /** What kind of error this is. */
  readonly code: ErrorCode;
  /** The request option at fault, when there is one. */
  readonly param?: string;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions & { param?: string }) {
    super(message, options);
    this.name = "LlmError";
    this.code = code;
    if (options?.param !== undefined) this.param = options.param;
  }
}

/** The codes of {@link InvalidRequestError}. */
export type InvalidRequestCode = "invalid_request" | "context_length_exceeded" | "invalid_grammar";

/**
 * A request option is out of range, the request cannot fit, or its output constraint cannot
 * be enforced (code `invalid_request`, `context_length_exceeded` or `invalid_grammar`). The
 * message is `param` followed by `detail`, so a surface that names options differently (the
 * OpenAI API) can say the same with its own name.
 */
export class InvalidRequestError extends LlmError {
  /** The offending option (GenerateOptions' name). */
  declare readonly param: string;
  /** What is wrong with it, without its name ("must be ..., got ..."). */
  readonly detail: string;

  constructor(param: string, detail: string, code: InvalidRequestCode = "invalid_request") {
    super(code, `${param} ${detail}`, { param });
    this.name = "InvalidRequestError";
    this.detail = detail;
  }
}

/** The engine could not start, failed or was closed (codes `engine_*`). */
export class EngineError extends LlmError {
  constructor(code: "engine_start_failed" | "engine_failed" | "engine_closed", message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.name = "EngineError";
  }
}

/**
 * The draft model of speculative decoding does not share the target's tokenizer (its
 * vocabulary, special tokens or vocabulary size differ): refused at load, code
 * `invalid_request`, param `speculative.model`.
 */
export class DraftModelMismatchError extends InvalidRequestError {
  constructor(detail: string) {
    super("speculative.model", detail);
    this.name = "DraftModelMismatchError";
  }
}

/**
 * Speculative method "mtp" on a model without a usable multi-token-prediction head: a
 * checkpoint with no `mtp.*` tensors, a head of more than one layer, or a GGUF file (its MTP
 * tensors are not read).
 */
export class MtpHeadMissingError extends InvalidRequestError {
  constructor(detail: string) {
    super("speculative.method", detail);
    this.name = "MtpHeadMissingError";
  }
}

/** An error as it crosses a MessagePort (Errors do not keep their class there). */
export interface WireError {
  name: string;
  code: ErrorCode;
  message: string;
  param?: string;
  detail?: string;
}

/** Flattens an error for postMessage. Errors without a code become `internal`. */
export function errorToWire(e: unknown): WireError {
  const err = e instanceof Error ? e : new Error(String(e));
  const code = err instanceof LlmError ? err.code : "internal";
  const param = err instanceof LlmError ? err.param : undefined;
  const detail = err instanceof InvalidRequestError ? err.detail : undefined;
  return { name: err.name, code, message: err.message, ...(param === undefined ? {} : { param }), ...(detail === undefined ? {} : { detail }) };
}

/** Rebuilds an error from the wire, as the most specific class its code has. */
export function errorFromWire(w: WireError): LlmError {
  let err: LlmError;
  if (w.code === "invalid_request" || w.code === "context_length_exceeded" || w.code === "invalid_grammar") {
    err = new InvalidRequestError(w.param ?? "request", w.detail ?? w.message, w.code);
  } else if (w.code === "engine_start_failed" || w.code === "engine_failed" || w.code === "engine_closed") {
    err = new EngineError(w.code, w.message);
  } else {
    err = new LlmError(w.code, w.message, { param: w.param });
  }
  err.name = w.name;
  return err;
}
