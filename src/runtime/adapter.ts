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

/** A fetch-style request handler. */
export type HttpHandler = (req: Request) => Response | Promise<Response>;

/** What a runtime provides. */
export interface RuntimeAdapter {
  /** Which runtime this is. */
  readonly name: "deno" | "bun";
  /** The WebGPU entry point, or undefined when the runtime has none. */
  webgpu(): Promise<GPU | undefined>;
  /** Command-line arguments after the script. */
  args(): string[];
  /** Runs `handler` on a signal. */
  onSignal(signal: "SIGINT" | "SIGTERM", handler: () => void): void;
  /** Serves HTTP with a fetch-style handler. */
  serveHttp(options: { hostname: string; port: number }, handler: HttpHandler): HttpServer;
  /** Ends a Worker from outside. */
  stopWorker(worker: Worker): void;
  /** Ends the Worker this code runs in (its GPU device already destroyed). */
  endThisWorker(): void;
  /** The executable and arguments that run a script with full permissions. */
  scriptCommand(script: string, scriptArgs: string[]): { cmd: string; args: string[] };
  /** Runtime name and version, and its JS engine. */
  describe(): { runtime: string; engine: string };
}
