/** Counts what a piece of work creates and submits on a GPU device (the no-per-step-allocation checks). */

/** Pipelines, bind groups and buffers created, and queue submits. */
export interface GpuCounts {
  pipelines: number;
  bindGroups: number;
  buffers: number;
  submits: number;
}

/** Runs `work` with the device's create/submit methods counted, then puts them back. */
export async function countGpuCalls<T>(
  device: GPUDevice,
  work: () => Promise<T>,
): Promise<{ result: T; counts: GpuCounts }> {
  const counts: GpuCounts = { pipelines: 0, bindGroups: 0, buffers: 0, submits: 0 };
  const wrap = <O extends object, K extends keyof O>(obj: O, key: K, counter: keyof GpuCounts) => {
    const original = obj[key] as unknown as (...a: unknown[]) => unknown;
    obj[key] = ((...args: unknown[]) => {
      counts[counter]++;
      return original.apply(obj, args);
    }) as O[K];
    return () => (obj[key] = original as O[K]);
  };
  const restore = [
    wrap(device, "createComputePipeline", "pipelines"),
    wrap(device, "createBindGroup", "bindGroups"),
    wrap(device, "createBuffer", "buffers"),
    wrap(device.queue, "submit", "submits"),
  ];
  try {
    return { result: await work(), counts };
  } finally {
    restore.forEach((r) => r());
  }
}
