/**
 * GPU bootstrap: one adapter, one device with the adapter's real limits.
 * @module
 */
import { LlmError } from "../types/api.ts";
import { webgpu, webgpuBackend } from "../runtime/runtime.ts";
import { type AdapterKind, judgeAdapter, VULKAN_HINT } from "./adapter_policy.ts";

/** Raised when no WebGPU adapter exists on this machine. */
export class NoGpuAdapterError extends LlmError {
  constructor() {
    super(
      "no_gpu_adapter",
      "No WebGPU adapter found (wgpu's OpenGL fallback is not used unless allowed). " +
        `${VULKAN_HINT} Elsewhere check that your GPU driver supports Vulkan, Metal or D3D12.`,
    );
    this.name = "NoGpuAdapterError";
  }
}

/** Raised when the only adapter is an OpenGL or software fallback and fallbacks are not allowed. */
export class FallbackAdapterError extends LlmError {
  constructor(reason: string) {
    super("fallback_adapter", reason);
    this.name = "FallbackAdapterError";
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
  /** The adapter for logs: name, backend and kind (see {@link judgeAdapter}). */
  description: string;
  /** GPU, CPU Vulkan driver, or a fallback let through by `allowFallbackAdapter`. */
  adapterKind: AdapterKind;
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
  /**
   * Use an OpenGL or software fallback adapter when it is all there is (default false: a
   * {@link FallbackAdapterError}). A CPU Vulkan driver (lavapipe) is always used.
   */
  allowFallbackAdapter?: boolean;
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
  const allowFallback = options.allowFallbackAdapter ?? false;
  const gpu = options.gpu ?? (await webgpu({ allowGl: allowFallback }));
  if (!gpu) throw new NoGpuAdapterError();
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference });
  if (!adapter) throw new NoGpuAdapterError();
  const info = adapter.info;
  const verdict = judgeAdapter({
    description: info?.description ?? "",
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device: info?.device ?? "",
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter),
    backend: webgpuBackend(),
  }, allowFallback);
  if (verdict.refusal) throw new FallbackAdapterError(verdict.refusal);
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
    description: verdict.label,
    adapterKind: verdict.kind,
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
