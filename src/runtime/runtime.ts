/**
 * What the rest of the project uses instead of runtime globals: the adapter of the runtime
 * this process runs on (`deno.ts` or `bun.ts`, behind the interface in `adapter.ts`: GPU
 * acquisition, the HTTP listener, signals, Workers), and files and process facts through
 * `node:` modules, which both runtimes implement.
 * @module
 */
import * as fs from "node:fs/promises";
import process from "node:process";
import type { GpuBackend, HttpHandler, HttpServer, ListenTcpOptions, RuntimeAdapter, TcpConn, TcpListener, WebGpuOptions } from "./adapter.ts";
import { bunAdapter } from "./bun.ts";
import { denoAdapter } from "./deno.ts";

export type { GpuBackend, HttpHandler, HttpServer, ListenTcpOptions, TcpConn, TcpListener, WebGpuOptions } from "./adapter.ts";

/** The adapter of the runtime this process runs on. */
export const adapter: RuntimeAdapter = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? bunAdapter : denoAdapter;

/** Which runtime this is. */
export const RUNTIME: "deno" | "bun" = adapter.name;

/** The WebGPU entry point of this runtime, or undefined when it has none. */
export function webgpu(options?: WebGpuOptions): Promise<GPU | undefined> {
  return adapter.webgpu(options);
}

/** The backend the adapters of {@link webgpu} run on, as far as the runtime can tell. */
export function webgpuBackend(): GpuBackend {
  return adapter.webgpuBackend();
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
  return adapter.args();
}

/** Ends the process. */
export function exit(code: number): never {
  return process.exit(code) as never;
}

/** Runs `handler` on SIGINT / SIGTERM. */
export function onSignal(signal: "SIGINT" | "SIGTERM", handler: () => void): void {
  adapter.onSignal(signal, handler);
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
  return adapter.scriptCommand(script, scriptArgs);
}

/** Serves fetch-style handlers (Deno.serve or Bun.serve). */
export function serveHttp(options: { hostname: string; port: number }, handler: HttpHandler): HttpServer {
  return adapter.serveHttp(options, handler);
}

/** Listens for raw TCP; the accept loop survives running out of file descriptors. */
export function listenTcp(options: ListenTcpOptions, onConn: (conn: TcpConn) => void): Promise<TcpListener> {
  return adapter.listenTcp(options, onConn);
}

/**
 * This process's soft limit on open files (Linux: /proc/self/limits), or null where it cannot
 * be read. Sizes the connection cap so that accepting never runs the process out of descriptors.
 */
export async function openFileLimit(): Promise<number | null> {
  try {
    const text = await fs.readFile("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    return m && m[1] !== "unlimited" ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Ends a Worker from outside (see the adapters for why Bun only unreferences it). */
export function stopWorker(worker: Worker): void {
  adapter.stopWorker(worker);
}

/** Ends the Worker this code runs in, once its GPU device is destroyed. */
export function endThisWorker(): void {
  adapter.endThisWorker();
}

/** Which runtime produced a result: its name and version, JS engine and OS. */
export function runtimeInfo(): { runtime: string; engine: string; os: string } {
  return { ...adapter.describe(), os: `${process.platform} ${process.arch}` };
}
