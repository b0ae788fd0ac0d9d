/**
 * The runtime adapter on Deno: `navigator.gpu`, `Deno.serve`, `Deno.addSignalListener`.
 * @module
 */
import process from "node:process";
import { ACCEPT_RETRY_MS, type GpuBackend, type ListenTcpOptions, rateLimited, type RuntimeAdapter, type TcpConn, type TcpListener } from "./adapter.ts";

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

/** Deno's implementation of {@link RuntimeAdapter}. */
export const denoAdapter: RuntimeAdapter = {
  name: "deno",
  webgpu: (options) => {
    denoBackends(options?.allowGl ?? false);
    return Promise.resolve((globals.navigator as { gpu?: GPU } | undefined)?.gpu);
  },
  webgpuBackend: () => backendOf(globals.Deno.env.get(BACKEND_ENV)),
  args: () => [...globals.Deno.args],
  onSignal: (signal, handler) => globals.Deno.addSignalListener(signal, handler),
  serveHttp(options, handler) {
    const server = globals.Deno.serve({ hostname: options.hostname, port: options.port, onListen: () => {} }, handler);
    return { addr: server.addr, shutdown: () => server.shutdown(), finished: server.finished };
  },
  // Deno.serve and node:net servers stop for good on EMFILE; Deno.listen's accept loop does not.
  listenTcp: (options, onConn) => Promise.resolve(listenDeno(options, onConn)),
  stopWorker: (worker) => worker.terminate(),
  endThisWorker: () => globals.close(),
  scriptCommand: (script, scriptArgs) => ({ cmd: process.execPath, args: ["run", "-A", script, ...scriptArgs] }),
  describe: () => ({ runtime: `deno ${process.versions.deno}`, engine: `V8 ${process.versions.v8}` }),
};

/**
 * Deno's wgpu takes its backends from this variable when a thread requests its first adapter;
 * unset, it may pick OpenGL (through EGL) when no Vulkan driver loads.
 */
const BACKEND_ENV = "DENO_WEBGPU_BACKEND";
/** The native backends: every one but OpenGL. */
const NATIVE_BACKENDS = "vulkan,metal,dx12";
const NATIVE: Record<string, GpuBackend> = { vulkan: "vulkan", metal: "metal", dx12: "d3d12", gl: "gl" };

/**
 * Keeps wgpu off OpenGL unless allowed: sets the backend list when the user has not (a list
 * the user set is theirs), and takes ours back when GL is allowed.
 */
function denoBackends(allowGl: boolean): void {
  const env = globals.Deno.env;
  const set = env.get(BACKEND_ENV);
  if (!allowGl && set === undefined) env.set(BACKEND_ENV, NATIVE_BACKENDS);
  else if (allowGl && set === NATIVE_BACKENDS) env.delete(BACKEND_ENV);
}

/** The backend a `DENO_WEBGPU_BACKEND` list leaves on this platform. */
function backendOf(list: string | undefined): GpuBackend {
  if (list === undefined) return "unknown";
  const names = list.split(",").map((b) => NATIVE[b.trim().toLowerCase()]).filter((b) => b !== undefined);
  const platform: GpuBackend = process.platform === "darwin" ? "metal" : process.platform === "win32" ? "d3d12" : "vulkan";
  if (names.length === 1) return names[0];
  if (names.includes("gl")) return "unknown";
  return names.includes(platform) ? platform : "unknown";
}

function listenDeno(options: ListenTcpOptions, onConn: (conn: TcpConn) => void): TcpListener {
  const listener = globals.Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
  let closed = false;
  const report = rateLimited(options.onAcceptError);
  (async () => {
    while (!closed) {
      let conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (closed) break;
        // EMFILE and friends: the listener itself is fine; wait for descriptors to free up.
        report(e as Error);
        await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch { /* not TCP */ }
      onConn(wrapDeno(conn));
    }
  })();
  return {
    addr: { hostname: listener.addr.hostname, port: listener.addr.port },
    close: () => {
      if (closed) return;
      closed = true;
      try {
        listener.close();
      } catch { /* already closed */ }
    },
  };
}

function wrapDeno(conn: { read(b: Uint8Array): Promise<number | null>; write(b: Uint8Array): Promise<number>; close(): void }): TcpConn {
  let closed = false;
  return {
    read: async (buf) => {
      if (closed) return null;
      try {
        return await conn.read(buf);
      } catch {
        return null; // reset, or closed by us
      }
    },
    write: async (data) => {
      let off = 0;
      while (off < data.length) {
        if (closed) throw new Error("connection closed");
        off += await conn.write(data.subarray(off));
      }
    },
    close: () => {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}
