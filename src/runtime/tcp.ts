/**
 * A TCP listener whose accept loop survives running out of file descriptors: `Deno.listen`
 * on Deno (whose `Deno.serve` and `node:net` servers stop for good on EMFILE), `node:net` on
 * Bun (which keeps accepting). Connections are pull-based byte streams, so the HTTP layer
 * above can put deadlines on every read.
 * @module
 */
import { RUNTIME } from "./runtime.ts";

/** One accepted connection. */
export interface TcpConn {
  /** Reads into `buf`; the number of bytes, or null at the end of the stream. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes all of `data`. Rejects once the peer is gone. */
  write(data: Uint8Array): Promise<void>;
  /** Closes both directions at once (idempotent). */
  close(): void;
}

/** A listening socket. */
export interface TcpListener {
  addr: { hostname: string; port: number };
  /** Stops accepting (open connections are left alone). */
  close(): void;
}

/** Options of {@link listenTcp}. */
export interface ListenTcpOptions {
  hostname: string;
  port: number;
  /** Told about accept errors the loop survives (e.g. EMFILE), at most once a second. */
  onAcceptError?: (error: Error) => void;
}

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

/** How long the accept loop pauses after a failed accept (descriptors may free up). */
const ACCEPT_RETRY_MS = 50;

/** Listens and hands every accepted connection to `onConn`. */
export async function listenTcp(options: ListenTcpOptions, onConn: (conn: TcpConn) => void): Promise<TcpListener> {
  return RUNTIME === "deno" ? listenDeno(options, onConn) : await listenNode(options, onConn);
}

function rateLimited(report?: (e: Error) => void): (e: Error) => void {
  let last = -Infinity;
  return (e) => {
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    report?.(e);
  };
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

/**
 * This process's soft limit on open files (Linux: /proc/self/limits), or null where it cannot
 * be read. Sizes the connection cap so that accepting never runs the process out of descriptors.
 */
export async function openFileLimit(): Promise<number | null> {
  try {
    const fs = await import("node:fs/promises");
    const text = await fs.readFile("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    return m && m[1] !== "unlimited" ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
