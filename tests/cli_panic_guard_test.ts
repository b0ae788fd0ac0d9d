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
    process.exit(process.env.${GUARDED_CHILD_ENV} === "1" ? 0 : 4);
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
