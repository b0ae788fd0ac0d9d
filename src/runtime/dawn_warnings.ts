/**
 * Dawn (Bun's WebGPU) writes two warnings straight to the process's stderr whenever it
 * enumerates a Vulkan adapter that reports more dynamic buffers than Dawn can offset, as
 * Mesa's lavapipe does (1,000,000): "maxDynamicUniformBuffersPerPipelineLayout artificially
 * reduced from 1000000 to 16 ...", and the same for storage buffers. They are harmless (the
 * project uses no dynamic offsets) and Dawn has no switch for them, so the synchronous part of
 * `requestAdapter`, where Dawn prints them, runs with file descriptor 2 pointed at a temporary
 * file; every other line written meanwhile is passed on to stderr.
 * @module
 */
import fs from "node:fs";
import os from "node:os";
import process from "node:process";

/** The lines Dawn prints for lavapipe's limits (and nothing else is dropped). */
export const DAWN_LIMIT_WARNING: RegExp =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

interface Libc {
  dup(fd: number): number;
  dup2(from: number, to: number): number;
  close(fd: number): number;
  flock(fd: number, op: number): number;
}

const LOCK_EX = 2;

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

async function loadLibc(): Promise<Libc | null> {
  if (process.platform !== "linux") return null;
  try {
    // The specifier is a variable so Deno's type checker never resolves it.
    const name = "bun:ffi";
    const { dlopen, FFIType } = await import(name);
    const i32 = FFIType.i32;
    const lib = dlopen("libc.so.6", {
      dup: { args: [i32], returns: i32 },
      dup2: { args: [i32, i32], returns: i32 },
      close: { args: [i32], returns: i32 },
      flock: { args: [i32, i32], returns: i32 },
    });
    return lib.symbols as Libc;
  } catch {
    return null; // not glibc: the warnings stay
  }
}

/**
 * Wraps `gpu.requestAdapter` so Dawn's lavapipe limit warnings are dropped. File descriptor 2
 * is process-wide, so threads (each Worker has its own Dawn instance) take a lock while they
 * redirect it. Where libc cannot be loaded the GPU is returned as it is.
 */
export async function quietDawnAdapterWarnings(gpu: GPU): Promise<GPU> {
  const libc = await (globals.__webgpuLlmLibc ??= loadLibc());
  if (!libc) return gpu;
  const request = gpu.requestAdapter.bind(gpu);
  const dir = os.tmpdir();
  const filtered = (options?: GPURequestAdapterOptions): Promise<GPUAdapter | null> => {
    // The lock is on the temp directory itself: nothing to create or clean up (other
    // processes doing the same wait a moment, which is harmless).
    const lock = fs.openSync(dir, "r");
    const capturePath = `${dir}/webgpu-llm-dawn-${process.pid}-${crypto.randomUUID()}.log`;
    const capture = fs.openSync(capturePath, "w+");
    let pending: Promise<GPUAdapter | null>;
    try {
      libc.flock(lock, LOCK_EX);
      const saved = libc.dup(2);
      libc.dup2(capture, 2);
      try {
        pending = request(options); // Dawn enumerates adapters (and warns) synchronously here
      } finally {
        libc.dup2(saved, 2);
        libc.close(saved);
      }
    } finally {
      fs.closeSync(lock); // releases the flock
      fs.closeSync(capture);
    }
    const written = fs.readFileSync(capturePath, "utf8");
    fs.unlinkSync(capturePath);
    const kept = written.split("\n").filter((line) => line && !DAWN_LIMIT_WARNING.test(line));
    if (kept.length) process.stderr.write(kept.join("\n") + "\n");
    return pending;
  };
  Object.defineProperty(gpu, "requestAdapter", { value: filtered, configurable: true, writable: true });
  return gpu;
}
