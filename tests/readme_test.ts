/** The README's TypeScript example runs as written (from the project root, against mod.ts). */
import { assert } from "./helpers/assert.ts";

Deno.test("README: the mod.ts example runs and prints the stories260K continuation", async () => {
  const root = new URL("../", import.meta.url);
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const marker = readme.indexOf("<!-- readme-example");
  assert(marker >= 0, "README lost its example marker");
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(marker));
  assert(block, "no ts block after the marker");
  const file = new URL(`.readme_example_${crypto.randomUUID()}.ts`, root);
  await Deno.writeTextFile(file, block[1]);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file.pathname],
      cwd: root.pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert(out.code === 0, `example failed: ${new TextDecoder().decode(out.stderr)}`);
    // The greedy continuation transformers gives (see ../shared/models/stories260K).
    assert(stdout.includes("there was a little girl named Lily"), stdout);
    assert(stdout.includes("KV blocks in use: 0"), stdout);
  } finally {
    await Deno.remove(file);
  }
});
