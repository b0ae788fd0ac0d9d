/**
 * The README's quick start runs as written, from the project root: its serve command on
 * stories260K (this runtime's line, `deno task` expanded from deno.json), its curl (only the
 * port changed) answering exactly the output the README shows, its TypeScript example, and
 * its test commands name files that exist.
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import * as sys from "./helpers/platform.ts";
import { checkExampleOutput, EXAMPLE_IMPORT, readmeBlock, readmeExample, ROOT, shellCommands } from "./helpers/readme.ts";
import { DAWN_LIMIT_WARNING } from "../src/runtime/dawn_warnings.ts";

const denoJson = JSON.parse(await sys.readTextFile(`${ROOT}deno.json`));
const packageJson = JSON.parse(await sys.readTextFile(`${ROOT}package.json`));

/** The README's serve command for this runtime as an argv (`deno task NAME` expanded). */
async function serveArgv(): Promise<string[]> {
  const lines = shellCommands(await readmeBlock("quick-start: serve", "sh"));
  const line = lines.find((l) => l.startsWith(`${sys.RUNTIME} `));
  assert(line, `no ${sys.RUNTIME} line in the quick start's serve block: ${lines.join(" | ")}`);
  let words = line.split(/\s+/);
  if (words[0] === "deno" && words[1] === "task") {
    const task = denoJson.tasks[words[2]];
    assert(typeof task === "string", `deno.json has no task ${words[2]}`);
    words = [...task.split(/\s+/), ...words.slice(3)];
  }
  assertEquals(words[0], sys.RUNTIME);
  return [sys.execPath(), ...words.slice(1)];
}

test("README quick start: serve on stories260K, then the curl prints the output shown", async () => {
  const [cmd, ...args] = await serveArgv();
  assert(args.includes("tests/fixtures/models/stories260K"), args.join(" "));
  // The README's default port 8000 may be taken here: a free one instead.
  const child = spawn(cmd, [...args, "--port", "0"], { cwd: ROOT, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Uint8Array) => (log += new TextDecoder().decode(d)));
  const exited = new Promise<number>((r) => child.on("close", (c: number | null) => r(c ?? -1)));
  try {
    let port = 0;
    for (let i = 0; i < 1200 && !(port && log.includes("[serve] ready")); i++) {
      port ||= Number(/listening on http:\/\/[^:]+:(\d+)/.exec(log)?.[1] ?? 0);
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(port && log.includes("[serve] ready"), `serve did not get ready:\n${log}`);
    const [curl] = shellCommands(await readmeBlock("quick-start: curl", "sh"));
    assert(curl.startsWith("curl ") && curl.includes("localhost:8000/"), curl);
    const out = await sys.run("sh", ["-c", curl.replace("localhost:8000/", `localhost:${port}/`)], { cwd: ROOT });
    assertEquals(out.code, 0, out.stderr);
    // The README's output with each `...` standing for whatever the server put there.
    const shown = (await readmeBlock("quick-start: curl output", "json")).trim();
    const pattern = new RegExp(`^${shown.split("...").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("[^,\"]*")}$`);
    assert(pattern.test(out.stdout.trim()), `the curl printed\n${out.stdout}\nthe README shows\n${shown}`);
    // Nothing alarming on the way (Bun's Dawn used to print two limit warnings).
    assert(!log.split("\n").some((l) => DAWN_LIMIT_WARNING.test(l)), log);
  } finally {
    if (child.exitCode === null) process.kill(child.pid!, "SIGTERM");
    assertEquals(await exited, 0, log);
  }
});

test("README quick start: the TypeScript example runs and prints the stories260K continuation", async () => {
  // Deno resolves deno.json's name from this checkout as written; Bun resolves package.json's.
  const source = (await readmeExample()).replace(EXAMPLE_IMPORT, `from "${sys.RUNTIME === "bun" ? packageJson.name : denoJson.name}"`);
  const file = `${ROOT}.readme_example_${crypto.randomUUID()}.ts`;
  await sys.writeTextFile(file, source);
  try {
    checkExampleOutput(await sys.runScript(file, [], { cwd: ROOT }));
  } finally {
    await sys.remove(file);
  }
});

test("README quick start: the test commands name files that exist and tasks that exist", async () => {
  const readme = await sys.readTextFile(`${ROOT}README.md`);
  const start = readme.indexOf("## Quick start");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const lines = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => shellCommands(m[1]));
  const tests = lines.filter((l) => /^(deno test|deno task test|bun test|bun run test)\b/.test(l));
  assert(tests.length >= 2, `no test commands in the quick start: ${lines.join(" | ")}`);
  for (const l of tests) {
    for (const f of l.match(/tests\/\S+_test\.ts/g) ?? []) assert((await sys.stat(`${ROOT}${f}`)).isFile, `${f} (in "${l}") does not exist`);
  }
  assert(typeof denoJson.tasks.test === "string" && typeof packageJson.scripts.test === "string", "test task");
});
