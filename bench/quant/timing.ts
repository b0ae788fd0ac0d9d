/**
 * Interleaved GPU timing for the quantized-matmul benchmark: every item runs once per round,
 * rounds alternate over all items (a busy moment on a shared machine hits every variant
 * alike), and each sample is one compute pass repeating the item's dispatches enough times to
 * last a few milliseconds, timed with GPU timestamps; alongside, the process CPU time per
 * repetition (on a CPU adapter the driver threads' work, which other processes inflate less
 * than wall time). Medians over the rounds.
 * @module
 */
import process from "node:process";
import { GpuTimer } from "../gpu_timer.ts";
import { percentile } from "../stats.ts";

/** Something to time: encodes one repetition (`rep` counts up, for rotating buffers). */
export interface Timed {
  id: string;
  encode: (pass: GPUComputePassEncoder, rep: number) => void;
}

/** Medians over the rounds, per repetition. */
export interface TimedResult {
  /** GPU time per repetition, ms (median over rounds). */
  gpuMs: number;
  /** Fastest round's GPU time per repetition, ms. */
  gpuMinMs: number;
  /** Process CPU time per repetition, ms (median). */
  cpuMs: number;
}

/** Times every item, interleaved round by round. */
export async function timeInterleaved(
  device: GPUDevice,
  items: Timed[],
  options: { rounds: number; targetPassMs: number; maxReps?: number },
): Promise<Map<string, TimedResult>> {
  const timer = new GpuTimer(device, 1);
  const once = async (item: Timed, reps: number) => {
    const c0 = process.cpuUsage();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(timer.pass(0));
    for (let r = 0; r < reps; r++) item.encode(pass, r);
    pass.end();
    timer.resolve(encoder, 1);
    device.queue.submit([encoder.finish()]);
    const ns = (await timer.read(1))[0];
    const cpu = process.cpuUsage(c0);
    return { gpu: ns / 1e6 / reps, cpu: (cpu.user + cpu.system) / 1000 / reps };
  };
  const reps = new Map<string, number>();
  for (const item of items) {
    await once(item, 1); // compile and warm
    const one = (await once(item, 1)).gpu;
    reps.set(
      item.id,
      Math.max(
        1,
        Math.min(options.maxReps ?? 64, Math.round(options.targetPassMs / Math.max(one, 1e-3))),
      ),
    );
  }
  const samples = new Map<string, { gpu: number[]; cpu: number[] }>(
    items.map((i) => [i.id, { gpu: [], cpu: [] }]),
  );
  for (let round = 0; round < options.rounds; round++) {
    for (const item of items) {
      const s = await once(item, reps.get(item.id)!);
      samples.get(item.id)!.gpu.push(s.gpu);
      samples.get(item.id)!.cpu.push(s.cpu);
    }
  }
  timer.destroy();
  return new Map(items.map((item) => {
    const s = samples.get(item.id)!;
    return [item.id, {
      gpuMs: percentile(s.gpu, 50),
      gpuMinMs: Math.min(...s.gpu),
      cpuMs: percentile(s.cpu, 50),
    }];
  }));
}
