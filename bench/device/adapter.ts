/**
 * Prints the WebGPU adapter this runtime gets (description, fallback flag, features, the
 * kernel family it selects): the first line of a device run's `gpu.txt`.
 * @module
 */
import { createGpu } from "../../src/gpu/device.ts";
import { kernelFamilyFor } from "../../src/kernels/family.ts";

const gpu = await createGpu();
console.log(JSON.stringify({
  adapter: gpu.description,
  isFallbackAdapter: gpu.isFallbackAdapter,
  f16: gpu.hasF16,
  subgroups: gpu.hasSubgroups,
  timestamps: gpu.hasTimestamps,
  family: kernelFamilyFor(gpu),
  maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize,
}));
gpu.device.destroy();
