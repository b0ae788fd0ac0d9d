/**
 * The runtime adapter on Bun: WebGPU from the `webgpu` npm package (Dawn), `Bun.serve`, and
 * Workers that are left idle rather than terminated (Bun aborts when a Worker holding Dawn's
 * native addon is terminated).
 * @module
 */
import process from "node:process";
import type { RuntimeAdapter } from "./adapter.ts";

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

async function loadDawn(): Promise<GPU> {
  // Dawn's node bindings; the specifier is a variable so Deno never tries to load it.
  const name = "webgpu";
  const dawn = await import(name);
  Object.assign(globalThis, dawn.globals);
  return dawn.create([]) as GPU;
}

/** Bun's implementation of {@link RuntimeAdapter}. */
export const bunAdapter: RuntimeAdapter = {
  name: "bun",
  // One Dawn instance per thread, like navigator.gpu: Dawn does not survive several.
  webgpu: () => globals.__webgpuLlmDawn ??= loadDawn(),
  args: () => process.argv.slice(2),
  onSignal: (signal, handler) => process.on(signal, handler),
  serveHttp(options, handler) {
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const server = globals.Bun.serve({
      hostname: options.hostname,
      port: options.port,
      fetch: handler,
      idleTimeout: 0, // streams may be quiet for a while (long prefill)
    });
    return {
      addr: { hostname: server.hostname, port: server.port },
      shutdown: async () => {
        await server.stop(false);
        done();
      },
      finished,
    };
  },
  // Only unreferenced: the Worker destroys its device when asked to close, then sits idle.
  stopWorker: (worker) => (worker as Worker & { unref?: () => void }).unref?.(),
  endThisWorker: () => {},
  scriptCommand: (script, scriptArgs) => ({ cmd: process.execPath, args: [script, ...scriptArgs] }),
  // Bun also reports a `v8` key (the Node API level it mimics); its engine is WebKit's JavaScriptCore.
  describe: () => {
    const v = process.versions as Record<string, string | undefined>;
    return { runtime: `bun ${v.bun}`, engine: `JavaScriptCore (WebKit ${v.webkit?.slice(0, 12)})` };
  },
};
