/**
 * Which WebGPU adapters the runtime runs on by default. Without a Vulkan driver wgpu falls
 * back to OpenGL (through EGL/ANGLE): slow, and it panics on teardown. A CPU Vulkan driver
 * (Mesa's lavapipe, SwiftShader) is a fallback adapter too (`isFallbackAdapter`), but it is
 * the supported way to run without a GPU, so it is told apart from GL and other software
 * adapters by its name and backend. Pure: the device code gathers the facts.
 * @module
 */
import type { GpuBackend } from "../runtime/runtime.ts";

/** What an adapter says about itself, and the backend the runtime knows it runs on. */
export interface AdapterFacts {
  description: string;
  vendor: string;
  architecture: string;
  device: string;
  isFallbackAdapter: boolean;
  backend: GpuBackend;
}

/**
 * What kind of adapter it is: a GPU, a CPU Vulkan driver, an OpenGL adapter, or another
 * software (fallback) adapter.
 */
export type AdapterKind = "gpu" | "cpu-vulkan" | "gl" | "software";

/** The decision about one adapter. */
export interface AdapterVerdict {
  kind: AdapterKind;
  /** For logs: the name, backend, and what kind of adapter it is. */
  label: string;
  /** Why it is refused (with what to do), or null when it is used. */
  refusal: string | null;
}

const GL_NAME = /\b(ANGLE|OpenGL|GLES|EGL)\b/i;
const CPU_VULKAN_NAME = /\b(llvmpipe|lavapipe|SwiftShader)\b/i;
const BACKEND_NAMES: Record<GpuBackend, string> = {
  vulkan: "Vulkan",
  metal: "Metal",
  d3d12: "D3D12",
  gl: "OpenGL",
  unknown: "backend unknown",
};
const KIND_NAMES: Record<AdapterKind, string> = {
  gpu: "GPU",
  "cpu-vulkan": "CPU Vulkan driver",
  gl: "OpenGL fallback adapter",
  software: "software fallback adapter",
};

/** The kind of an adapter (see {@link AdapterKind}). */
export function classifyAdapter(f: AdapterFacts): AdapterKind {
  if (f.backend === "gl" || GL_NAME.test(f.description)) return "gl";
  // The llvmpipe name alone is not enough: Mesa's OpenGL renderer has it too.
  if (f.backend === "vulkan" && CPU_VULKAN_NAME.test(`${f.description} ${f.vendor} ${f.device}`)) return "cpu-vulkan";
  if (f.isFallbackAdapter || f.architecture === "software") return "software";
  return "gpu";
}

/** Whether to use an adapter: GPUs and CPU Vulkan drivers always, others only when allowed. */
export function judgeAdapter(f: AdapterFacts, allowFallbackAdapter: boolean): AdapterVerdict {
  const kind = classifyAdapter(f);
  const name = f.description || f.vendor || "unknown adapter";
  const label = `${name} (${BACKEND_NAMES[f.backend]}, ${KIND_NAMES[kind]})`;
  const usable = kind === "gpu" || kind === "cpu-vulkan" || allowFallbackAdapter;
  return {
    kind,
    label,
    refusal: usable ? null : `the only WebGPU adapter is ${label}, which is slow and unstable here. ${VULKAN_HINT}`,
  };
}

/** What to do when no usable adapter exists. */
export const VULKAN_HINT = "Install a Vulkan driver (without a GPU: Mesa's lavapipe, " +
  "apt-get install -y mesa-vulkan-drivers libvulkan1), or pass --allow-fallback-adapter " +
  "(allowFallbackAdapter: true) to use a fallback adapter anyway.";
