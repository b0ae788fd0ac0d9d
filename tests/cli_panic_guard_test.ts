/**
 * A runtime panic never leaves the CLI's status at 0 (issue 19, item 7): under Deno the CLI
 * runs itself as a guarded child (src/cli/panic_guard.ts). Real child processes print what a
 * panicking Deno prints (its banner, then a clean exit, as when wgpu panics while the process
 * exits) and the guard's status must be nonzero; other statuses, stdout and stderr pass through.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { GUARDED_CHILD_ENV, PANIC_EXIT_CODE, runGuarded } from "../src/cli/panic_guard.ts";
import { scriptCommand } from "../src/runtime/runtime.ts";
import { modelDir } from "./helpers/reference.ts";
import process from "node:process";

const BANNER = `
============================================================
Deno has panicked. This is a bug in Deno. Please report this
at https://github.com/denoland/deno/issues/new.

thread 'main' panicked at wgpu-hal/src/gles/egl.rs:301:14:
Failed to make EGL context current
`;

/** Runs `code` as a script in a child of this runtime under the guard; stderr is captured. */
async function guarded(code: string): Promise<{ code: number; panicked: boolean; stderr: string }> {
  const dir = await sys.makeTempDir();
  try {
    const file = `${dir}/child.ts`;
    await sys.writeTextFile(file, code);
    const { cmd, args } = scriptCommand(file, []);
    const chunks: Uint8Array[] = [];
    const r = await runGuarded(cmd, args, { stderr: { write: (c: Uint8Array) => chunks.push(c) } });
    const stderr = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    return { ...r, stderr };
  } finally {
    await sys.remove(dir, { recursive: true });
  }
}

test("cli panic guard: a child that prints a panic and exits 0 ends nonzero; its stderr is forwarded", async () => {
  const r = await guarded(`
    import process from "node:process";
    process.stderr.write(${JSON.stringify(BANNER)});
    process.exit(0);
  `);
  assertEquals([r.code, r.panicked], [PANIC_EXIT_CODE, true]);
  assert(r.stderr.includes("Deno has panicked"), r.stderr);
});

test("cli panic guard: a panic message split across writes is found; statuses and clean runs pass through", async () => {
  const split = await guarded(`
    import process from "node:process";
    process.stderr.write("thread 'wgpu' pan");
    await new Promise((r) => setTimeout(r, 50));
    process.stderr.write("icked at egl.rs\\n");
    process.exit(0);
  `);
  assertEquals([split.code, split.panicked], [PANIC_EXIT_CODE, true]);
  const failed = await guarded(`import process from "node:process"; process.stderr.write("error: bad\\n"); process.exit(3);`);
  assertEquals([failed.code, failed.panicked, failed.stderr], [3, false, "error: bad\n"]);
  const clean = await guarded(`
    import process from "node:process";
    process.stderr.write("adapter: llvmpipe\\n");
    process.exit((process.env.${GUARDED_CHILD_ENV} ?? "") !== "" ? 0 : 4);
  `);
  assertEquals([clean.code, clean.panicked], [0, false]);
});

test("cli: stdout, stderr and the status pass through (under Deno, through the guarded child)", async () => {
  const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
  const ok = await sys.runScript(main, ["--help"]);
  assertEquals(ok.code, 0, ok.stderr);
  assert(ok.stdout.includes("cli generate"), ok.stdout);
  const usage = await sys.runScript(main, ["generate", "--bogus"]);
  assertEquals(usage.code, 2);
  assert(usage.stderr.includes("unknown flag --bogus"), usage.stderr);
});

/** The pids of `pid`'s children (pgrep). */
async function childrenOf(pid: number): Promise<number[]> {
  const r = await sys.run("pgrep", ["-P", String(pid)]);
  return r.stdout.split("\n").filter((l) => l.trim() !== "").map(Number);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Under Deno the guarded child ends with its guard: its next write to the guard's stderr pipe
// fails, and (for a command that writes nothing) it polls the guard's pid (exitWithGuard).
test("cli: killing the CLI outright (SIGKILL) leaves no command running behind it", async () => {
  const dir = await sys.makeTempDir();
  try {
    // A batch long enough to still run when killed: 2000 requests of 300 tokens, one at a time.
    const line = (i: number) => JSON.stringify({ custom_id: `r${i}`, method: "POST", url: "/v1/completions", body: { model: "stories260K", prompt: "Once", max_tokens: 300, ignore_eos: true } });
    await sys.writeTextFile(`${dir}/in.jsonl`, Array.from({ length: 2000 }, (_, i) => line(i)).join("\n") + "\n");
    const main = new URL("../src/cli/main.ts", import.meta.url).pathname;
    const proc = sys.startScript(main, ["batch", "--model", modelDir("stories260K"), "--served-model-name", "stories260K", "--input", `${dir}/in.jsonl`, "--output", `${dir}/out.jsonl`, "--concurrency", "1"]);
    // Wait until the batch writes (the command runs, in the guarded child under Deno).
    for (let i = 0; i < 3000; i++) {
      if ((await sys.readTextFile(`${dir}/out.jsonl`).catch(() => "")).length > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const pid = proc.pid;
    const descendants = await childrenOf(pid);
    proc.kill("SIGKILL");
    await proc.exited;
    for (let i = 0; i < 100 && descendants.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    assertEquals(descendants.filter(alive), [], "a process of the killed CLI still runs");
    const lines = (await sys.readTextFile(`${dir}/out.jsonl`)).split("\n").filter((l) => l !== "").length;
    assert(lines < 2000, `the batch ran to its end (${lines} lines) before the kill`);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
});
