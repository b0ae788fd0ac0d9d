/**
 * webgpu-llm: serve Hugging Face checkpoints from TypeScript on WebGPU.
 *
 * ```ts
 * import { createEngine } from "./mod.ts";
 * const engine = await createEngine({ model: "tests/fixtures/models/stories260K" });
 * const r = await engine.generate({ prompt: "Once upon a time", maxTokens: 24 });
 * console.log(r.text);
 * for await (const d of engine.stream({ prompt: "Lily", maxTokens: 16 })) console.log(d.text);
 * await engine.close();
 * ```
 * @module
 */
import { type CreateEngineOptions, EngineClient } from "./src/engine/client.ts";

export type {
  Completion,
  CreateEngineOptions,
  GenerateDelta,
  GenerateResult,
  Usage,
} from "./src/engine/client.ts";
export { EngineClient, EngineRequestError, EngineStartError } from "./src/engine/client.ts";
export type { GenerateOptions } from "./src/engine/request.ts";
export { InvalidRequestError } from "./src/engine/request.ts";
export type { EngineOptions } from "./src/engine/engine.ts";
export type { EngineStats, HistogramSnapshot } from "./src/engine/metrics.ts";
export type { EngineInfo, TokenLogprob } from "./src/engine/protocol.ts";
export type { FinishReason } from "./src/engine/sequence.ts";
export type { SchedulerPolicy } from "./src/engine/scheduler.ts";
export type { AttentionImpl } from "./src/model/forward.ts";
export { CheckpointError, UnsupportedArchitectureError } from "./src/model/errors.ts";
export type { Tokenizer } from "./src/model/tokenizer.ts";
export { NoGpuAdapterError } from "./src/gpu/device.ts";

/** Starts an engine (in a Worker) for a Hugging Face checkpoint directory. */
export function createEngine(options: CreateEngineOptions): Promise<EngineClient> {
  return EngineClient.create(options);
}
