/**
 * The runtime adapter on Deno: `navigator.gpu`, `Deno.serve`, `Deno.addSignalListener`.
 * @module
 */
import process from "node:process";
import type { RuntimeAdapter } from "./adapter.ts";

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

/** Deno's implementation of {@link RuntimeAdapter}. */
export const denoAdapter: RuntimeAdapter = {
  name: "deno",
  webgpu: () => Promise.resolve((globals.navigator as { gpu?: GPU } | undefined)?.gpu),
  args: () => [...globals.Deno.args],
  onSignal: (signal, handler) => globals.Deno.addSignalListener(signal, handler),
  serveHttp(options, handler) {
    const server = globals.Deno.serve({ hostname: options.hostname, port: options.port, onListen: () => {} }, handler);
    return { addr: server.addr, shutdown: () => server.shutdown(), finished: server.finished };
  },
  stopWorker: (worker) => worker.terminate(),
  endThisWorker: () => globals.close(),
  scriptCommand: (script, scriptArgs) => ({ cmd: process.execPath, args: ["run", "-A", script, ...scriptArgs] }),
  describe: () => ({ runtime: `deno ${process.versions.deno}`, engine: `V8 ${process.versions.v8}` }),
};
