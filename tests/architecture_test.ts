/**
 * Dependencies point one way: runtime -> gpu -> kernels -> model -> scheduler -> runner ->
 * engine -> api -> mod.ts -> server / cli -> serve.ts, with `src/types/api.ts` (the public
 * types) below everything and the scheduler depending on nothing but those types. No import
 * cycles, between files or between top-level folders. The checker is tested on a graph with a reversed import and a cycle, so a passing
 * check means something.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

interface Layer {
  name: string;
  /** Matches repository-relative paths. */
  match: (path: string) => boolean;
  /** When set, the only layers this one may import (besides itself). */
  only?: string[];
}

/** Lowest first: a file may import its own layer and the layers listed before it. */
const LAYERS: Layer[] = [
  { name: "types", match: (p) => p.startsWith("src/types/") },
  { name: "runtime", match: (p) => p.startsWith("src/runtime/") },
  { name: "gpu", match: (p) => p.startsWith("src/gpu/") },
  { name: "kernels", match: (p) => p.startsWith("src/kernels/") },
  { name: "model", match: (p) => p.startsWith("src/model/") },
  { name: "grammar", match: (p) => p.startsWith("src/grammar/") },
  { name: "scheduler", match: (p) => p.startsWith("src/scheduler/"), only: ["types"] },
  { name: "runner", match: (p) => p.startsWith("src/runner/") },
  { name: "engine", match: (p) => p.startsWith("src/engine/") },
  { name: "api", match: (p) => p.startsWith("src/api/") },
  { name: "mod", match: (p) => p === "mod.ts" },
  { name: "hub", match: (p) => p.startsWith("src/hub/"), only: ["types", "runtime"] },
  { name: "server", match: (p) => p.startsWith("src/server/") },
  { name: "cli", match: (p) => p.startsWith("src/cli/") },
  { name: "serve", match: (p) => p === "serve.ts" },
];

function layerOf(path: string): number {
  return LAYERS.findIndex((l) => l.match(path));
}

/** Repository-relative file -> the repository-relative files it imports. */
type Graph = Map<string, string[]>;

/** Every violation of the layering and every cycle in `graph`. */
export function checkDependencies(graph: Graph): string[] {
  const problems: string[] = [];
  for (const [from, targets] of graph) {
    const a = layerOf(from);
    if (a < 0) {
      problems.push(`${from} belongs to no layer`);
      continue;
    }
    for (const to of targets) {
      const b = layerOf(to);
      if (b < 0) {
        problems.push(`${from} imports ${to}, which belongs to no layer`);
        continue;
      }
      const only = LAYERS[a].only;
      if (b > a || (only && a !== b && !only.includes(LAYERS[b].name))) {
        problems.push(`${from} (${LAYERS[a].name}) imports ${to} (${LAYERS[b].name})`);
      }
    }
  }
  // Cycles: depth-first search with an explicit path.
  const state = new Map<string, "open" | "done">();
  const visit = (file: string, path: string[]) => {
    state.set(file, "open");
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") problems.push(`import cycle: ${[...path.slice(path.indexOf(next)), next].join(" -> ")}`);
      else if (!state.has(next)) visit(next, [...path, next]);
    }
    state.set(file, "done");
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file, [file]);
  return problems;
}

const ROOT = new URL("../", import.meta.url).pathname;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of sys.readDir(ROOT + dir)) {
    const rel = `${dir}/${e.name}`;
    if (e.isFile && e.name.endsWith(".ts")) out.push(rel);
    else if (!e.isFile) out.push(...await sourceFiles(rel));
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\b[^"';]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)|new URL\(\s*["'](\.[^"']+\.ts)["']/g;

/** The project's import graph (relative imports only; packages are leaves). */
async function projectGraph(): Promise<Graph> {
  const files = ["mod.ts", "serve.ts", ...await sourceFiles("src")];
  const graph: Graph = new Map();
  for (const file of files) {
    const text = await sys.readTextFile(ROOT + file);
    const targets = new Set<string>();
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec.startsWith(".")) continue;
      const url = new URL(spec, `file:///${file}`);
      targets.add(decodeURIComponent(url.pathname.slice(1)));
    }
    graph.set(file, [...targets]);
  }
  return graph;
}

test("architecture: the checker finds a reversed import, a scheduler reaching the GPU, and a cycle", () => {
  const graph: Graph = new Map([
    ["src/model/config.ts", ["src/runner/forward.ts"]],
    ["src/runner/forward.ts", ["src/model/config.ts"]],
    ["src/scheduler/scheduler.ts", ["src/gpu/device.ts", "src/types/api.ts"]],
    ["src/gpu/device.ts", []],
    ["src/types/api.ts", []],
  ]);
  const problems = checkDependencies(graph);
  assert(problems.some((p) => p.startsWith("src/model/config.ts (model) imports src/runner/forward.ts (runner)")), problems.join("\n"));
  assert(problems.some((p) => p.startsWith("src/scheduler/scheduler.ts (scheduler) imports src/gpu/device.ts")), problems.join("\n"));
  assert(problems.some((p) => p.startsWith("import cycle:")), problems.join("\n"));
  assertEquals(problems.length, 3, problems.join("\n"));
});

/**
 * The folder graph: top-level source folder (`src/model`, subfolders included) -> the folders
 * its files import; a file outside `src/` is its own node.
 */
export function folderGraph(graph: Graph): Graph {
  const folderOf = (file: string) => file.startsWith("src/") ? file.split("/").slice(0, 2).join("/") : file;
  const folders: Graph = new Map();
  for (const [from, targets] of graph) {
    const a = folderOf(from);
    const set = new Set(folders.get(a) ?? []);
    for (const to of targets) if (folderOf(to) !== a) set.add(folderOf(to));
    folders.set(a, [...set]);
  }
  for (const targets of [...folders.values()]) for (const t of targets) if (!folders.has(t)) folders.set(t, []);
  return folders;
}

/** Import cycles between folders (a folder importing itself is fine). */
export function folderCycles(graph: Graph): string[] {
  const folders = folderGraph(graph);
  const problems: string[] = [];
  const state = new Map<string, "open" | "done">();
  const visit = (node: string, path: string[]) => {
    state.set(node, "open");
    for (const next of folders.get(node) ?? []) {
      if (state.get(next) === "open") problems.push(`folder cycle: ${[...path.slice(path.indexOf(next)), next].join(" -> ")}`);
      else if (!state.has(next)) visit(next, [...path, next]);
    }
    state.set(node, "done");
  };
  for (const node of folders.keys()) if (!state.has(node)) visit(node, [node]);
  return problems;
}

test("architecture: the folder check finds a cycle between folders whose files form none", () => {
  // model/a -> api/types, api/client -> engine/e, engine/e -> model/a: no file cycle, a folder cycle.
  const graph: Graph = new Map([
    ["src/model/a.ts", ["src/api/types.ts"]],
    ["src/api/client.ts", ["src/engine/e.ts"]],
    ["src/engine/e.ts", ["src/model/a.ts"]],
    ["src/api/types.ts", []],
  ]);
  assertEquals(folderCycles(graph), ["folder cycle: src/model -> src/api -> src/engine -> src/model"]);
});

test("architecture: dependencies point one way and form no cycle", async () => {
  const graph = await projectGraph();
  assert(graph.size > 30, `only ${graph.size} files found`);
  // Spot-check that imports are really seen.
  assert(graph.get("src/engine/engine.ts")!.includes("src/runner/model_runner.ts"));
  assert(graph.get("src/api/client.ts")!.includes("src/api/worker.ts"), "the Worker's URL import is a dependency");
  assertEquals(checkDependencies(graph), []);
  assertEquals(folderCycles(graph), []);
});
