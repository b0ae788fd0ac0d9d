/**
 * A JSON schema to EBNF: xgrammar's converter, with every node that has numeric bounds
 * replaced by our own range grammar (number_range.ts), because xgrammar 0.1.27's are wrong,
 * and string character classes kept JSON-safe (json_string_classes.ts).
 *
 * How: each ranged node is swapped for a `const` placeholder string before conversion; the
 * converter writes a `const` as one EBNF string literal, which is then replaced by the range
 * expression. Output layout: one line, `", "` and `": "` separators, no free whitespace (so a
 * model cannot stall in whitespace and outputs stay short).
 * @module
 */
import { GrammarError } from "./errors.ts";
import { jsonSafeClasses } from "./json_string_classes.ts";
import { type NumberBounds, numberRangeEbnf } from "./number_range.ts";
import { SUPPORTED_FORMATS } from "./schema_audit.ts";
import type { JsonSchema } from "./spec.ts";
import type { XGrammarInstance } from "./xgrammar.ts";

type Json = Record<string, unknown>;

const NUMERIC = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
const SCHEMA_MAPS = ["properties", "patternProperties", "$defs", "definitions"];
const SCHEMA_LISTS = ["prefixItems", "anyOf", "oneOf", "allOf"];
const SCHEMA_VALUES = [
  "additionalProperties",
  "unevaluatedProperties",
  "propertyNames",
  "items",
  "unevaluatedItems",
];

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Whether a node is dispatched on its `type` (nothing of higher priority in xgrammar). */
const typeDispatched = (n: Json) =>
  !["$ref", "const", "enum", "anyOf", "oneOf", "allOf"].some((k) => k in n);

class RangeRewriter {
  readonly ranges = new Map<string, string>();
  #nonce: string;

  constructor(text: string) {
    let nonce = 0;
    while (text.includes(`XGRNUM${nonce}`)) nonce++;
    this.#nonce = `XGRNUM${nonce}`;
  }

  rewrite(node: unknown): unknown {
    if (!isObject(node)) return node;
    const out: Json = { ...node };
    for (const k of SCHEMA_MAPS) {
      if (isObject(out[k])) {
        out[k] = Object.fromEntries(
          Object.entries(out[k] as Json).map(([p, s]) => [p, this.rewrite(s)]),
        );
      }
    }
    for (const k of SCHEMA_LISTS) {
      if (Array.isArray(out[k])) {
        out[k] = (out[k] as unknown[]).map((s) => this.rewrite(s));
      }
    }
    for (const k of SCHEMA_VALUES) if (out[k] !== undefined) out[k] = this.rewrite(out[k]);
    // Formats not enforced (reported by the audit) must not reach xgrammar either.
    if (typeof out.format === "string" && !SUPPORTED_FORMATS.has(out.format)) delete out.format;
    if (!typeDispatched(out) || !NUMERIC.some((k) => k in out)) return out;
    const type = out.type;
    if (Array.isArray(type)) {
      // xgrammar visits a type list as one node per type; do the same so the numeric ones get ranges.
      const rest = { ...out };
      delete rest.type;
      return this.rewrite({ anyOf: type.map((t) => ({ ...rest, type: t })) });
    }
    if (type !== "integer" && type !== "number") return out;
    const placeholder = `${this.#nonce}_${this.ranges.size}`;
    try {
      this.ranges.set(placeholder, numberRangeEbnf(out as unknown as NumberBounds));
    } catch (e) {
      throw new GrammarError(
        "invalid_schema",
        `numeric bounds ${
          JSON.stringify(
            Object.fromEntries(NUMERIC.filter((k) => k in out).map((k) => [k, out[k]])),
          )
        }: ${(e as Error).message}`,
      );
    }
    const keep: Json = { const: placeholder };
    for (const k of ["$defs", "definitions"]) if (k in out) keep[k] = out[k];
    return keep;
  }
}

/** Converter arguments: no free whitespace, one line, default separators. */
const ANY_WHITESPACE = false;
const INDENT_NONE = -1;

/**
 * EBNF (start rule `root`) for a schema. `strict`: no properties beyond those listed unless the
 * schema allows them (xgrammar's strict mode); otherwise JSON Schema's default of allowing them.
 * Throws whatever xgrammar throws on a schema it rejects (callers run it where that is safe).
 */
export async function schemaToEbnf(
  xg: XGrammarInstance,
  schema: JsonSchema,
  strict: boolean,
): Promise<string> {
  const text = JSON.stringify(schema);
  const rewriter = new RangeRewriter(text);
  const rewritten = rewriter.rewrite(schema);
  let ebnf = await xg.Testings._jsonSchemaToEBNF(
    JSON.stringify(rewritten),
    ANY_WHITESPACE,
    INDENT_NONE,
    undefined,
    strict,
  );
  try {
    ebnf = jsonSafeClasses(ebnf);
  } catch (e) {
    throw new GrammarError(
      "unsupported_schema",
      `a pattern in the schema: ${(e as Error).message}`,
    );
  }
  for (const [placeholder, range] of rewriter.ranges) {
    ebnf = ebnf.replaceAll(`"\\"${placeholder}\\""`, `(${range})`);
  }
  return ebnf;
}

/** An EBNF string literal of any text (xgrammar's dialect: C-style escapes). */
export function ebnfString(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else out += ch;
  }
  return out + '"';
}
