/** The engine's size and memory, as the startup lines of serve.ts and the CLI print them. */
import type { EngineInfo } from "../types/api.ts";

/** ", 1.7M parameters (0.9M active)" for the startup line; active only when it differs. */
export function parametersNote(p: { total: number; active: number } | undefined): string {
  if (!p) return "";
  const fmt = (n: number) => n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}K`;
  return `, ${fmt(p.total)} parameters` + (p.active < p.total ? ` (${fmt(p.active)} active)` : "");
}

/** "memory: weights 2.2 MiB (experts 1.6 MiB), KV cache 6.0 MiB (what the weights left of --gpu-memory-bytes 64.0 MiB)". */
export function memoryNote(m: NonNullable<EngineInfo["memory"]>): string {
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const from = {
    default: "the default budget; --gpu-memory-bytes sizes it from a total",
    kv_cache_bytes: "--kv-cache-bytes",
    gpu_memory_bytes: `what the weights and step buffers left of --gpu-memory-bytes ${mib(m.gpuMemoryBytes ?? 0)}`,
    num_blocks: "--num-blocks",
  }[m.kvBudget];
  return `memory: weights ${mib(m.weightBytes)}` + (m.expertBytes > 0 ? ` (experts ${mib(m.expertBytes)})` : "") +
    `, KV cache ${mib(m.kvCacheBytes)} (${from})`;
}

/** The CLI's stderr lines about the loaded engine: its adapter and size, then its memory. */
export function cliEngineNote(info: EngineInfo): string {
  return `adapter: ${info.device}\nmodel: ${info.architecture}${parametersNote(info.parameters)}\n` +
    (info.memory ? memoryNote(info.memory) + "\n" : "");
}
