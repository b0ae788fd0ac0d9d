/**
 * Kernel descriptors and the pipeline cache.
 *
 * A kernel is a `.wgsl` file in `kernels/` plus a {@link KernelDescriptor}: its bindings,
 * workgroup size and how to dispatch it. Sources are specialised by a tiny preprocessor
 * (`#if NAME` / `#else` / `#endif`, `{{NAME}}` substitution, `#include NAME`) and the
 * resulting pipelines are cached by specialisation key.
 * @module
 */
import { readTextFile } from "../runtime/runtime.ts";

/** How a binding is declared in a kernel's explicit bind-group layout. */
export type BindingKind = "meta" | "uniform" | "storage" | "read-only-storage";

/** Values a kernel is specialised on. Booleans drive `#if`, numbers fill `{{NAME}}`. */
export type Defines = Record<string, number | boolean>;

/** The typed description of one kernel file. */
export interface KernelDescriptor<D extends Defines = Defines> {
  /** File name in `kernels/` without `.wgsl`. */
  file: string;
  /** Bindings of group 0 in order; `meta` is the step metadata (dynamic offset). */
  bindings: readonly BindingKind[];
  /** Extra defines derived from the given ones (workgroup size and the like). */
  derive?: (defines: D) => Defines;
}

/** Raised when a kernel fails to compile; carries the specialisation key. */
export class KernelCompileError extends Error {
  constructor(key: string, message: string) {
    super(`kernel ${key}: ${message}`);
    this.name = "KernelCompileError";
  }
}

/** Expands `#if`/`#else`/`#endif`, `#include` and `{{NAME}}` in a WGSL source. */
export function preprocess(
  source: string,
  defines: Defines,
  include: (name: string) => string,
): string {
  const out: string[] = [];
  const stack: { active: boolean; taken: boolean }[] = [];
  const active = () => stack.every((s) => s.active);
  for (const line of source.split("\n")) {
    const trimmed = line.trim();
    const m = /^#(if|ifnot|else|endif|include)\b\s*(\S*)/.exec(trimmed);
    if (m) {
      const [, directive, name] = m;
      if (directive === "if" || directive === "ifnot") {
        const value = Boolean(defines[name]);
        const cond = directive === "if" ? value : !value;
        stack.push({ active: cond, taken: cond });
      } else if (directive === "else") {
        const top = stack.at(-1);
        if (!top) throw new Error("#else without #if");
        top.active = !top.taken;
      } else if (directive === "endif") {
        if (!stack.pop()) throw new Error("#endif without #if");
      } else if (active()) {
        out.push(preprocess(include(name), defines, include));
      }
      continue;
    }
    if (!active()) continue;
    out.push(line.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
      const v = defines[name];
      if (v === undefined) throw new Error(`undefined {{${name}}}`);
      return typeof v === "number" && !Number.isInteger(v) ? v.toExponential(9) : String(Number(v));
    }));
  }
  if (stack.length) throw new Error("unterminated #if");
  return out.join("\n");
}

/** Reads kernel sources from `kernels/` (once each). */
export async function loadKernelSources(files: Iterable<string>): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  for (const file of new Set(["common", ...files])) {
    const url = new URL(`../../kernels/${file}.wgsl`, import.meta.url);
    sources.set(file, await readTextFile(url));
  }
  return sources;
}

/** A compiled kernel: its pipeline and the layout its bind groups use. */
export interface CompiledKernel {
  key: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  bindings: readonly BindingKind[];
}

/** Compiles and caches pipelines by specialisation key; one per device. */
export class PipelineCache {
  #device: GPUDevice;
  #sources: Map<string, string>;
  #cache = new Map<string, CompiledKernel>();
  // Kernels with the same binding signature share one layout object, so one bind group
  // serves every specialisation of a kernel (e.g. matmul for 1 or 8 rows per invocation).
  #layouts = new Map<string, GPUBindGroupLayout>();

  constructor(device: GPUDevice, sources: Map<string, string>) {
    this.#device = device;
    this.#sources = sources;
  }

  /** Number of distinct pipelines built so far. */
  get size(): number {
    return this.#cache.size;
  }

  /** Returns the pipeline for `desc` specialised on `defines`, building it on first use. */
  get<D extends Defines>(desc: KernelDescriptor<D>, defines: D): CompiledKernel {
    const all: Defines = { ...defines, ...(desc.derive?.(defines) ?? {}) };
    const key = desc.file + JSON.stringify(Object.entries(all).sort(([a], [b]) => a < b ? -1 : 1));
    const hit = this.#cache.get(key);
    if (hit) return hit;
    const source = this.#source(desc.file);
    const code = preprocess(source, all, (name) => this.#source(name));
    const module = this.#device.createShaderModule({ code, label: key });
    const layout = this.layoutFor(desc.bindings);
    const pipeline = this.#device.createComputePipeline({
      label: key,
      layout: this.#device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const compiled = { key, pipeline, layout, bindings: desc.bindings };
    this.#cache.set(key, compiled);
    return compiled;
  }

  /** The shared bind-group layout for a binding signature. */
  layoutFor(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const sig = bindings.join(",");
    let layout = this.#layouts.get(sig);
    if (!layout) {
      layout = this.#device.createBindGroupLayout({
        label: sig,
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: kind === "meta"
            ? { type: "read-only-storage", hasDynamicOffset: true }
            : { type: kind },
        })),
      });
      this.#layouts.set(sig, layout);
    }
    return layout;
  }

  #source(file: string): string {
    const s = this.#sources.get(file);
    if (s === undefined) throw new KernelCompileError(file, "source not loaded");
    return s;
  }
}
