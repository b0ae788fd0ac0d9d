/**
 * The one small interface over what differs between Deno and Bun. `deno.ts` and `bun.ts`
 * implement it; `runtime.ts` picks one at startup.
 * @module
 */

/** A listening HTTP server. */
export interface HttpServer {
  addr: { hostname: string; port: number };
  /** Stops accepting and waits for open responses. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

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

/** Options of `listenTcp`. */
export interface ListenTcpOptions {
  hostname: string;
  port: number;
  /** Told about accept errors the loop survives (e.g. EMFILE), at most once a second. */
  onAcceptError?: (error: Error) => void;
}

/** A fetch-style request handler. */
export type HttpHandler = (req: Request) => Response | Promise<Response>;

/** The native graphics API under a WebGPU adapter, as far as the runtime can tell. */
export type GpuBackend = "vulkan" | "metal" | "d3d12" | "gl" | "unknown";

/** Options of `webgpu`. */
export interface WebGpuOptions {
  /**
   * Let the runtime fall back to an OpenGL adapter (wgpu does when no Vulkan driver loads;
   * its GL path is slow and crashes on teardown). Default false: only native backends.
   */
  allowGl?: boolean;
}

/** What a runtime provides. */
export interface RuntimeAdapter {
  /** Which runtime this is. */
  readonly name: "deno" | "bun";
  /** The WebGPU entry point, or undefined when the runtime has none. */
  webgpu(options?: WebGpuOptions): Promise<GPU | undefined>;
  /** The backend the adapters of `webgpu` run on ("unknown" when several are possible). */
  webgpuBackend(): GpuBackend;
  /** Command-line arguments after the script. */
  args(): string[];
  /** Runs `handler` on a signal. */
  onSignal(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  /** Serves HTTP with a fetch-style handler. */
  serveHttp(options: { hostname: string; port: number }, handler: HttpHandler): HttpServer;
  /**
   * Listens for raw TCP with an accept loop that survives running out of file descriptors,
   * handing every connection to `onConn` (serve.ts's own HTTP/1.1 listener runs on it).
   */
  listenTcp(options: ListenTcpOptions, onConn: (conn: TcpConn) => void): Promise<TcpListener>;
  /** Ends a Worker from outside. */
  stopWorker(worker: Worker): void;
  /** Ends the Worker this code runs in (its GPU device already destroyed). */
  endThisWorker(): void;
  /** The executable and arguments that run a script with full permissions. */
  scriptCommand(script: string, scriptArgs: string[]): { cmd: string; args: string[] };
  /** Runtime name and version, and its JS engine. */
  describe(): { runtime: string; engine: string };
}

/** Reports accept errors at most once a second (a descriptor flood fails every accept). */
export function rateLimited(report?: (e: Error) => void): (e: Error) => void {
  let last = -Infinity;
  return (e) => {
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    report?.(e);
  };
}

/** How long an accept loop pauses after a failed accept (descriptors may free up). */
export const ACCEPT_RETRY_MS = 50;
