/**
 * Keeps the character classes of a JSON-schema grammar inside what a JSON string may hold
 * raw. xgrammar 0.1.27 writes `pattern` regexes and length-bounded strings as plain character
 * classes over the JSON text (`.` becomes `[\u0000-\U0010FFFF]`, `maxLength` strings
 * `[^"\\\r\n]`), so a `"`, a `\` or a control character could land unescaped in a string and
 * break the JSON. Intersecting every class with the raw-safe set (no `"`, no `\`, nothing
 * below U+0020) leaves a subset of the strings the schema allows, all of them
 * valid JSON whose decoded value is the text itself. xgrammar's built-in rules (`basic_*`:
 * JSON values, escapes, the `["]` that opens a string) are structure, and correct: left alone.
 * @module
 */

/** Inclusive code point ranges, sorted and disjoint. */
type Ranges = [number, number][];

const MAX_CP = 0x10ffff;
// Surrogates are not cut out here (the UTF-8 guard masks their bytes): xgrammar 0.1.27
// mis-handles a class range that starts at U+E000 (it then also matches ASCII).
const SAFE: Ranges = [[0x20, 0x21], [0x23, 0x5b], [0x5d, MAX_CP]];
const ESCAPES: Record<string, number> = {
  n: 10,
  r: 13,
  t: 9,
  f: 12,
  v: 11,
  "0": 0,
  a: 7,
  b: 8,
  e: 27,
};

function normalize(ranges: Ranges): Ranges {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

function complement(ranges: Ranges): Ranges {
  const out: Ranges = [];
  let next = 0;
  for (const [lo, hi] of normalize(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CP) out.push([next, MAX_CP]);
  return out;
}

function intersect(a: Ranges, b: Ranges): Ranges {
  const out: Ranges = [];
  for (const [alo, ahi] of a) {
    for (const [blo, bhi] of b) {
      const lo = Math.max(alo, blo);
      const hi = Math.min(ahi, bhi);
      if (lo <= hi) out.push([lo, hi]);
    }
  }
  return normalize(out);
}

/** Reads one class member at `i` (after `[`): its code point and the index after it. */
function member(s: string, i: number): [number, number] {
  if (s[i] !== "\\") {
    const cp = s.codePointAt(i)!;
    return [cp, i + (cp > 0xffff ? 2 : 1)];
  }
  const c = s[i + 1];
  const hex = (n: number): [number, number] => [parseInt(s.slice(i + 2, i + 2 + n), 16), i + 2 + n];
  if (c === "x") return hex(2);
  if (c === "u") return hex(4);
  if (c === "U") return hex(8);
  if (c in ESCAPES) return [ESCAPES[c], i + 2];
  const cp = s.codePointAt(i + 1)!;
  return [cp, i + 1 + (cp > 0xffff ? 2 : 1)];
}

/** Parses `[...]` at `start`; returns its code point set and the index after `]`. */
function parseClass(s: string, start: number): [Ranges, number] {
  let i = start + 1;
  const negated = s[i] === "^";
  if (negated) i++;
  const ranges: Ranges = [];
  while (i < s.length && s[i] !== "]") {
    const [lo, after] = member(s, i);
    i = after;
    if (s[i] === "-" && s[i + 1] !== "]" && i + 1 < s.length) {
      const [hi, after2] = member(s, i + 1);
      ranges.push([lo, hi]);
      i = after2;
    } else {
      ranges.push([lo, lo]);
    }
  }
  return [negated ? complement(ranges) : normalize(ranges), i + 1];
}

const esc = (cp: number) =>
  /[0-9A-Za-z]/.test(String.fromCodePoint(cp)) && cp < 0x80
    ? String.fromCodePoint(cp)
    : cp <= 0xffff
    ? `\\u${cp.toString(16).padStart(4, "0")}`
    : `\\U${cp.toString(16).padStart(8, "0")}`;

const list = (ranges: Ranges) =>
  ranges.map(([lo, hi]) => (lo === hi ? esc(lo) : `${esc(lo)}-${esc(hi)}`)).join("");

/**
 * A class as xgrammar 0.1.27 matches it correctly. Its classes that list non-ASCII ranges go
 * wrong under bounded repetition (`[\u0020-\u00ff]{0,4}` admits U+036E and rejects "ÿ"),
 * while classes that exclude only ASCII characters work. So: a set holding every non-ASCII
 * character is written as the negation of its missing ASCII characters; any other set is cut
 * down to its ASCII part (a subset, still valid); a set with no ASCII part is refused.
 */
function printClass(ranges: Ranges): string {
  const ascii = intersect(ranges, [[0, 0x7f]]);
  const nonAscii = intersect(ranges, [[0x80, MAX_CP]]);
  if (nonAscii.length === 1 && nonAscii[0][0] === 0x80 && nonAscii[0][1] === MAX_CP) {
    return `[^${list(intersect(complement(ascii), [[0, 0x7f]]))}]`;
  }
  if (ascii.length === 0) {
    throw new RangeError("character classes of only non-ASCII characters are not supported");
  }
  return `[${list(ascii)}]`;
}

/** Rewrites one EBNF line's character classes (string literals and comments untouched). */
function rewriteLine(line: string): string {
  let out = "";
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === "\\" ? 2 : 1;
      out += line.slice(i, j + 1);
      i = j + 1;
    } else if (c === "[") {
      const [ranges, after] = parseClass(line, i);
      const safe = intersect(ranges, SAFE);
      if (safe.length === 0) {
        throw new RangeError(
          `the character class ${
            line.slice(i, after)
          } has only characters a JSON string must escape`,
        );
      }
      try {
        out += printClass(safe);
      } catch (e) {
        throw new RangeError(
          `the character class ${line.slice(i, after)}: ${(e as Error).message}`,
        );
      }
      i = after;
    } else if (c === "#") {
      out += line.slice(i);
      break;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/**
 * Every character class of a JSON-schema EBNF intersected with the raw-safe set, except in
 * xgrammar's built-in `basic_*` rules. Throws RangeError when a class would become empty.
 */
export function jsonSafeClasses(ebnf: string): string {
  return ebnf.split("\n").map((line) => (line.startsWith("basic_") ? line : rewriteLine(line)))
    .join("\n");
}
