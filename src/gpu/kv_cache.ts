/**
 * The GPU side of the paged KV cache: per layer one K and one V buffer laid out as
 * [block][kv head][slot in block][head dim], f32 or f16 (two halves per u32 word: half the
 * bytes, so twice the blocks for the same memory).
 * @module
 */
import { type KvDtype, LlmError } from "../types/api.ts";

/** Options for {@link KvCache}. */
export interface KvCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
  /** Element type (default "f32"). */
  dtype?: KvDtype;
}

/** Raised when the cache shape cannot be allocated on this device. */
export class KvCacheSizeError extends LlmError {
  constructor(message: string) {
    super("device_limit", message);
    this.name = "KvCacheSizeError";
  }
}

/** Per-layer paged K/V buffers. */
export class KvCache {
  readonly options: KvCacheOptions;
  readonly keys: GPUBuffer[] = [];
  readonly values: GPUBuffer[] = [];

  constructor(device: GPUDevice, options: KvCacheOptions, maxBindingBytes?: number) {
    this.options = options;
    if (options.dtype === "f16" && options.headDim % 2 !== 0) {
      throw new KvCacheSizeError(`an f16 KV cache needs an even head_dim, got ${options.headDim}`);
    }
    const perLayer = Math.ceil(KvCache.layerBytes(options) / 4) * 4;
    const limit = Math.min(
      maxBindingBytes ?? device.limits.maxStorageBufferBindingSize,
      device.limits.maxBufferSize,
    );
    if (perLayer > limit) {
      throw new KvCacheSizeError(
        `KV cache of ${options.numBlocks} blocks needs ${perLayer} bytes per layer, ` +
          `over the device's binding limit ${limit}; use fewer blocks`,
      );
    }
    for (let l = 0; l < options.numLayers; l++) {
      const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
      this.keys.push(device.createBuffer({ size: perLayer, usage, label: `k_cache.${l}` }));
      this.values.push(device.createBuffer({ size: perLayer, usage, label: `v_cache.${l}` }));
    }
  }

  /** Bytes of one layer's K (or V) buffer. */
  static layerBytes(o: Omit<KvCacheOptions, "numLayers">): number {
    return o.numBlocks * o.numKvHeads * o.blockSize * o.headDim * elementBytes(o.dtype);
  }

  /** Bytes of one block across all layers, K and V. */
  static blockBytes(o: Omit<KvCacheOptions, "numBlocks">): number {
    return 2 * o.numLayers * o.numKvHeads * o.blockSize * o.headDim * elementBytes(o.dtype);
  }

  /** The element type. */
  get dtype(): KvDtype {
    return this.options.dtype ?? "f32";
  }

  /** Total bytes held on the GPU. */
  get bytes(): number {
    return 2 * this.options.numLayers * KvCache.layerBytes(this.options);
  }

  /** Frees the GPU buffers. */
  destroy(): void {
    for (const b of [...this.keys, ...this.values]) b.destroy();
  }
}

function elementBytes(dtype: KvDtype | undefined): number {
  return dtype === "f16" ? 2 : 4;
}
