/**
 * The GPU side of the paged KV cache: per layer one K and one V buffer laid out as
 * [block][kv head][slot in block][head dim], f32.
 * @module
 */
import { LlmError } from "../api/types.ts";

/** Options for {@link KvCache}. */
export interface KvCacheOptions {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
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
    const perLayer = KvCache.layerBytes(options);
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
    return o.numBlocks * o.numKvHeads * o.blockSize * o.headDim * 4;
  }

  /** Bytes of one block across all layers, K and V. */
  static blockBytes(o: Omit<KvCacheOptions, "numBlocks">): number {
    return 2 * o.numLayers * o.numKvHeads * o.blockSize * o.headDim * 4;
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
