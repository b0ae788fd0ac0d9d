/**
 * Child process of the quant bench section: loads one model (optionally quantized) onto the
 * GPU and prints, as one JSON line, the load time, the bytes uploaded and the process's RSS
 * high-water mark (Linux `VmHWM`) after creating the device (the runtime's baseline) and after
 * the load. A fresh process per load, so one load's peak does not hide another's.
 * Usage: `<runtime> bench/quant_load_probe.ts MODEL q8_0|q4_0|none`.
 * @module
 */
import { createGpu } from "../src/gpu/device.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import type { Quantization } from "../src/types/api.ts";
import { args, readTextFile } from "../src/runtime/runtime.ts";

/** What the probe prints. */
export interface LoadProbe {
  loadS: number;
  weightBytes: number;
  /** VmHWM after creating the GPU device, before the load. */
  baselineHwmBytes: number;
  /** VmHWM after the load. */
  peakHwmBytes: number;
  /** Per-layer linear weights run by the quantized kernels. */
  quantKernels: boolean;
}

async function vmHwm(): Promise<number> {
  const status = await readTextFile("/proc/self/status");
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : NaN;
}

if (import.meta.main) {
  const [model, quantization = "none"] = args();
  const gpu = await createGpu();
  const baselineHwmBytes = await vmHwm();
  const t0 = performance.now();
  const runner = await ModelRunner.load(model, {
    gpu,
    quantization: quantization as Quantization,
    maxSeqs: 8,
    maxTokens: 64,
    numBlocks: 64,
  });
  await gpu.device.queue.onSubmittedWorkDone();
  const loadS = (performance.now() - t0) / 1000;
  const out: LoadProbe = {
    loadS,
    weightBytes: runner.weights.bytes,
    baselineHwmBytes,
    peakHwmBytes: await vmHwm(),
    quantKernels: runner.weights.layers[0].down!.kind === "quant",
  };
  console.log(JSON.stringify(out));
  runner.close();
  gpu.device.destroy();
}
