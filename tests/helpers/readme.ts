/**
 * The README's module example (the ts block after the `readme-example` marker), as tests run
 * it: from the project root, and from a consumer project that installed the package.
 * @module
 */
import * as sys from "./platform.ts";
import { assert } from "./assert.ts";

/** The project root (with a trailing slash). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** The example's source as the README shows it. */
export async function readmeExample(): Promise<string> {
  const readme = await sys.readTextFile(`${ROOT}README.md`);
  const marker = readme.indexOf("<!-- readme-example");
  assert(marker >= 0, "README lost its example marker");
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  assert(block, "no ts block after the marker");
  return block[1];
}

/** Checks the example's output: the stories260K continuation and every block returned. */
export function checkExampleOutput(out: sys.RunResult): void {
  assert(out.code === 0, `example failed (${out.code}): ${out.stderr}`);
  // The greedy continuation transformers gives (see tests/fixtures/models/stories260K).
  assert(out.stdout.includes("there was a little girl named Lily"), out.stdout);
  assert(out.stdout.includes("KV blocks in use: 0"), out.stdout);
}
