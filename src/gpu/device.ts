/**
 * GPU bootstrap: one adapter, one device with the adapter's real limits.
 * @module
 */
import { LlmError } from "../types/api.ts";
import { webgpu } from "../runtime/runtime.ts";

/** Raised when no WebGPU adapter exists on this machine. */
export class NoGpuAdapterError extends LlmError {
  constructor() {
    super(
      "no_gpu_adapter",
      "No WebGPU adapter found. On Linux without a GPU install Mesa's lavapipe " +
        "(apt-get install -y mesa-vulkan-drivers libvulkan1); elsewhere check that " +
        "your GPU driver supports Vulkan, Metal or D3D12.",
    );
    this.name = "NoGpuAdapterError";
  }
}

/** A device plus what we learned about its adapter. */
export interface Gpu {
  device: GPUDevice;
  /** Limits actually granted to the device. */
  limits: GPUSupportedLimits;
  /** Whether `shader-f16` was enabled. */
  hasF16: boolean;
  /** Whether `timestamp-query` was enabled. */
  hasTimestamps: boolean;
  /** Whether `subgroups` was enabled (subgroup builtins in WGSL). */
  hasSubgroups: boolean;
  /** Whether WGSL offers `packed_4x8_integer_dot_product` (dot4I8Packed, unpack4xI8, ...). */
  hasPacked4x8: boolean;
  /** Whether the adapter says it is a fallback (CPU) adapter, where the runtime reports it. */
  isFallbackAdapter: boolean;
  /** Adapter description for logs. */
  description: string;
}

/** Options for {@link createGpu}. */
export interface CreateGpuOptions {
  /** Power preference passed to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
  /** The WebGPU entry point; defaults to the runtime's (`navigator.gpu`, or Dawn on Bun). */
  gpu?: GPU;
  /**
   * Caps the storage binding size below the adapter's (tests use it to force tensor
   * splitting on small models).
   */
  maxStorageBindingBytes?: number;
}

const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

/**
 * Requests an adapter and a device with the adapter's own limits (the defaults are far
 * below what real adapters offer) and `shader-f16` / `timestamp-query` where offered.
 */
export async function createGpu(options: CreateGpuOptions = {}): Promise<Gpu> {
  const gpu = options.gpu ?? (await webgpu());
  if (!gpu) throw new NoGpuAdapterError();
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
  if (!adapter) throw new NoGpuAdapterError();
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name] as number;
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has("shader-f16")) requiredFeatures.push("shader-f16");
  if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  if (adapter.features.has("subgroups")) requiredFeatures.push("subgroups" as GPUFeatureName);
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  device.addEventListener?.("uncapturederror", (e: Event) => {
    console.error("WebGPU error:", (e as GPUUncapturedErrorEvent).error.message);
  });
  const info = adapter.info;
  const limits = options.maxStorageBindingBytes
    ? cappedLimits(device.limits, options.maxStorageBindingBytes)
    : device.limits;
  return {
    device,
    limits,
    hasF16: device.features.has("shader-f16"),
    hasTimestamps: device.features.has("timestamp-query"),
    hasSubgroups: device.features.has("subgroups"),
    hasPacked4x8: hasWgslFeature(gpu, "packed_4x8_integer_dot_product"),
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter),
    description: info?.description || info?.vendor || "unknown adapter",
  };
}

/** Whether WGSL offers a language feature (`GPU.wgslLanguageFeatures`, absent from older typings). */
function hasWgslFeature(gpu: GPU, name: string): boolean {
  return (gpu as { wgslLanguageFeatures?: ReadonlySet<string> }).wgslLanguageFeatures?.has(name) ?? false;
}

function cappedLimits(limits: GPUSupportedLimits, maxBinding: number): GPUSupportedLimits {
  // Limits are getters: enumerable own properties on Deno, prototype accessors on Dawn.
  const out: Record<string, number> = {};
  const keys = new Set<string>();
  for (let o: object | null = limits; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.getOwnPropertyNames(o)) keys.add(key);
  }
  for (const key of keys) {
    const v = (limits as unknown as Record<string, unknown>)[key];
    if (typeof v === "number") out[key] = v;
  }
  out.maxStorageBufferBindingSize = Math.min(out.maxStorageBufferBindingSize, maxBinding);
  return out as unknown as GPUSupportedLimits;
}
