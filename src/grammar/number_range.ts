/**
 * EBNF for JSON numbers within bounds (`minimum`, `maximum`, `exclusiveMinimum`,
 * `exclusiveMaximum`). xgrammar 0.1.27 mis-compiles these (a `maximum: 100` number admits
 * `100.5`, an integer `minimum: 3` admits `1`), so ranged numeric schemas get this grammar
 * instead (see schema_compile.ts).
 *
 * The language: an optional `-`, an integer part without leading zeros, and for `number` an
 * optional fraction of 1 to {@link fractionDigits} digits; no exponent and no `-0`. Every
 * string it accepts is a JSON number inside the bounds; values that need an exponent or more
 * fraction digits are left out (a subset, never a violation).
 * @module
 */

/** The numeric keywords of one schema node. */
export interface NumberBounds {
  type: "integer" | "number";
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

/** Fraction digits a ranged `number` may have (at least this many; more if a bound needs them). */
export const FRACTION_DIGITS = 6;

/** Largest |bound| handled (integers stay exact in a double below 2^53). */
export const MAX_BOUND = 1e15;

/** A bound as an exact decimal: integer part and fraction digits (non-negative magnitude). */
interface Decimal {
  int: bigint;
  frac: string;
}

/** A bound of a non-negative magnitude range. */
interface Bound {
  value: Decimal;
  strict: boolean;
}

/** Decimal digits of a finite number without exponent notation (throws when impossible). */
function decimalOf(n: number): Decimal {
  const abs = Math.abs(n);
  let text = String(abs);
  if (/e/i.test(text)) {
    // Small magnitudes print with an exponent; toFixed(20) is exact enough for bounds > 1e-15.
    text = abs.toFixed(20).replace(/0+$/, "").replace(/\.$/, "");
    if (/e/i.test(text)) throw new RangeError(`bound ${n} is too large`);
  }
  const [i, f = ""] = text.split(".");
  return { int: BigInt(i), frac: f };
}

function isZero(d: Decimal): boolean {
  return d.int === 0n && /^0*$/.test(d.frac);
}

/** EBNF string literal of digits. */
const lit = (s: string) => `"${s}"`;
const digitClass = (lo: number, hi: number) => (lo === hi ? lit(String(lo)) : `[${lo}-${hi}]`);
const anyDigits = (min: number, max: number | null) =>
  max === 0
    ? ""
    : max === null
    ? `[0-9]{${min},}`
    : min === max
    ? `[0-9]{${min}}`
    : `[0-9]{${min},${max}}`;
const seq = (...parts: string[]) => parts.filter((p) => p !== "").join(" ") || '""';
const alt = (parts: string[]) => (parts.length === 1 ? parts[0] : `(${parts.join(" | ")})`);

const ZEROS = /^0*$/;
const NINES = /^9*$/;

/**
 * Same-length digit strings in [lo, hi] (equal lengths, lo <= hi). A first digit whose rest
 * spans every digit string joins the middle class, so only one branch recurses per side: the
 * expression grows with the square of the length, not exponentially (a bound of 10^14 once
 * made a 2 MB grammar that took minutes to compile).
 */
function sameLength(lo: string, hi: string): string {
  if (lo.length === 0) return '""';
  if (lo === hi) return lit(lo);
  const rest = lo.length - 1;
  if (ZEROS.test(lo) && NINES.test(hi)) return anyDigits(lo.length, lo.length);
  const a = Number(lo[0]);
  const b = Number(hi[0]);
  if (a === b) return seq(lit(lo[0]), sameLength(lo.slice(1), hi.slice(1)));
  const loFull = ZEROS.test(lo.slice(1));
  const hiFull = NINES.test(hi.slice(1));
  const from = loFull ? a : a + 1;
  const to = hiFull ? b : b - 1;
  const parts: string[] = [];
  if (!loFull) parts.push(seq(lit(lo[0]), sameLength(lo.slice(1), "9".repeat(rest))));
  if (from <= to) parts.push(seq(digitClass(from, to), anyDigits(rest, rest)));
  if (!hiFull) parts.push(seq(lit(hi[0]), sameLength("0".repeat(rest), hi.slice(1))));
  return alt(parts);
}

/** Integers (no leading zeros) in [lo, hi]; hi null means unbounded. Null when empty. */
function intRange(lo: bigint, hi: bigint | null): string | null {
  if (hi !== null && lo > hi) return null;
  const loText = lo.toString();
  const parts: string[] = [];
  const maxLen = hi === null ? loText.length : hi.toString().length;
  for (let len = loText.length; len <= maxLen; len++) {
    const from = len === loText.length ? loText : "1" + "0".repeat(len - 1);
    const to = hi !== null && len === maxLen ? hi.toString() : "9".repeat(len);
    parts.push(sameLength(from, to));
  }
  if (hi === null) parts.push(seq("[1-9]", anyDigits(loText.length, null)));
  return alt(parts);
}

/**
 * Fraction digit strings F (0 to `lo.length` digits) with lo <= pad(F) <= hi, comparing
 * after padding F with zeros to the bounds' length (both `lo` and `hi` have that length).
 * `empty`: whether F = "" qualifies; `some`: the non-empty strings, or null if none.
 */
function fraction(
  lo: string,
  hi: string,
  loStrict: boolean,
  hiStrict: boolean,
): { empty: boolean; some: string | null } {
  const zerosLo = ZEROS.test(lo);
  const zerosHi = ZEROS.test(hi);
  const empty = (!loStrict ? zerosLo : false) && (hiStrict ? !zerosHi : true);
  if (lo.length === 0) return { empty, some: null };
  // Every digit string (see sameLength: collapsing keeps the expression small).
  if (zerosLo && !loStrict && NINES.test(hi) && !hiStrict) {
    return { empty, some: anyDigits(1, lo.length) };
  }
  const a = Number(lo[0]);
  const b = Number(hi[0]);
  const rest = lo.length - 1;
  const parts: string[] = [];
  const withTail = (first: string, sub: { empty: boolean; some: string | null }) => {
    const tail: string[] = [];
    if (sub.empty) tail.push('""');
    if (sub.some) tail.push(sub.some);
    if (tail.length > 0) parts.push(seq(first, tail.length === 1 ? tail[0] : alt(tail)));
  };
  if (a === b) {
    withTail(lit(lo[0]), fraction(lo.slice(1), hi.slice(1), loStrict, hiStrict));
  } else {
    withTail(lit(lo[0]), fraction(lo.slice(1), "9".repeat(rest), loStrict, false));
    if (a + 1 <= b - 1) parts.push(seq(digitClass(a + 1, b - 1), anyDigits(0, rest)));
    withTail(lit(hi[0]), fraction("0".repeat(rest), hi.slice(1), false, hiStrict));
  }
  return { empty, some: parts.length === 0 ? null : alt(parts) };
}

const pad = (frac: string, n: number) => frac.padEnd(n, "0");

/**
 * Non-negative magnitudes in [lo, hi] (hi null: unbounded) written with up to `digits`
 * fraction digits (0: integers only). Null when no string qualifies.
 */
function magnitude(lo: Bound, hi: Bound | null, digits: number): string | null {
  const fracPart = (f: { empty: boolean; some: string | null }) => {
    if (digits === 0) return f.empty ? '""' : null;
    const out: string[] = [];
    if (f.empty) out.push('""');
    if (f.some) out.push(seq('"."', f.some));
    return out.length === 0 ? null : out.length === 1 ? out[0] : alt(out);
  };
  const nines = "9".repeat(digits);
  const zeros = "0".repeat(digits);
  const anyFraction = digits === 0 ? "" : `("." ${anyDigits(1, digits)})?`;
  const loInt = lo.value.int;
  const loFrac = pad(lo.value.frac, digits);
  const parts: string[] = [];
  const push = (int: string | null, frac: string | null) => {
    if (int !== null && frac !== null) parts.push(seq(int, frac === '""' ? "" : frac));
  };
  if (hi !== null && hi.value.int === loInt) {
    push(
      lit(loInt.toString()),
      fracPart(fraction(loFrac, pad(hi.value.frac, digits), lo.strict, hi.strict)),
    );
  } else {
    push(lit(loInt.toString()), fracPart(fraction(loFrac, nines, lo.strict, false)));
    const middle = intRange(loInt + 1n, hi === null ? null : hi.value.int - 1n);
    if (middle !== null) parts.push(seq(middle, anyFraction));
    if (hi !== null) {
      push(
        lit(hi.value.int.toString()),
        fracPart(fraction(zeros, pad(hi.value.frac, digits), false, hi.strict)),
      );
    }
  }
  return parts.length === 0 ? null : alt(parts);
}

/** Validates a numeric keyword's value (a finite number within {@link MAX_BOUND}). */
function boundValue(
  bounds: NumberBounds,
  key: keyof Omit<NumberBounds, "type">,
): number | undefined {
  const v = bounds[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new RangeError(`${key} must be a finite number`);
  }
  if (Math.abs(v) > MAX_BOUND) throw new RangeError(`${key} ${v} is beyond ±${MAX_BOUND}`);
  return v;
}

/**
 * An EBNF expression for the numbers a node's bounds admit. Throws RangeError when a bound is
 * not a finite number within {@link MAX_BOUND} or when no number satisfies the bounds.
 */
export function numberRangeEbnf(bounds: NumberBounds): string {
  const integer = bounds.type === "integer";
  // The tightest lower and upper bound, each with whether it is exclusive.
  let lo: { v: number; strict: boolean } | null = null;
  let hi: { v: number; strict: boolean } | null = null;
  const min = boundValue(bounds, "minimum");
  const xmin = boundValue(bounds, "exclusiveMinimum");
  const max = boundValue(bounds, "maximum");
  const xmax = boundValue(bounds, "exclusiveMaximum");
  if (min !== undefined) lo = { v: min, strict: false };
  if (xmin !== undefined && (lo === null || xmin >= lo.v)) lo = { v: xmin, strict: true };
  if (max !== undefined) hi = { v: max, strict: false };
  if (xmax !== undefined && (hi === null || xmax <= hi.v)) hi = { v: xmax, strict: true };
  if (integer) {
    // Integer bounds become inclusive integers.
    if (lo) {
      lo = { v: lo.strict && Number.isInteger(lo.v) ? lo.v + 1 : Math.ceil(lo.v), strict: false };
    }
    if (hi) {
      hi = { v: hi.strict && Number.isInteger(hi.v) ? hi.v - 1 : Math.floor(hi.v), strict: false };
    }
  }
  if (lo && hi && (lo.v > hi.v || (lo.v === hi.v && (lo.strict || hi.strict)))) {
    throw new RangeError("no number satisfies these bounds");
  }
  let digits = 0;
  if (!integer) {
    const fracLen = (x: { v: number } | null) => (x ? decimalOf(x.v).frac.length : 0);
    digits = Math.max(FRACTION_DIGITS, fracLen(lo), fracLen(hi));
  }
  const parts: string[] = [];
  const dec = (v: number): Decimal => decimalOf(v);
  const zero: Decimal = { int: 0n, frac: "" };
  // Negative values: "-" and a magnitude > 0 (no "-0").
  if (lo === null || lo.v < 0) {
    const magLo: Bound = hi !== null && hi.v < 0
      ? { value: dec(hi.v), strict: hi.strict }
      : { value: zero, strict: true };
    const magHi: Bound | null = lo === null ? null : { value: dec(lo.v), strict: lo.strict };
    const m = magnitude(magLo, magHi, digits);
    if (m !== null) parts.push(seq('"-"', m));
  }
  // Non-negative values.
  if (hi === null || hi.v > 0 || (hi.v === 0 && !hi.strict)) {
    const magLo: Bound = lo === null || lo.v < 0
      ? { value: zero, strict: false }
      : { value: dec(lo.v), strict: lo.strict };
    const magHi: Bound | null = hi === null ? null : { value: dec(hi.v), strict: hi.strict };
    if (!(magHi && isZero(magHi.value) && magLo.strict)) {
      const m = magnitude(magLo, magHi, digits);
      if (m !== null) parts.push(m);
    }
  }
  if (parts.length === 0) throw new RangeError("no number satisfies these bounds");
  return alt(parts);
}
