/** The README's TypeScript example runs as written (from the project root, against mod.ts). */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert } from "./helpers/assert.ts";

test("README: the mod.ts example runs and prints the stories260K continuation", async () => {
  const root = new URL("../", import.meta.url);
  const readme = await sys.readTextFile(new URL("README.md", root));
  const marker = readme.indexOf("<!-- readme-example");
  assert(marker >= 0, "README lost its example marker");
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  assert(block, "no ts block after the marker");
  const file = new URL(`.readme_example_${crypto.randomUUID()}.ts`, root);
  await sys.writeTextFile(file, block[1]);
  try {
    const out = await sys.runScript(file.pathname, [], { cwd: root.pathname });
    const stdout = out.stdout;
    assert(out.code === 0, `example failed: ${out.stderr}`);
    // The greedy continuation transformers gives (see tests/fixtures/models/stories260K).
    assert(stdout.includes("there was a little girl named Lily"), stdout);
    assert(stdout.includes("KV blocks in use: 0"), stdout);
  } finally {
    await sys.remove(file);
  }
});
