/**
 * Loads `@mlc-ai/web-xgrammar` (xgrammar compiled to WebAssembly) on Deno and Bun.
 *
 * The npm build is a UMD bundle inside a `"type": "module"` package: Deno refuses to import it
 * as ESM, so the bundle's text is evaluated here with an `exports` object instead, the same way
 * on both runtimes. Its WebAssembly is inlined in the bundle as a data URI, so nothing is fetched.
 *
 * Each {@link loadXGrammar} call returns an independent instance (its own WebAssembly memory).
 * That matters because this build has no C++ exception support: an invalid schema or grammar
 * makes xgrammar call `abort()`, after which that instance must not be used again. Callers
 * validate untrusted input on a disposable instance first (see `grammar_compiler.ts`).
 * @module
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type * as XG from "@mlc-ai/web-xgrammar";
import { readTextFile } from "../runtime/runtime.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** The package specifier, pinned to a version in deno.json and package.json. */
export const XGRAMMAR_PACKAGE = "@mlc-ai/web-xgrammar";

/** The emscripten module's own bindings, reached past the package's async wrappers. */
export interface XGrammarBinding {
  /** A zero-copy Int32Array view of a `std::vector<int>` handle (valid until it is deleted). */
  vecIntToView(vec: unknown): Int32Array;
}

/** One xgrammar instance: the package's classes plus what the wrappers do not expose. */
export interface XGrammarInstance {
  Grammar: typeof XG.Grammar;
  GrammarCompiler: typeof XG.GrammarCompiler;
  GrammarMatcher: typeof XG.GrammarMatcher;
  TokenizerInfo: typeof XG.TokenizerInfo;
  Testings: typeof XG.Testings;
  /** The raw bindings (initialized: `loadXGrammar` waits for the WebAssembly). */
  binding: XGrammarBinding;
  /**
   * Lines the native code wrote to stderr (xgrammar's `[FATAL] file:line: reason` before it
   * aborts). Cleared by {@link takeLog}.
   */
  log: string[];
  /** Returns and clears {@link log}. */
  takeLog(): string[];
}

// Appended inside the bundle's factory, where `binding` and `asyncInitBinding` are in scope.
const ANCHOR = "exports.default = index;";
const HOOK = "exports.__internals = { init: asyncInitBinding, binding: () => binding };";

let factory: Promise<(exports: Record<string, unknown>, console: Console) => void> | null = null;

/** The bundle's file: import.meta.resolve finds it in node_modules (Bun) or Deno's npm cache. */
function bundlePath(): string {
  const resolved = import.meta.resolve(XGRAMMAR_PACKAGE);
  if (resolved.startsWith("file:")) return fileURLToPath(resolved);
  if (resolved.startsWith("/")) return resolved;
  // Runtimes that resolve to something else (no file URL): ask Node-style resolution.
  return createRequire(import.meta.url).resolve(XGRAMMAR_PACKAGE);
}

async function loadFactory(): Promise<
  (exports: Record<string, unknown>, console: Console) => void
> {
  const file = bundlePath();
  const source = await readTextFile(file);
  const at = source.indexOf(ANCHOR);
  if (at < 0 || source.indexOf(ANCHOR, at + 1) >= 0) {
    throw new Error(
      `${file}: not the expected ${XGRAMMAR_PACKAGE} build (pin the version in package.json/deno.json)`,
    );
  }
  const patched = source.slice(0, at) + HOOK + source.slice(at);
  // `process` is shadowed so emscripten takes its plain (non-Node) path: no `require("fs")`,
  // the inlined WebAssembly decoded with atob. `console` is shadowed to capture native stderr.
  const body = `${patched}\n//# sourceURL=${file}`;
  const run = new Function(
    "exports",
    "module",
    "require",
    "__filename",
    "process",
    "console",
    body,
  );
  const require = createRequire(file);
  return (exports, console) =>
    run.call(globalThis, exports, { exports }, require, file, undefined, console);
}

/** Evaluates a fresh xgrammar instance and waits for its WebAssembly to be ready. */
export async function loadXGrammar(): Promise<XGrammarInstance> {
  factory ??= loadFactory();
  const evaluate = await factory;
  const log: string[] = [];
  const capture = (...args: unknown[]) => void log.push(args.map(String).join(" "));
  const quiet = {
    ...console,
    log: capture,
    error: capture,
    warn: capture,
    info: capture,
  } as Console;
  const exports: Record<string, unknown> = {};
  evaluate(exports, quiet);
  const internals = exports.__internals as { init(): Promise<void>; binding(): XGrammarBinding };
  await internals.init();
  return {
    Grammar: exports.Grammar as typeof XG.Grammar,
    GrammarCompiler: exports.GrammarCompiler as typeof XG.GrammarCompiler,
    GrammarMatcher: exports.GrammarMatcher as typeof XG.GrammarMatcher,
    TokenizerInfo: exports.TokenizerInfo as typeof XG.TokenizerInfo,
    Testings: exports.Testings as typeof XG.Testings,
    binding: internals.binding(),
    log,
    takeLog: () => log.splice(0),
  };
}

/** xgrammar's view of a vocabulary (the tokens' bytes, how they are encoded, the stop ids). */
export function tokenizerInfoOf(xg: XGrammarInstance, v: Vocabulary): Promise<XG.TokenizerInfo> {
  return xg.TokenizerInfo.createTokenizerInfo(
    v.encoded,
    v.vocabType,
    v.addPrefixSpace,
    v.vocabSize,
    v.stopTokenIds,
  );
}

/** A compiler over a vocabulary, with xgrammar's own cache off (callers cache, with a bound). */
export async function compilerOf(xg: XGrammarInstance, v: Vocabulary): Promise<XG.GrammarCompiler> {
  return await xg.GrammarCompiler.createGrammarCompiler(await tokenizerInfoOf(xg, v), false);
}
