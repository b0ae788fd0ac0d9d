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
const bunTest: { test: (name: string, fn: () => Promise<void>, timeout: number) => void } | null = RUNTIME === "bun"
  ? await import(["bun", "test"].join(":"))
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
