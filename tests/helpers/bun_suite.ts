/**
 * The Bun suite (`bun run test`): every `tests/*_test.ts` file in its own `bun test` process,
 * one per core at a time, as `deno test --parallel` runs them. `bun test --parallel` keeps a
 * worker process for many files, and Dawn's GPU memory (lavapipe's, host memory here) is not
 * given back between them: a worker grew by 1-2 GB a file until a 24 GB machine thrashed. A
 * process per file returns everything at its exit. Each file's output is printed whole when
 * it ends; the last lines are bun's own summary form (` P pass`, ` F fail`), which `.ci/run`
 * reads. Extra arguments are passed to every `bun test` (e.g. `-t name`).
 * @module
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import process from "node:process";

const TESTS = new URL("..", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;
const files = readdirSync(TESTS).filter((f) => f.endsWith("_test.ts")).sort().map((f) => `tests/${f}`);
const extra = process.argv.slice(2);
const lanes = Math.max(1, Math.min(availableParallelism(), files.length));

interface FileResult {
  file: string;
  pass: number;
  fail: number;
  /** The process ended badly without reporting a failed test (a crash, a load error). */
  error: boolean;
}

function runFile(file: string): Promise<FileResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["test", file, ...extra], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    child.stdout!.on("data", (c: Buffer) => chunks.push(c));
    child.stderr!.on("data", (c: Buffer) => chunks.push(c));
    child.on("close", (code: number | null) => {
      const text = Buffer.concat(chunks).toString("utf8");
      process.stdout.write(text.endsWith("\n") ? text : text + "\n");
      const count = (word: string) => Number(text.match(new RegExp(`^ *(\\d+) ${word}$`, "m"))?.[1] ?? 0);
      const pass = count("pass");
      const fail = count("fail");
      resolve({ file, pass, fail, error: code !== 0 && fail === 0 });
    });
  });
}

const t0 = performance.now();
const queue = [...files];
const results: FileResult[] = [];
await Promise.all(Array.from({ length: lanes }, async () => {
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) results.push(await runFile(file));
}));
const pass = results.reduce((n, r) => n + r.pass, 0);
const fail = results.reduce((n, r) => n + r.fail, 0);
const errors = results.filter((r) => r.error);
for (const r of results.filter((r) => r.fail > 0 || r.error)) {
  console.log(`failed: ${r.file}${r.error ? " (the process failed without a failed test: see its output)" : ""}`);
}
console.log(`\n ${pass} pass\n ${fail} fail`);
if (errors.length) console.log(` ${errors.length} errors`);
console.log(`Ran ${pass + fail} tests across ${files.length} files, ${lanes} at a time. [${((performance.now() - t0) / 1000).toFixed(2)}s]`);
process.exit(fail > 0 || errors.length > 0 ? 1 : 0);
