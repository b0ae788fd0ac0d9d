/**
 * The README's quick start as tests run it: its module example (the ts block after the
 * `readme-example` marker), its serve commands, its curl and the output it promises.
 * @module
 */
import { readFileSync } from "node:fs";
import * as sys from "./platform.ts";
import { assert } from "./assert.ts";

/** The project root (with a trailing slash). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/**
 * The package name the README's example imports (deno.json's, which package.json shares). Read
 * synchronously: Bun's parallel runner loads this module through a path where a top-level
 * await left the exports below uninitialized.
 */
export const PACKAGE_NAME: string = JSON.parse(readFileSync(`${ROOT}deno.json`, "utf8")).name;

/** The example's import clause, replaced by tests that import the package another way. */
export const EXAMPLE_IMPORT = `from "${PACKAGE_NAME}"`;

/** The first fenced block of `lang` after the HTML comment that starts with `marker`. */
export async function readmeBlock(marker: string, lang: string): Promise<string> {
  const readme = await sys.readTextFile(`${ROOT}README.md`);
  const at = readme.indexOf(`<!-- ${marker}`);
  assert(at >= 0, `README lost its "${marker}" marker`);
  const block = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(readme.slice(at));
  assert(block, `no ${lang} block after the "${marker}" marker`);
  return block[1];
}

/** The example's source as the README shows it. */
export async function readmeExample(): Promise<string> {
  const source = await readmeBlock("readme-example", "ts");
  assert(source.includes(EXAMPLE_IMPORT), `the example does not import ${PACKAGE_NAME}`);
  return source;
}

/** A shell block's commands: continuation lines joined, comments and blank lines dropped. */
export function shellCommands(block: string): string[] {
  return block.replace(/\\\n\s*/g, "").split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l && !l.startsWith("#"));
}

/** Checks the example's output: the stories260K continuation and every block returned. */
export function checkExampleOutput(out: sys.RunResult): void {
  assert(out.code === 0, `example failed (${out.code}): ${out.stderr}`);
  // The greedy continuation transformers gives (see tests/fixtures/models/stories260K).
  assert(out.stdout.includes("there was a little girl named Lily"), out.stdout);
  assert(out.stdout.includes("KV blocks in use: 0"), out.stdout);
}
