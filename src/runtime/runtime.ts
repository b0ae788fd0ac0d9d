/**
 * The runtime adapter: the only module that knows whether it runs on Deno or Bun. GPU device
 * acquisition (`navigator.gpu` on Deno; the `webgpu` npm package, Dawn, on Bun), files,
 * the HTTP listener, signals, process facts. Files go through `node:fs`, which both
 * runtimes implement; everything else in the project imports this module instead of
 * touching a runtime global.
 * @module
 */
import * as fs from "node:fs/promises";
import process from "node:process";

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;

/** Which runtime this is. */
export const RUNTIME: "deno" | "bun" = typeof globals.Bun !== "undefined" ? "bun" : "deno";

/** The WebGPU entry point of this runtime, or undefined when it has none. */
export function webgpu(): Promise<GPU | undefined> {
  if (RUNTIME === "deno") return Promise.resolve((globals.navigator as { gpu?: GPU } | undefined)?.gpu);
  // One Dawn instance per thread, like navigator.gpu: Dawn does not survive several.
  return globals.__webgpuLlmDawn ??= loadDawn();
}

async function loadDawn(): Promise<GPU> {
  // Dawn's node bindings; the specifier is a variable so Deno never tries to load it.
  const name = "webgpu";
  const dawn = await import(name);
  Object.assign(globalThis, dawn.globals);
  return dawn.create([]) as GPU;
}

/** Whether an error is "no such file or directory". */
export function isNotFound(err: unknown): boolean {
  const e = err as { code?: string; name?: string } | null;
  return e?.code === "ENOENT" || e?.name === "NotFound";
}

/** What `stat` reports. */
export interface FileStat {
  isFile: boolean;
  isDirectory: boolean;
  size: number;
}

/** File metadata, or null when the path does not exist. */
export async function stat(path: string): Promise<FileStat | null> {
  try {
    const s = await fs.stat(path);
    return { isFile: s.isFile(), isDirectory: s.isDirectory(), size: s.size };
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}

const toPath = (p: string | URL) => (p instanceof URL ? decodeURIComponent(p.pathname) : p);

/** Reads a whole file as text. */
export function readTextFile(path: string | URL): Promise<string> {
  return fs.readFile(toPath(path), "utf8");
}

/** Reads a whole file. */
export async function readFile(path: string | URL): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await fs.readFile(toPath(path)));
}

/** Writes a whole file. */
export async function writeFile(path: string | URL, data: string | Uint8Array): Promise<void> {
  await fs.writeFile(toPath(path), data);
}

/** Creates a directory (and its parents). */
export async function mkdir(path: string | URL): Promise<void> {
  await fs.mkdir(toPath(path), { recursive: true });
}

/** Renames a file. */
export function rename(from: string, to: string): Promise<void> {
  return fs.rename(from, to);
}

/** Removes a file or a directory tree. */
export function remove(path: string | URL): Promise<void> {
  return fs.rm(toPath(path), { recursive: true, force: true });
}

/** Creates a fresh temporary directory. */
export function makeTempDir(prefix = "webgpu-llm-"): Promise<string> {
  return fs.mkdtemp(`${process.env.TMPDIR ?? "/tmp"}/${prefix}`);
}

/** Names in a directory. */
export async function readDir(path: string): Promise<{ name: string; isFile: boolean }[]> {
  const entries = await fs.readdir(path, { withFileTypes: true });
  return entries.map((e) => ({ name: e.name, isFile: e.isFile() }));
}

/** A file opened for positional reads. */
export interface ReadableFile {
  /** Reads into `buf` from byte `position`; returns the bytes read (0 at the end). */
  read(buf: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

/** Opens a file for reading. */
export async function openFile(path: string): Promise<ReadableFile> {
  const handle = await fs.open(path, "r");
  return {
    read: async (buf, position) => (await handle.read(buf, 0, buf.length, position)).bytesRead,
    close: () => handle.close(),
  };
}

/** A file opened for sequential writes. */
export interface WritableFile {
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Creates (or truncates) a file for writing. */
export async function createFile(path: string): Promise<WritableFile> {
  const handle = await fs.open(path, "w");
  return {
    write: async (data) => {
      let off = 0;
      while (off < data.length) off += (await handle.write(data, off, data.length - off)).bytesWritten;
    },
    close: () => handle.close(),
  };
}

/** The working directory. */
export function cwd(): string {
  return process.cwd();
}

/** An environment variable. */
export function env(name: string): string | undefined {
  return process.env[name];
}

/** Command-line arguments after the script. */
export function args(): string[] {
  return RUNTIME === "deno" ? [...globals.Deno.args] : process.argv.slice(2);
}

/** Ends the process. */
export function exit(code: number): never {
  return process.exit(code) as never;
}

/** Runs `handler` on SIGINT / SIGTERM. */
export function onSignal(signal: "SIGINT" | "SIGTERM", handler: () => void): void {
  if (RUNTIME === "deno") globals.Deno.addSignalListener(signal, handler);
  else process.on(signal, handler);
}

/** Writes to stderr without a newline. */
export function writeStderr(text: string): void {
  process.stderr.write(text);
}

/** Whether stderr is a terminal. */
export function stderrIsTerminal(): boolean {
  return Boolean(process.stderr.isTTY);
}

/** The runtime's executable and the arguments that run a script with full permissions. */
export function scriptCommand(script: string, scriptArgs: string[] = []): { cmd: string; args: string[] } {
  return RUNTIME === "deno"
    ? { cmd: process.execPath, args: ["run", "-A", script, ...scriptArgs] }
    : { cmd: process.execPath, args: [script, ...scriptArgs] };
}

/** A listening HTTP server. */
export interface HttpServer {
  addr: { hostname: string; port: number };
  /** Stops accepting and waits for open responses. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** Serves fetch-style handlers (Deno.serve or Bun.serve). */
export function serveHttp(options: { hostname: string; port: number }, handler: (req: Request) => Response | Promise<Response>): HttpServer {
  if (RUNTIME === "deno") {
    const server = globals.Deno.serve({ hostname: options.hostname, port: options.port, onListen: () => {} }, handler);
    return { addr: server.addr, shutdown: () => server.shutdown(), finished: server.finished };
  }
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
}

/**
 * Ends a Worker from outside. Bun aborts when a Worker holding Dawn's native addon is
 * terminated, so there the Worker is only unreferenced: it destroys its device when asked to
 * close and then sits idle without keeping the process alive.
 */
export function stopWorker(worker: Worker): void {
  if (RUNTIME === "deno") worker.terminate();
  else (worker as Worker & { unref?: () => void }).unref?.();
}

/**
 * Ends the Worker this code runs in, once its GPU device is destroyed. Deno closes it; a Bun
 * Worker holding Dawn's addon cannot be torn down safely, so it stays idle and unreferenced
 * (see {@link stopWorker}) until the process exits.
 */
export function endThisWorker(): void {
  if (RUNTIME === "deno") globals.close();
}

/** Which runtime produced a result: its name and version, JS engine and OS (`process.versions`). */
export function runtimeInfo(): { runtime: string; engine: string; os: string } {
  const v = process.versions as Record<string, string | undefined>;
  return {
    runtime: `${RUNTIME} ${v[RUNTIME]}`,
    // Bun also reports a `v8` key (the Node API level it mimics); its engine is WebKit's JavaScriptCore.
    engine: RUNTIME === "deno" ? `V8 ${v.v8}` : `JavaScriptCore (WebKit ${v.webkit?.slice(0, 12)})`,
    os: `${process.platform} ${process.arch}`,
  };
}
