/**
 * Files, processes and servers for tests, on either runtime (through the runtime adapter
 * and `node:` modules, which Deno and Bun both implement).
 */
import * as fs from "node:fs/promises";
import process from "node:process";
import { spawn } from "node:child_process";
import { inspect as nodeInspect } from "node:util";
import * as rt from "../../src/runtime/runtime.ts";

export { cwd, env, readFile, readTextFile, RUNTIME, serveHttp, writeFile } from "../../src/runtime/runtime.ts";

/** Writes a text file. */
export const writeTextFile = (path: string | URL, text: string): Promise<void> => rt.writeFile(path, text);
/** Removes a file or a tree. */
export const remove = (path: string | URL, _options?: { recursive?: boolean }): Promise<void> => rt.remove(path);
/** A fresh temporary directory. */
export const makeTempDir = (options: { prefix?: string } = {}): Promise<string> => rt.makeTempDir(options.prefix);
/** Creates a directory tree. */
export const mkdir = (path: string | URL, _options?: { recursive?: boolean }): Promise<void> => rt.mkdir(path);
/** Copies a file. */
export const copyFile = (from: string, to: string): Promise<void> => fs.copyFile(from, to);
/** Canonical path. */
export const realPath = (path: string): Promise<string> => fs.realpath(path);
/** Changes the working directory. */
export const chdir = (path: string): void => process.chdir(path);
/** The running runtime's executable (deno or bun). */
export const execPath = (): string => process.execPath;
/** Pretty-prints a value for assertion messages. */
export const inspect = (v: unknown): string => nodeInspect(v, { depth: 6, maxArrayLength: 40, maxStringLength: 200 });

/** Entries of a directory. */
export async function* readDir(path: string): AsyncIterable<{ name: string; isFile: boolean }> {
  for (const e of await rt.readDir(path)) yield e;
}

/** File size and kind (throws when missing). */
export async function stat(path: string): Promise<rt.FileStat> {
  const s = await rt.stat(path);
  if (!s) throw new Error(`${path} does not exist`);
  return s;
}

/** The result of a finished process. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
}

/** Runs a program to completion. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: { ...process.env, ...options.env } });
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    child.stdout.on("data", (d: Uint8Array) => out.push(d));
    child.stderr.on("data", (d: Uint8Array) => err.push(d));
    child.on("error", reject);
    child.on("close", (code: number | null) => {
      const text = (chunks: Uint8Array[]) => new TextDecoder().decode(concat(chunks));
      resolve({ code: code ?? -1, stdout: text(out), stderr: text(err) });
    });
    child.stdin.end(options.stdin ?? "");
  });
}

/** Runs a project script under the current runtime (deno run -A / bun). */
export function runScript(script: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const c = rt.scriptCommand(script, args);
  return run(c.cmd, c.args, options);
}

/** A long-running script: its stderr so far, a kill switch and its exit code. */
export interface ScriptProcess {
  /** The started process's id. */
  pid: number;
  stderr(): string;
  kill(signal: "SIGTERM" | "SIGINT" | "SIGKILL"): void;
  exited: Promise<number>;
}

/** Starts a project script under the current runtime. */
export function startScript(script: string, args: string[], options: RunOptions = {}): ScriptProcess {
  const c = rt.scriptCommand(script, args);
  const child = spawn(c.cmd, c.args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "ignore", "pipe"] });
  let text = "";
  child.stderr!.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
  const exited = new Promise<number>((resolve) => child.on("close", (code: number | null) => resolve(code ?? -1)));
  return {
    pid: child.pid ?? -1,
    stderr: () => text,
    kill: (signal) => {
      // process.kill, not child.kill: Deno's child_process reports a child that was
      // child.kill()ed as killed by the signal even when it handled it and exited 0.
      try {
        if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, signal);
      } catch { /* already gone */ }
    },
    exited,
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
