/**
 * The test entry point shared by both runtimes: `deno test` registers through `Deno.test`,
 * `bun test` through `bun:test`. Test files call {@link test} and never a runtime global.
 */
import { RUNTIME } from "../../src/runtime/runtime.ts";

/** What a test body receives: `step` runs a named sub-step. */
export interface TestContext {
  step(name: string, fn: () => void | Promise<void>): Promise<void>;
}

type TestFn = (t: TestContext) => void | Promise<void>;

/** A test with options (sanitizers apply to Deno only). */
export interface TestDefinition {
  name: string;
  fn: TestFn;
  sanitizeOps?: boolean;
  sanitizeResources?: boolean;
}

// GPU tests on a CPU Vulkan driver take tens of seconds; bun's default limit is 5 s.
const BUN_TIMEOUT_MS = 600_000;

// deno-lint-ignore no-explicit-any
const globals = globalThis as any;
// Loaded synchronously (Bun's import.meta.require): under `bun test --parallel` a test file
// may call test() before a top-level await in this module has settled.
const bunTest: {
  test: (name: string, fn: () => Promise<void>, timeout: number) => void;
  afterAll: (fn: () => void | Promise<void>, timeout: number) => void;
} | null = RUNTIME === "bun"
  ? (import.meta as unknown as { require(id: string): never }).require(["bun", "test"].join(":"))
  : null;

/** Registers a test. */
export function test(name: string, fn: TestFn): void;
export function test(def: TestDefinition): void;
export function test(a: string | TestDefinition, b?: TestFn): void {
  const def: TestDefinition = typeof a === "string" ? { name: a, fn: b! } : a;
  if (bunTest) {
    const ctx: TestContext = { step: async (_name, fn) => await fn() };
    bunTest.test(def.name, async () => await def.fn(ctx), BUN_TIMEOUT_MS);
  } else {
    globals.Deno.test(def);
  }
}

/**
 * Runs `fn` once after the file's last test (also under `--filter`): closes what the file's
 * tests share (one GPU device, one loaded engine), which a single test must not close.
 */
export function afterAll(fn: () => void | Promise<void>): void {
  if (bunTest) bunTest.afterAll(fn, BUN_TIMEOUT_MS); // closing may wait for the GPU's last work
  else globals.Deno.test.afterAll(fn);
}

/**
 * A value made once, at its first use, for every test of a file that asks for it (a loaded
 * engine, a GPU device), and closed by `close` after the file's last test. Tests that use it
 * must not close it, and under Deno they register with `sanitizeOps`/`sanitizeResources` off
 * (see {@link sharedTest}): what it opened outlives the test that first asked.
 */
export function shared<T>(make: () => Promise<T>, close: (value: T) => void | Promise<void>): () => Promise<T> {
  let value: Promise<T> | null = null;
  afterAll(async () => {
    if (value) await close(await value);
  });
  return () => value ??= make();
}

/** {@link test} for a test that uses a {@link shared} value (Deno's sanitizers off). */
export function sharedTest(name: string, fn: TestFn): void {
  test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}
