/**
 * Requests a device as the engine does and prints what happened as one JSON line (for the
 * adapter tests, which run it in a subprocess with another Vulkan loader environment).
 * Usage: adapter_probe.ts [--allow-fallback-adapter]
 * @module
 */
import { createGpu } from "../../src/gpu/device.ts";
import { LlmError } from "../../src/types/api.ts";
import { args, exit } from "../../src/runtime/runtime.ts";

try {
  const gpu = await createGpu({ allowFallbackAdapter: args().includes("--allow-fallback-adapter") });
  console.log(JSON.stringify({ ok: true, kind: gpu.adapterKind, description: gpu.description }));
  gpu.device.destroy();
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: (e as Error).name, code: e instanceof LlmError ? e.code : null, message: (e as Error).message }));
}
exit(0);
