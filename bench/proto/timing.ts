/**
 * Interleaved GPU timing for the prototype benchmark: every item runs once per round, rounds
 * alternate over all items (so a busy moment on a shared machine hits every variant alike),
 * and each sample is one compute pass repeating the item's dispatches enough times to last a
 * few milliseconds, timed with GPU timestamps. Alongside, the process CPU time per dispatch:
 * on a CPU adapter that is the work done by the driver's threads, which other processes on
 * the machine inflate far less than they inflate wall time.
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
  id: string;
  /** GPU time per repetition, ms (median over rounds). */
  gpuMs: number;
  /** Fastest round's GPU time per repetition, ms. */
  gpuMinMs: number;
  /** Process CPU time per repetition, ms (median): all driver threads together. */
  cpuMs: number;
  reps: number;
  rounds: number;
}

/** Options of {@link timeInterleaved}. */
export interface TimingOptions {
  rounds: number;
  /** GPU time one sample aims for, ms. */
  targetPassMs: number;
  maxReps?: number;
}

/** Times every item, interleaved round by round. */
export async function timeInterleaved(
  device: GPUDevice,
  items: Timed[],
  options: TimingOptions,
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
  const gpu = new Map<string, number[]>(items.map((i) => [i.id, []]));
  const cpu = new Map<string, number[]>(items.map((i) => [i.id, []]));
  for (let round = 0; round < options.rounds; round++) {
    for (const item of items) {
      const s = await once(item, reps.get(item.id)!);
      gpu.get(item.id)!.push(s.gpu);
      cpu.get(item.id)!.push(s.cpu);
    }
  }
  timer.destroy();
  const out = new Map<string, TimedResult>();
  for (const item of items) {
    const g = gpu.get(item.id)!;
    out.set(item.id, {
      id: item.id,
      gpuMs: percentile(g, 50),
      gpuMinMs: Math.min(...g),
      cpuMs: percentile(cpu.get(item.id)!, 50),
      reps: reps.get(item.id)!,
      rounds: options.rounds,
    });
  }
  return out;
}
