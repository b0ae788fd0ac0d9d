/**
 * serve.ts as a real process (hostile-client, shutdown and load-balancer tests): started
 * under the test's runtime, optionally with a lower open-file limit, its port read from the
 * "listening on" line, ready once /health answers 200.
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { scriptCommand } from "../../src/runtime/runtime.ts";
import { modelDir } from "./reference.ts";

const SERVE = new URL("../../serve.ts", import.meta.url).pathname;

/** Options of {@link startServeProcess}. */
export interface ServeProcessOptions {
  /** Reference model (default stories260K). */
  model?: string;
  /** Extra serve.ts flags. */
  args?: string[];
  /** Fixed port (default: a free one, read from the log). */
  port?: number;
  /** `ulimit -n` for the process (open files). */
  maxOpenFiles?: number;
}

/** A running serve.ts. */
export interface ServeProcess {
  pid: number;
  port: number;
  base: string;
  /** Its log so far. */
  stderr(): string;
  /** Whether it has exited. */
  exitCode: number | null;
  exited: Promise<number>;
  kill(signal: "SIGTERM" | "SIGINT" | "SIGKILL"): void;
  /** Resolves when /health answers 200. */
  ready(timeoutMs?: number): Promise<void>;
}

/** Starts serve.ts and resolves once it listens. */
export async function startServeProcess(options: ServeProcessOptions = {}): Promise<ServeProcess> {
  const model = options.model ?? "stories260K";
  const flags = ["--model", modelDir(model), "--served-model-name", model, "--port", String(options.port ?? 0), ...(options.args ?? [])];
  const c = scriptCommand(SERVE, flags);
  const [cmd, args] = options.maxOpenFiles
    ? ["sh", ["-c", `ulimit -n ${options.maxOpenFiles} && exec "$0" "$@"`, c.cmd, ...c.args]]
    : [c.cmd, c.args];
  const child = spawn(cmd as string, args as string[], { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  let onLog: (() => void) | null = null;
  child.stderr!.on("data", (d: Uint8Array) => {
    log += new TextDecoder().decode(d);
    onLog?.();
  });
  const proc: ServeProcess = {
    pid: child.pid!,
    port: 0,
    base: "",
    stderr: () => log,
    exitCode: null,
    exited: new Promise<number>((resolve) =>
      child.on("close", (code: number | null, signal: string | null) => {
        proc.exitCode = code ?? (signal ? 128 : -1);
        onLog?.();
        resolve(proc.exitCode);
      })
    ),
    kill: (signal) => {
      try {
        if (proc.exitCode === null) process.kill(child.pid!, signal);
      } catch { /* gone */ }
    },
    ready: async (timeoutMs = 60_000) => {
      const t0 = performance.now();
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`serve.ts exited ${proc.exitCode}:\n${log}`);
        try {
          const res = await fetch(`${proc.base}/health`, { signal: AbortSignal.timeout(2000) });
          await res.body?.cancel();
          if (res.status === 200) return;
        } catch { /* not yet */ }
        if (performance.now() - t0 > timeoutMs) throw new Error(`serve.ts not ready after ${timeoutMs} ms:\n${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(log);
      if (m) {
        proc.port = Number(m[1]);
        proc.base = `http://127.0.0.1:${proc.port}`;
        onLog = null;
        resolve();
      } else if (proc.exitCode !== null) {
        reject(new Error(`serve.ts exited ${proc.exitCode} before listening:\n${log}`));
      }
    };
    onLog = check;
    check();
  });
  return proc;
}

/** Waits for a process to exit, or throws after `timeoutMs` (and kills it). */
export async function exitWithin(proc: ServeProcess, timeoutMs: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), timeoutMs)));
  const code = await Promise.race([proc.exited, timeout]);
  clearTimeout(timer);
  if (code === "timeout") {
    proc.kill("SIGKILL");
    await proc.exited;
    throw new Error(`serve.ts still running ${timeoutMs} ms later:\n${proc.stderr().slice(-2000)}`);
  }
  return code;
}
