/**
 * How many bytes the KV cache gets. WebGPU tells an engine nothing about device memory (only
 * per-buffer limits), so the budget comes from the caller: `kvCacheBytes` sets the cache's
 * size outright; `gpuMemoryBytes` is the memory the whole engine may use (vLLM's
 * `gpu_memory_utilization` times the device's memory, said in bytes), and the cache gets what
 * the uploaded weights (every expert of a mixture of experts included, not only the k a token
 * reads), an MTP head's weights when one is loaded beside it, and the step's scratch buffers
 * leave of it; with neither, a fixed 256 MiB. The
 * device's binding limit caps the cache's layers separately (model_runner.ts's
 * `defaultNumBlocks`).
 * @module
 */
import { LlmError } from "../types/api.ts";
import type { ModelSpec } from "../model/config.ts";

/** The KV budget when neither option is given. */
export const DEFAULT_KV_CACHE_BYTES = 256 << 20;

/** What the KV cache is sized from. */
export interface KvBudgetInput {
  /** The cache's own budget (wins when given; capped by what `gpuMemoryBytes` leaves). */
  kvCacheBytes?: number;
  /** Memory the engine may use in all. */
  gpuMemoryBytes?: number;
  /** Bytes of the weights as uploaded (all experts included). */
  weightBytes: number;
  /** Bytes of the step's activation and scratch buffers (see {@link stepScratchBytes}). */
  scratchBytes: number;
  /**
   * Bytes of weights uploaded after the cache is sized that the budget must leave room for:
   * an MTP head's (`model/mtp_source.ts`'s `mtpHeadBytes`; default 0).
   */
  headBytes?: number;
}

/** The KV budget and where it came from (for the startup log and engine info). */
export interface KvBudget {
  bytes: number;
  source: "kv_cache_bytes" | "gpu_memory_bytes" | "default";
}

/** Raised when the weights and scratch leave no room for a KV cache in `gpuMemoryBytes`. */
export class KvBudgetError extends LlmError {
  constructor(message: string) {
    super("device_limit", message);
    this.name = "KvBudgetError";
  }
}

const MiB = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;

/** The KV cache's byte budget (throws {@link KvBudgetError} when `gpuMemoryBytes` leaves none). */
export function kvCacheBudget(input: KvBudgetInput): KvBudget {
  const { kvCacheBytes, gpuMemoryBytes, weightBytes, scratchBytes, headBytes = 0 } = input;
  if (gpuMemoryBytes === undefined) {
    return kvCacheBytes === undefined ? { bytes: DEFAULT_KV_CACHE_BYTES, source: "default" } : { bytes: kvCacheBytes, source: "kv_cache_bytes" };
  }
  const left = gpuMemoryBytes - weightBytes - headBytes - scratchBytes;
  if (left <= 0) {
    throw new KvBudgetError(
      `gpuMemoryBytes ${gpuMemoryBytes} (${MiB(gpuMemoryBytes)}) leaves no room for a KV cache: the weights take ` +
        `${MiB(weightBytes)} (every expert included)${headBytes ? `, the MTP head's ${MiB(headBytes)}` : ""} and the step's buffers about ${MiB(scratchBytes)}`,
    );
  }
  if (kvCacheBytes !== undefined && kvCacheBytes <= left) return { bytes: kvCacheBytes, source: "kv_cache_bytes" };
  return { bytes: left, source: "gpu_memory_bytes" };
}

/** The step's buffers that grow with the batch, as model_runner.ts sizes a step. */
export interface StepShape {
  /** Token rows of one step. */
  maxTokens: number;
  /** Rows whose logits are computed in one step. */
  maxLogitRows: number;
}

/**
 * An upper estimate of the step's activation and scratch bytes: f32 rows of the residual
 * stream and its norms, q|k|v, the attention output, the feed-forward's gate|up (a sparse
 * layer's k expert rows per token, and their k hidden-size outputs), and the logits. Small
 * buffers (metadata, readbacks, recurrent state) fit in the 16 MiB slack.
 */
export function stepScratchBytes(spec: ModelSpec, step: StepShape): number {
  const qkv = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  const attn = spec.numHeads * spec.headDim;
  const moe = spec.moe;
  const ffn = Math.max(2 * spec.intermediateSize, moe ? 2 * moe.topK * moe.expertIntermediateSize + moe.topK * spec.hiddenSize : 0);
  const perToken = 4 * spec.hiddenSize + qkv + attn + ffn;
  return 4 * (step.maxTokens * perToken + step.maxLogitRows * spec.vocabSize) + (16 << 20);
}
