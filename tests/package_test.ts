/**
 * The project as a package someone installs: a consumer project in a temporary directory
 * runs the README's module example against the installed package (Deno: `links` to this
 * checkout with the JSR name from deno.json; Bun: `bun add file:` this checkout), and
 * `deno publish --dry-run` accepts the package (no slow types, every export typed).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { checkExampleOutput, EXAMPLE_IMPORT, readmeExample, ROOT } from "./helpers/readme.ts";
import { MODELS_DIR } from "./helpers/fixtures.ts";

const denoJson = JSON.parse(await sys.readTextFile(`${ROOT}deno.json`));
const packageJson = JSON.parse(await sys.readTextFile(`${ROOT}package.json`));

/** The README example with the package's import specifier and an absolute model path. */
async function consumerExample(specifier: string): Promise<string> {
  const source = await readmeExample();
  assert(source.includes('"tests/fixtures/models/stories260K"'), source);
  return source.replace(EXAMPLE_IMPORT, `from "${specifier}"`)
    .replace('"tests/fixtures/models/stories260K"', JSON.stringify(`${MODELS_DIR}stories260K`));
}

test("package: the versions and entry points of deno.json and package.json agree", () => {
  // One scoped name in both registries (the unscoped "webgpu-llm" on npm is another project).
  assertEquals(packageJson.name, denoJson.name);
  assert(/^@[a-z0-9-]+\/[a-z0-9-]+$/.test(packageJson.name), packageJson.name);
  assertEquals(denoJson.version, packageJson.version);
  assertEquals(denoJson.license, packageJson.license);
  assertEquals(denoJson.exports, packageJson.exports);
  assertEquals(denoJson.exports["."], "./mod.ts");
});

test("package: the README shows the import line another project writes", async () => {
  const readme = await sys.readTextFile(`${ROOT}README.md`);
  assert(readme.includes(`import { createEngine } from "${denoJson.name}";`), "README lacks the package's import line");
  assert(!/import `"webgpu-llm"`|from "webgpu-llm"/.test(readme), "README names the unscoped package");
});

if (sys.RUNTIME === "deno") {
  test("package (Deno): a consumer project linked to this checkout runs the README example", async () => {
    const dir = await sys.makeTempDir({ prefix: "webgpu-llm-consumer-" });
    try {
      await sys.writeTextFile(`${dir}/deno.json`, JSON.stringify({
        links: [ROOT],
        imports: { [denoJson.name]: `jsr:${denoJson.name}@^${denoJson.version}` },
      }));
      await sys.writeTextFile(`${dir}/main.ts`, await consumerExample(denoJson.name));
      checkExampleOutput(await sys.runScript(`${dir}/main.ts`, [], { cwd: dir }));
    } finally {
      await sys.remove(dir, { recursive: true });
    }
  });

  test("package (Deno): deno publish --dry-run passes", async () => {
    const out = await sys.run(sys.execPath(), ["publish", "--dry-run", "--allow-dirty"], { cwd: ROOT, env: { NO_COLOR: "1" } });
    assertEquals(out.code, 0, out.stdout + out.stderr);
    assert(/Success.*Dry run complete/.test(out.stdout + out.stderr), out.stdout + out.stderr);
    assert((out.stdout + out.stderr).includes("kernels/sample.wgsl"), "the kernels are not in the package");
  });
} else {
  test("package (Bun): a consumer project that did `bun add file:` this checkout runs the README example", async () => {
    const dir = await sys.makeTempDir({ prefix: "webgpu-llm-consumer-" });
    try {
      await sys.writeTextFile(`${dir}/package.json`, JSON.stringify({ name: "consumer", private: true, type: "module" }));
      const add = await sys.run(sys.execPath(), ["add", `file:${ROOT}`], { cwd: dir });
      assertEquals(add.code, 0, add.stdout + add.stderr);
      await sys.writeTextFile(`${dir}/main.ts`, await consumerExample(packageJson.name));
      checkExampleOutput(await sys.runScript(`${dir}/main.ts`, [], { cwd: dir }));
    } finally {
      await sys.remove(dir, { recursive: true });
    }
  });
}
