/**
 * Bun's Dawn prints two warnings about lavapipe's limits each time it enumerates adapters
 * (src/runtime/dawn_warnings.ts drops them): a process that creates a GPU prints nothing of
 * them, and anything else written to stderr meanwhile still gets through.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import * as sys from "./helpers/platform.ts";
import { DAWN_LIMIT_WARNING } from "../src/runtime/dawn_warnings.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function runSnippet(source: string): Promise<sys.RunResult> {
  const file = `${ROOT}.dawn_warnings_${crypto.randomUUID()}.ts`;
  await sys.writeTextFile(file, source);
  try {
    return await sys.runScript(file, [], { cwd: ROOT });
  } finally {
    await sys.remove(file);
  }
}

test("Dawn's lavapipe limit warnings: a GPU is created without them", async () => {
  const out = await runSnippet(`
import { createGpu } from "./src/gpu/device.ts";
const gpu = await createGpu();
console.log("adapter:", gpu.description);
gpu.device.destroy();
`);
  assertEquals(out.code, 0, out.stderr);
  assert(out.stdout.includes("adapter:"), out.stdout);
  assert(!/artificially reduced/.test(out.stderr), `warnings printed:\n${out.stderr}`);
});

test("Dawn's lavapipe limit warnings: only those two lines are dropped", async () => {
  // A stand-in GPU whose requestAdapter writes to fd 2 the way Dawn does (synchronously).
  const out = await runSnippet(`
import fs from "node:fs";
import { quietDawnAdapterWarnings } from "./src/runtime/dawn_warnings.ts";
const fake = {
  requestAdapter() {
    fs.writeSync(2, "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\\n");
    fs.writeSync(2, "something else went wrong\\n");
    fs.writeSync(2, "Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.\\n");
    return Promise.resolve("adapter");
  },
};
const gpu = await quietDawnAdapterWarnings(fake as unknown as GPU);
console.log("result:", await gpu.requestAdapter());
console.error("after");
`);
  assertEquals(out.code, 0, out.stderr);
  assert(out.stdout.includes("result: adapter"), out.stdout);
  const lines = out.stderr.split("\n").filter(Boolean);
  assert(lines.includes("something else went wrong") && lines.includes("after"), out.stderr);
  // On Bun both of Dawn's lines are gone; Deno has no Dawn and leaves stderr alone.
  const dropped = lines.filter((l) => DAWN_LIMIT_WARNING.test(l)).length;
  assertEquals(dropped, sys.RUNTIME === "bun" ? 0 : 2, out.stderr);
});
