/**
 * The CLI's exit status survives a runtime panic. Deno's wgpu can panic while the process is
 * already exiting (on an OpenGL adapter: "Failed to make EGL context current" as the device
 * is dropped), and a panic during exit leaves the exit status the program chose: 0 after a
 * successful command. So under Deno the CLI runs itself as a child process and watches the
 * child's stderr: a panic there makes the status nonzero ({@link PANIC_EXIT_CODE}) whatever the
 * child returned. The panic banner is the only signal a panicking runtime gives, so it is
 * matched as text; stdout and stdin pass through untouched, stderr is forwarded as it comes.
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";

/** The exit status after a panic: Rust's own for an uncaught panic. */
export const PANIC_EXIT_CODE = 101;

/** Set in the child's environment (to the guard's pid), so it runs the command instead of guarding again. */
export const GUARDED_CHILD_ENV = "WEBGPU_LLM_CLI_GUARDED";
/** How often the child checks that the guard is still there. */
const PARENT_POLL_MS = 250;

/** What a panic prints: Deno's banner and Rust's default hook (threads other than main included). */
const PANIC_MARKERS = ["has panicked", "panicked at"];
/** How much of the end of stderr is kept to find a marker split across chunks. */
const TAIL_CHARS = 256;

/** What {@link runGuarded} saw. */
export interface GuardedExit {
  /** The status to exit with. */
  code: number;
  /** Whether the child printed a panic. */
  panicked: boolean;
}

/** Options of {@link runGuarded}. */
export interface RunGuardedOptions {
  /** Where the child's stderr goes (default: this process's stderr). */
  stderr?: { write(chunk: Uint8Array): unknown };
}

/**
 * Runs `cmd args` with stdin and stdout inherited and stderr forwarded; resolves to the
 * child's status, or {@link PANIC_EXIT_CODE} when it printed a panic and exited 0, or 128 +
 * the signal's number when a signal ended it.
 */
export function runGuarded(cmd: string, args: string[], options: RunGuardedOptions = {}): Promise<GuardedExit> {
  const out = options.stderr ?? process.stderr;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ["inherit", "inherit", "pipe"],
      env: { ...process.env, [GUARDED_CHILD_ENV]: String(process.pid) },
    });
    let tail = "";
    let panicked = false;
    const decoder = new TextDecoder();
    child.stderr!.on("data", (chunk: Uint8Array) => {
      out.write(chunk);
      tail += decoder.decode(chunk, { stream: true });
      if (PANIC_MARKERS.some((m) => tail.includes(m))) panicked = true;
      tail = tail.slice(-TAIL_CHARS);
    });
    // Signals sent to this process are passed on (Ctrl-C reaches the child through the
    // terminal's process group as well; the CLI's handlers take a repeat as a no-op).
    const onInt = () => child.kill("SIGINT");
    const onTerm = () => child.kill("SIGTERM");
    process.on("SIGINT", onInt);
    process.on("SIGTERM", onTerm);
    child.on("error", reject);
    child.on("close", (code: number | null, signal: string | null) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      const status = code ?? 128 + signalNumber(signal);
      resolve({ code: panicked && status === 0 ? PANIC_EXIT_CODE : status, panicked });
    });
  });
}

/** Whether this process is the guarded child (it runs the command itself). */
export function isGuardedChild(): boolean {
  return (process.env[GUARDED_CHILD_ENV] ?? "") !== "";
}

/**
 * In the guarded child: ends this process (status 1) once the guard is gone, so a guard
 * killed outright (SIGKILL, the OOM killer) leaves no command running behind it, e.g. still
 * writing a batch's output while a `--resume` starts. The poll does not keep the process alive.
 */
export function exitWithGuard(exit: (code: number) => never): void {
  const guard = Number(process.env[GUARDED_CHILD_ENV]);
  if (!Number.isInteger(guard) || guard <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(guard, 0);
    } catch {
      exit(1);
    }
  }, PARENT_POLL_MS);
  (timer as unknown as { unref?: () => void }).unref?.();
  if (typeof timer === "number") (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno?.unrefTimer(timer);
}

function signalNumber(signal: string | null): number {
  const numbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6, SIGTRAP: 5 };
  return numbers[signal ?? ""] ?? 1;
}
