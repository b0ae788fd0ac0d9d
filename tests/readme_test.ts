/** The README's TypeScript example runs as written (from the project root, against mod.ts). */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { checkExampleOutput, readmeExample, ROOT } from "./helpers/readme.ts";

test("README: the mod.ts example runs and prints the stories260K continuation", async () => {
  const file = `${ROOT}.readme_example_${crypto.randomUUID()}.ts`;
  await sys.writeTextFile(file, await readmeExample());
  try {
    checkExampleOutput(await sys.runScript(file, [], { cwd: ROOT }));
  } finally {
    await sys.remove(file);
  }
});
