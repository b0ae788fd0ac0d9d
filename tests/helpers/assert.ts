/**
 * Minimal assertion helpers (no JSR in this environment, so no @std/assert).
 * @module
 */
import * as sys from "./platform.ts";

/** Thrown by every helper here when an assertion does not hold. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Asserts that `cond` is truthy. */
export function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(message);
}

/** Structural equality over primitives, arrays, typed arrays, plain objects, Maps and Sets. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = a as unknown as ArrayLike<unknown>;
    const y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k))) return false;
    return true;
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false;
    for (const v of a) if (!b.has(v)) return false;
    return true;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) {
      return false;
    }
  }
  return true;
}

function show(v: unknown): string {
  try {
    return sys.inspect(v);
  } catch {
    return String(v);
  }
}

/** Asserts deep (structural) equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!deepEqual(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}values differ\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

type ErrorClass<E extends Error> = abstract new (...args: any[]) => E;

function checkError<E extends Error>(
  err: unknown,
  errorClass: ErrorClass<E> | undefined,
  msgIncludes: string | undefined,
): E {
  if (!(err instanceof Error)) throw new AssertionError(`expected an Error, got ${show(err)}`);
  if (errorClass && !(err instanceof errorClass)) {
    throw new AssertionError(
      `expected ${errorClass.name}, got ${err.name}: ${err.message}`,
    );
  }
  if (msgIncludes !== undefined && !err.message.includes(msgIncludes)) {
    throw new AssertionError(
      `expected the message to include ${show(msgIncludes)}, got ${show(err.message)}`,
    );
  }
  return err as E;
}

/** Asserts that `fn` throws (an instance of `errorClass`, with `msgIncludes` in its message). */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): E {
  try {
    fn();
  } catch (err) {
    return checkError(err, errorClass, msgIncludes);
  }
  throw new AssertionError("expected the function to throw");
}

/** Asserts that `fn`'s promise rejects (an instance of `errorClass`, with `msgIncludes`). */
export async function assertRejects<E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  errorClass?: ErrorClass<E>,
  msgIncludes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    return checkError(err, errorClass, msgIncludes);
  }
  throw new AssertionError("expected the promise to reject");
}
