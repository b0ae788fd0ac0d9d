/**
 * The runtime adapter on Bun: WebGPU from the `webgpu` npm package (Dawn), `Bun.serve`, and
 * Workers that are left idle rather than terminated (Bun aborts when a Worker holding Dawn's
 * native addon is terminated).
 * @module
 */
import process from "node:process";
import { quietDawnAdapterWarnings } from "./dawn_warnings.ts";
import { type ListenTcpOptions, rateLimited, type RuntimeAdapter, type TcpConn, type TcpListener } from "./adapter.ts";

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

async function loadDawn(): Promise<GPU> {
  // Dawn's node bindings; the specifier is a variable so Deno never tries to load it.
  const name = "webgpu";
  const dawn = await import(name);
  Object.assign(globalThis, dawn.globals);
  return await quietDawnAdapterWarnings(dawn.create([]) as GPU);
}

/** Bun's implementation of {@link RuntimeAdapter}. */
export const bunAdapter: RuntimeAdapter = {
  name: "bun",
  // One Dawn instance per thread, like navigator.gpu: Dawn does not survive several.
  // Dawn (the `webgpu` package) has no OpenGL fallback: the options change nothing.
  webgpu: () => globals.__webgpuLlmDawn ??= loadDawn(),
  // Dawn's adapters report no backend; it picks the platform's native one.
  webgpuBackend: () => process.platform === "linux" ? "vulkan" : process.platform === "darwin" ? "metal" : "unknown",
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
  // node:net keeps accepting on Bun after EMFILE.
  listenTcp: listenNode,
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

async function listenNode(options: ListenTcpOptions, onConn: (conn: TcpConn) => void): Promise<TcpListener> {
  const net = await import("node:net");
  const report = rateLimited(options.onAcceptError);
  const server = net.createServer({ noDelay: true }, (socket) => onConn(wrapNode(socket)));
  server.on("error", (e: Error) => report(e));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as { address: string; port: number };
  return {
    addr: { hostname: addr.address, port: addr.port },
    close: () => server.close(),
  };
}

/** Queued chunks above this pause the socket until the reader catches up. */
const NODE_HIGH_WATER = 256 * 1024;

// deno-lint-ignore no-explicit-any
function wrapNode(socket: any): TcpConn {
  const chunks: Uint8Array[] = [];
  let queued = 0;
  let ended = false;
  // Our own record of the socket's end: Bun may have emitted 'close' before `destroyed` is
  // set, and does not call the callback of a write issued after a reset.
  let gone = false;
  const writers = new Set<(e: Error) => void>();
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const onGone = () => {
    ended = true;
    gone = true;
    for (const reject of writers) reject(new Error("connection closed"));
    writers.clear();
    notify();
  };
  socket.on("data", (d: Uint8Array) => {
    chunks.push(d);
    queued += d.length;
    if (queued > NODE_HIGH_WATER) socket.pause();
    notify();
  });
  // The peer's FIN: Node's semantics (allowHalfOpen false) end our side too, and Bun then
  // neither calls a pending write's callback nor emits 'close'. Treat it as the end.
  socket.on("end", () => {
    onGone();
    socket.destroy();
  });
  socket.on("close", onGone);
  socket.on("error", onGone);
  return {
    read: async (buf) => {
      while (chunks.length === 0) {
        if (ended) return null;
        await new Promise<void>((r) => (wake = r));
      }
      const head = chunks[0];
      const n = Math.min(buf.length, head.length);
      buf.set(head.subarray(0, n));
      if (n === head.length) chunks.shift();
      else chunks[0] = head.subarray(n);
      queued -= n;
      if (queued <= NODE_HIGH_WATER && socket.isPaused()) socket.resume();
      return n;
    },
    write: (data) =>
      new Promise<void>((resolve, reject) => {
        if (gone || socket.destroyed || socket.writableEnded) return reject(new Error("connection closed"));
        writers.add(reject);
        socket.write(data, (err?: Error | null) => {
          writers.delete(reject);
          if (err) reject(err);
          else resolve();
        });
      }),
    close: () => {
      socket.destroy();
      onGone();
    },
  };
}
