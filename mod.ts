/**
 * webgpu-llm: serve Hugging Face checkpoints from TypeScript on WebGPU.
 *
 * ```ts
 * import { createEngine } from "./mod.ts";
 * const engine = await createEngine({ model: "tests/fixtures/models/stories260K" });
 * const r = await engine.generate({ prompt: "Once upon a time", maxTokens: 24 });
 * console.log(r.text);
 * for await (const d of engine.stream({ prompt: "Lily", maxTokens: 16 })) console.log(d.text);
 * const { embeddings } = await engine.embed({ input: ["Once upon a time", "Lily"] });
 * await engine.close();
 * ```
 * @module
 */
import { type CreateEngineOptions, EngineClient } from "./src/api/client.ts";

export type {
  AttentionImpl,
  Completion,
  DraftSpeculativeConfig,
  EmbedOptions,
  EmbedResult,
  EngineInfo,
  EngineOptions,
  EngineStats,
  ErrorCode,
  FinishReason,
  GenerateDelta,
  GenerateOptions,
  GenerateResult,
  HistogramSnapshot,
  JsonSchema,
  NgramSpeculativeConfig,
  OutputFinishReason,
  Pooling,
  Quantization,
  ResponseFormat,
  SamplingParams,
  SchedulerPolicy,
  SpeculativeConfig,
  TokenLogprob,
  ToolCall,
  ToolCallDelta,
  ToolCallFormat,
  ToolChoiceOption,
  ToolFunction,
  Usage,
} from "./src/types/api.ts";
export { DEFAULT_MAX_TOKENS, DraftModelMismatchError, EngineError, InvalidRequestError, LlmError, MtpHeadMissingError } from "./src/types/api.ts";
export { type CreateEngineOptions, EngineClient } from "./src/api/client.ts";
export type { BatchItemError, BatchOptions, BatchProgress } from "./src/api/batch.ts";
export { CheckpointError, UnsupportedArchitectureError } from "./src/model/errors.ts";
export { Tokenizer } from "./src/model/tokenizer.ts";
export { NoGpuAdapterError } from "./src/gpu/device.ts";

/** Starts an engine (in a Worker) for a Hugging Face checkpoint directory or a GGUF file. */
export function createEngine(options: CreateEngineOptions): Promise<EngineClient> {
  return EngineClient.create(options);
}
