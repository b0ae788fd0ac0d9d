/**
 * The kernel registry: each kernel is a `.wgsl` file in `kernels/` plus a typed
 * {@link KernelDescriptor}. Sources are specialised by the preprocessor and compiled once per
 * specialisation key. A compiled kernel reads its own bindings (`@binding(N) var<...> name`)
 * and its uniform `struct Params` from the specialised source, so bind groups are built by
 * binding NAME and parameters packed by field NAME: the binding index, its access mode and
 * the field order are stated only in the WGSL.
 * @module
 */
import { type Defines, preprocess } from "./preprocess.ts";
import { layoutWgsl } from "./layout.ts";
import { readTextFile } from "../runtime/runtime.ts";

export type { Defines } from "./preprocess.ts";

/** The typed description of one kernel file. */
export interface KernelDescriptor<D extends Defines = Defines, B extends string = string> {
  /** File name in `kernels/` without `.wgsl`. */
  file: string;
  /**
   * Names of every binding the kernel may declare besides the step metadata (`step`) and the
   * uniform parameters (`p`); a specialisation may declare a subset.
   */
  bindings: readonly B[];
  /** Extra defines derived from the given ones (workgroup size and the like). */
  derive?: (defines: D) => Defines;
}

/** Declares a kernel: its file and the names of its bindings. */
export function kernel<D extends Defines, B extends string>(
  file: string,
  bindings: readonly B[],
  derive?: (defines: D) => Defines,
): KernelDescriptor<D, B> {
  return { file, bindings, derive };
}

/** How a binding is declared in a bind-group layout. */
export type BindingKind = "meta" | "uniform" | "storage" | "read-only-storage";

/** One binding as the specialised source declares it. */
export interface BindingInfo {
  name: string;
  index: number;
  kind: BindingKind;
}

/** The name of the step-metadata binding (bound with a dynamic offset). */
export const META_BINDING = "step";
/** The name of the uniform parameters binding. */
export const PARAMS_BINDING = "p";

/** Raised when a kernel fails to preprocess, compile or bind; carries its key. */
export class KernelCompileError extends Error {
  constructor(key: string, message: string) {
    super(`kernel ${key}: ${message}`);
    this.name = "KernelCompileError";
  }
}

const BINDING_RE = /@group\(0\)\s*@binding\((\d+)\)\s*var(?:<([^>]+)>)?\s+(\w+)\s*:/g;

/** The group-0 bindings a WGSL source declares, in index order. */
export function parseBindings(code: string): BindingInfo[] {
  const out: BindingInfo[] = [];
  for (const m of code.matchAll(BINDING_RE)) {
    const [, index, space = "", name] = m;
    const parts = space.split(",").map((s) => s.trim());
    let kind: BindingKind;
    if (name === META_BINDING) kind = "meta";
    else if (parts[0] === "uniform") kind = "uniform";
    else if (parts[0] === "storage") kind = parts[1] === "read_write" ? "storage" : "read-only-storage";
    else throw new Error(`binding ${name}: unsupported address space <${space}>`);
    out.push({ name, index: Number(index), kind });
  }
  out.sort((a, b) => a.index - b.index);
  out.forEach((b, i) => {
    if (b.index !== i) throw new Error(`bindings must be numbered 0..n-1 without gaps (found @binding(${b.index}) ${b.name})`);
  });
  return out;
}

/** The scalar fields of `struct Params { ... }`, in order, or [] when there is none. */
export function parseParams(code: string): { name: string; type: "u32" | "f32" | "i32" }[] {
  const m = /struct\s+Params\s*\{([^}]*)\}/.exec(code);
  if (!m) return [];
  return m[1].split(",").map((f) => f.trim()).filter(Boolean).map((f) => {
    const fm = /^(\w+)\s*:\s*(u32|f32|i32)$/.exec(f);
    if (!fm) throw new Error(`struct Params field "${f}" is not a u32/f32/i32 scalar`);
    return { name: fm[1], type: fm[2] as "u32" | "f32" | "i32" };
  });
}

/** A resource for one binding. */
export type BindingResource = GPUBuffer | GPUBufferBinding;

/** A compiled kernel: its pipeline, layout, bindings and parameter fields. */
export class CompiledKernel<B extends string = string> {
  readonly key: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly bindings: readonly BindingInfo[];
  readonly params: readonly { name: string; type: "u32" | "f32" | "i32" }[];
  #device: GPUDevice;

  constructor(
    device: GPUDevice,
    init: {
      key: string;
      pipeline: GPUComputePipeline;
      layout: GPUBindGroupLayout;
      bindings: BindingInfo[];
      params: { name: string; type: "u32" | "f32" | "i32" }[];
    },
  ) {
    this.#device = device;
    this.key = init.key;
    this.pipeline = init.pipeline;
    this.layout = init.layout;
    this.bindings = init.bindings;
    this.params = init.params;
  }

  /** Packs `struct Params` from values named like its fields (all of them, no others). */
  packParams(values: Readonly<Record<string, number>>): ArrayBuffer {
    const data = new ArrayBuffer(Math.max(16, Math.ceil((this.params.length * 4) / 16) * 16));
    const view = new DataView(data);
    const given = new Set(Object.keys(values));
    this.params.forEach(({ name, type }, i) => {
      const v = values[name];
      if (v === undefined) throw new KernelCompileError(this.key, `missing parameter ${name}`);
      given.delete(name);
      if (type === "f32") view.setFloat32(i * 4, v, true);
      else if (type === "i32") view.setInt32(i * 4, v, true);
      else view.setUint32(i * 4, v, true);
    });
    if (given.size) throw new KernelCompileError(this.key, `unknown parameters ${[...given].join(", ")}`);
    return data;
  }

  /** A uniform buffer holding `struct Params`, written once. */
  uniform(values: Readonly<Record<string, number>>, label = this.key): GPUBuffer {
    const data = this.packParams(values);
    const buffer = this.#device.createBuffer({ label, size: data.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.#device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  }

  /**
   * Builds a bind group from resources named like the kernel's bindings (`step` for the step
   * metadata, `p` for the parameters). Every declared binding needs a resource, and every
   * resource must name a declared binding.
   */
  bindGroup(label: string, resources: Partial<Record<B | typeof META_BINDING | typeof PARAMS_BINDING, BindingResource>>): GPUBindGroup {
    const given = new Set(Object.keys(resources));
    const entries: GPUBindGroupEntry[] = this.bindings.map(({ name, index }) => {
      const r = (resources as Record<string, BindingResource | undefined>)[name];
      if (!r) throw new KernelCompileError(this.key, `no resource for binding ${name}`);
      given.delete(name);
      return { binding: index, resource: r instanceof GPUBuffer ? { buffer: r } : r };
    });
    if (given.size) throw new KernelCompileError(this.key, `it declares no binding ${[...given].join(", ")}`);
    return this.#device.createBindGroup({ label, layout: this.layout, entries });
  }
}

/** Throws unless every binding the kernel declares is named by the descriptor. */
function checked<K extends CompiledKernel>(desc: { bindings: readonly string[] }, kernel: K): K {
  const allowed = new Set<string>([META_BINDING, PARAMS_BINDING, ...desc.bindings]);
  const unknown = kernel.bindings.filter((b) => !allowed.has(b.name));
  if (unknown.length) {
    throw new KernelCompileError(kernel.key, `bindings ${unknown.map((b) => b.name).join(", ")} are not in the descriptor`);
  }
  return kernel;
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
    this.#sources = new Map(sources);
    this.#sources.set("layout", layoutWgsl());
  }

  /** Number of distinct pipelines built so far. */
  get size(): number {
    return this.#cache.size;
  }

  /** Returns `desc` specialised on `defines`, compiling it on first use. */
  get<D extends Defines, B extends string>(desc: KernelDescriptor<D, B>, defines: D): CompiledKernel<B> {
    const all: Defines = { ...defines, ...(desc.derive?.(defines) ?? {}) };
    const key = desc.file + JSON.stringify(Object.entries(all).sort(([a], [b]) => a < b ? -1 : 1));
    const hit = this.#cache.get(key);
    if (hit) return checked(desc, hit) as CompiledKernel<B>;
    let code: string;
    let bindings: BindingInfo[];
    let params: { name: string; type: "u32" | "f32" | "i32" }[];
    try {
      code = preprocess(this.#source(desc.file), all, (name) => this.#source(name));
      bindings = parseBindings(code);
      params = parseParams(code);
    } catch (e) {
      throw new KernelCompileError(key, (e as Error).message);
    }
    const module = this.#device.createShaderModule({ code, label: key });
    const layout = this.#layoutFor(bindings);
    const pipeline = this.#device.createComputePipeline({
      label: key,
      layout: this.#device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    const compiled = new CompiledKernel<B>(this.#device, { key, pipeline, layout, bindings, params });
    this.#cache.set(key, compiled);
    return checked(desc, compiled);
  }

  #layoutFor(bindings: readonly BindingInfo[]): GPUBindGroupLayout {
    const sig = bindings.map((b) => b.kind).join(",");
    let layout = this.#layouts.get(sig);
    if (!layout) {
      layout = this.#device.createBindGroupLayout({
        label: sig,
        entries: bindings.map(({ kind, index }) => ({
          binding: index,
          visibility: GPUShaderStage.COMPUTE,
          buffer: kind === "meta" ? { type: "read-only-storage", hasDynamicOffset: true } : { type: kind },
        })),
      });
      this.#layouts.set(sig, layout);
    }
    return layout;
  }

  #source(file: string): string {
    const s = this.#sources.get(file);
    if (s === undefined) throw new Error(`kernel source ${file} not loaded`);
    return s;
  }
}

const SHARED = new WeakMap<GPUDevice, Map<string, Promise<PipelineCache>>>();

/**
 * The pipeline cache of `device` over these kernel files, shared by every runner on the device:
 * a second model loaded on the same GPU (tests, benches) reuses the first one's compiled
 * pipelines instead of compiling them again.
 */
export function sharedPipelineCache(device: GPUDevice, files: Iterable<string>): Promise<PipelineCache> {
  const names = [...new Set(files)].sort();
  let byFiles = SHARED.get(device);
  if (!byFiles) SHARED.set(device, byFiles = new Map());
  const key = names.join(",");
  let cache = byFiles.get(key);
  if (!cache) {
    cache = loadKernelSources(names).then((sources) => new PipelineCache(device, sources));
    cache.catch(() => byFiles.delete(key)); // a failed read is retried by the next load
    byFiles.set(key, cache);
  }
  return cache;
}

/**
 * Reads kernel sources from `kernels/` (once each, with the files they `#include`), by file
 * or over fetch when remote.
 */
export async function loadKernelSources(files: Iterable<string>): Promise<Map<string, string>> {
  const sources = new Map<string, string>();
  const queue = ["common", ...files];
  while (queue.length) {
    const file = queue.shift()!;
    if (sources.has(file) || file === "layout") continue;
    const url = new URL(`../../kernels/${file}.wgsl`, import.meta.url);
    const text = url.protocol === "file:" ? await readTextFile(url) : await (await fetch(url)).text();
    sources.set(file, text);
    for (const m of text.matchAll(/^\s*#include\s+(\w+)/gm)) queue.push(m[1]);
  }
  return sources;
}
