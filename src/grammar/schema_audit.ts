/**
 * Which JSON-schema keywords the grammar enforces, checked before compiling, so that nothing a
 * validator would enforce is silently dropped.
 *
 * xgrammar 0.1.27's converter dispatches on one keyword per node (`$ref`, then `const`,
 * `enum`, `anyOf`/`oneOf`, `allOf`, `type`) and ignores some keywords outright. This audit
 * rejects (GrammarError "unsupported_schema", with the JSON pointer of the keyword):
 * - keywords it never enforces: `not`, `if`/`then`/`else`, `dependentRequired`,
 *   `dependentSchemas`, `dependencies`, `multipleOf`, `uniqueItems: true`, `contains`,
 *   `minContains`, `maxContains`, `additionalItems`, array-form `items`, `allOf` with more than
 *   one schema, boolean `exclusiveMinimum`/`exclusiveMaximum` (draft 4);
 * - keywords that would be ignored next to the one that wins the dispatch (anything but
 *   annotations next to `$ref`, `anyOf`, `oneOf`, `allOf`; anything but `type` next to `enum`
 *   or `const`), and `minLength`/`maxLength`/`format` next to `pattern`, `minLength`/
 *   `maxLength` next to `format`;
 * - type-specific keywords on a node without `type` (xgrammar would accept any value);
 * - a `required` name missing from `properties` (the grammar could never produce it);
 * - `$ref` other than `#` or `#/...` inside the document (no remote references).
 * It reports as warnings what is enforced more loosely than written or has no effect in a
 * validator either: `oneOf` (enforced as `anyOf`), unknown `format` values, unknown keywords.
 * Limits on size keep compile time and memory in check (GrammarError "spec_too_large").
 * @module
 */
import { GrammarError } from "./errors.ts";
import { MAX_BOUND } from "./number_range.ts";
import type { JsonSchema } from "./spec.ts";

/** Size limits of a schema. */
export interface SchemaLimits {
  /** Deepest nesting of subschemas. */
  maxDepth: number;
  /** Most values in one `enum`. */
  maxEnumValues: number;
  /** Most entries in one `properties`. */
  maxProperties: number;
  /** Largest `minLength`/`maxLength`/`minItems`/`maxItems`/`minProperties`/`maxProperties`. */
  maxCount: number;
}

/** Defaults of {@link SchemaLimits}. */
export const DEFAULT_SCHEMA_LIMITS: SchemaLimits = {
  maxDepth: 32,
  maxEnumValues: 1024,
  maxProperties: 256,
  maxCount: 65536,
};

type Json = Record<string, unknown>;

const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "deprecated",
  "readOnly",
  "writeOnly",
  "$comment",
  "$schema",
  "$id",
  "$defs",
  "definitions",
]);
const NUMERIC = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
const STRING = ["pattern", "minLength", "maxLength", "format"];
const ARRAY = ["items", "prefixItems", "unevaluatedItems", "minItems", "maxItems", "uniqueItems"];
const OBJECT = [
  "properties",
  "required",
  "additionalProperties",
  "unevaluatedProperties",
  "patternProperties",
  "propertyNames",
  "minProperties",
  "maxProperties",
];
const DISPATCH = ["$ref", "const", "enum", "anyOf", "oneOf", "allOf", "type"];
const KNOWN = new Set([...ANNOTATIONS, ...NUMERIC, ...STRING, ...ARRAY, ...OBJECT, ...DISPATCH]);
const NEVER_ENFORCED = new Set([
  "not",
  "if",
  "then",
  "else",
  "dependentRequired",
  "dependentSchemas",
  "dependencies",
  "multipleOf",
  "contains",
  "minContains",
  "maxContains",
  "additionalItems",
]);
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "array", "object"]);
/**
 * The `format` values enforced: those xgrammar 0.1.27 turns into a grammar, less `email`,
 * whose quoted local part (`"a b"@x`) it writes as invalid JSON escapes. Others are reported
 * as not enforced and dropped before conversion (schema_compile.ts).
 */
export const SUPPORTED_FORMATS = new Set([
  "date",
  "date-time",
  "duration",
  "hostname",
  "ipv4",
  "ipv6",
  "json-pointer",
  "relative-json-pointer",
  "time",
  "uri",
  "uri-reference",
  "uri-template",
  "uuid",
]);

// Pattern text that would put a quote, a backslash or a control character outside a
// character class; those need JSON escapes the converter does not write.
const UNSAFE_PATTERN = /"|\\\\|\\[nrtfv0xuc]/;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const escapePointer = (key: string) => key.replace(/~/g, "~0").replace(/\//g, "~1");

function unsupported(path: string, message: string): never {
  throw new GrammarError("unsupported_schema", `${path || "/"}: ${message}`, { path });
}

function invalid(path: string, message: string): never {
  throw new GrammarError("invalid_schema", `${path || "/"}: ${message}`, { path });
}

function tooLarge(path: string, message: string): never {
  throw new GrammarError("spec_too_large", `${path || "/"}: ${message}`, { path });
}

/** Whether a JSON value has a JSON-schema type (integers are numbers too). */
function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case "null":
      return value === null;
    case "boolean":
      return typeof value === "boolean";
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "string":
      return typeof value === "string";
    case "array":
      return Array.isArray(value);
    case "object":
      return isObject(value);
  }
  return false;
}

/** Resolves a local `$ref` ("#" or "#/a/b") against the root, or undefined. */
export function resolveRef(root: JsonSchema, ref: string): unknown {
  if (ref === "#") return root;
  let node: unknown = root;
  for (const raw of ref.slice(2).split("/")) {
    const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
    if (!isObject(node) || !(key in node)) return undefined;
    node = node[key];
  }
  return node;
}

class Auditor {
  readonly warnings: string[] = [];
  #root: JsonSchema;
  #limits: SchemaLimits;

  constructor(root: JsonSchema, limits: SchemaLimits) {
    this.#root = root;
    this.#limits = limits;
  }

  #count(node: Json, key: string, path: string): void {
    if (node[key] === undefined) return;
    const v = node[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      invalid(`${path}/${key}`, `${key} must be a non-negative integer`);
    }
    if (v > this.#limits.maxCount) {
      tooLarge(`${path}/${key}`, `${key} ${v} is over the limit of ${this.#limits.maxCount}`);
    }
  }

  /** A subschema; `false` only where it means "nothing more" (additionalProperties, items...). */
  #sub(value: unknown, path: string, depth: number, falseAllowed = false): void {
    if (depth > this.#limits.maxDepth) {
      tooLarge(path, `schemas nest deeper than ${this.#limits.maxDepth} levels`);
    }
    if (value === true || (value === false && falseAllowed)) return;
    if (value === false) unsupported(path, "a false schema accepts nothing");
    if (!isObject(value)) invalid(path, "a schema must be an object or a boolean");
    this.#node(value, path, depth);
  }

  #subs(node: Json, key: string, path: string, depth: number, array: boolean): void {
    const v = node[key];
    if (v === undefined) return;
    if (array) {
      if (!Array.isArray(v) || v.length === 0) {
        invalid(`${path}/${key}`, `${key} must be a non-empty array of schemas`);
      }
      v.forEach((s, i) => this.#sub(s, `${path}/${key}/${i}`, depth + 1));
    } else {
      if (!isObject(v)) invalid(`${path}/${key}`, `${key} must be an object of schemas`);
      for (const [k, s] of Object.entries(v)) {
        this.#sub(s, `${path}/${key}/${escapePointer(k)}`, depth + 1);
      }
    }
  }

  #node(node: Json, path: string, depth: number): void {
    const keys = Object.keys(node);
    for (const k of keys) {
      if (NEVER_ENFORCED.has(k)) {
        unsupported(`${path}/${k}`, `the keyword ${k} is not enforced by the grammar engine`);
      }
      if (!KNOWN.has(k)) {
        this.warnings.push(`${path}/${escapePointer(k)}: unknown keyword ${k} ignored`);
      }
    }
    this.#subs(node, "$defs", path, depth, false);
    this.#subs(node, "definitions", path, depth, false);
    // Keywords that constrain a value, as opposed to annotations.
    const validation = keys.filter((k) => KNOWN.has(k) && !ANNOTATIONS.has(k));
    const winner = DISPATCH.find((k) => k in node);
    const siblings = (allowed: string[]) => {
      const ignored = validation.filter((k) => k !== winner && !allowed.includes(k));
      if (ignored.length > 0) {
        unsupported(
          `${path}/${ignored[0]}`,
          `${
            ignored.join(", ")
          } next to ${winner} would be ignored; move it into the referenced or listed schemas`,
        );
      }
    };
    switch (winner) {
      case "$ref": {
        const ref = node.$ref;
        if (typeof ref !== "string") invalid(`${path}/$ref`, "$ref must be a string");
        if (ref !== "#" && !ref.startsWith("#/")) {
          unsupported(
            `${path}/$ref`,
            `only references inside the schema ("#/...") are supported, not ${JSON.stringify(ref)}`,
          );
        }
        if (resolveRef(this.#root, ref) === undefined) {
          invalid(`${path}/$ref`, `${ref} does not resolve inside the schema`);
        }
        siblings([]);
        return;
      }
      case "const":
      case "enum": {
        const values = winner === "const" ? [node.const] : node.enum;
        if (!Array.isArray(values) || values.length === 0) {
          invalid(`${path}/enum`, "enum must be a non-empty array");
        }
        if (values.length > this.#limits.maxEnumValues) {
          tooLarge(
            `${path}/enum`,
            `enum has ${values.length} values, over the limit of ${this.#limits.maxEnumValues}`,
          );
        }
        siblings(["type", "enum", "const"]);
        if ("const" in node && "enum" in node) {
          unsupported(`${path}/enum`, "enum next to const would be ignored");
        }
        const types = node.type === undefined
          ? null
          : Array.isArray(node.type)
          ? node.type
          : [node.type];
        if (types) {
          for (const v of values) {
            if (!types.some((t) => hasType(v, String(t)))) {
              unsupported(
                `${path}/${winner}`,
                `the value ${JSON.stringify(v)} does not have the type ${
                  JSON.stringify(node.type)
                }`,
              );
            }
          }
        }
        return;
      }
      case "anyOf":
      case "oneOf":
        if ("anyOf" in node && "oneOf" in node) {
          unsupported(`${path}/oneOf`, "oneOf next to anyOf would be ignored");
        }
        siblings([]);
        if (winner === "oneOf") {
          this.warnings.push(
            `${path}/oneOf: enforced as anyOf (a value matching several schemas is not excluded)`,
          );
        }
        this.#subs(node, winner, path, depth, true);
        return;
      case "allOf": {
        const all = node.allOf;
        if (!Array.isArray(all) || all.length !== 1) {
          unsupported(`${path}/allOf`, "allOf with more than one schema is not supported");
        }
        siblings([]);
        this.#subs(node, "allOf", path, depth, true);
        return;
      }
    }
    // A node dispatched on `type`, or on object/array keywords, or on nothing (any value).
    let types: string[] | null = null;
    if (node.type !== undefined) {
      const t = node.type;
      types = Array.isArray(t) ? t.map(String) : [String(t)];
      if (
        (!Array.isArray(t) && typeof t !== "string") ||
        (Array.isArray(t) && !t.every((x) => typeof x === "string"))
      ) {
        invalid(`${path}/type`, "type must be a string or an array of strings");
      }
      for (const x of types) {
        if (!TYPES.has(x)) invalid(`${path}/type`, `unknown type ${JSON.stringify(x)}`);
      }
    } else if (
      ["properties", "additionalProperties", "unevaluatedProperties"].some((k) => k in node)
    ) {
      types = ["object"];
    } else if (["items", "prefixItems", "unevaluatedItems"].some((k) => k in node)) {
      types = ["array"];
    }
    const specific = (list: string[], type: string[]) => {
      const present = list.filter((k) => k in node);
      if (present.length > 0 && !(types ?? []).some((t) => type.includes(t))) {
        unsupported(
          `${path}/${present[0]}`,
          `${present.join(", ")} without "type": ${type.join(" or ")} would not be enforced`,
        );
      }
      return present.length > 0 && (types ?? []).some((t) => type.includes(t));
    };
    if (specific(NUMERIC, ["integer", "number"])) this.#numeric(node, path);
    if (specific(STRING, ["string"])) this.#string(node, path);
    if (specific(ARRAY, ["array"])) this.#array(node, path, depth);
    if (specific(OBJECT, ["object"])) this.#object(node, path, depth);
  }

  #numeric(node: Json, path: string): void {
    for (const k of NUMERIC) {
      const v = node[k];
      if (v === undefined) continue;
      if (typeof v === "boolean") {
        unsupported(
          `${path}/${k}`,
          `boolean ${k} (draft 4) is not supported; give the bound as a number`,
        );
      }
      if (typeof v !== "number" || !Number.isFinite(v)) {
        invalid(`${path}/${k}`, `${k} must be a number`);
      }
      if (Math.abs(v) > MAX_BOUND) {
        unsupported(`${path}/${k}`, `${k} beyond ±${MAX_BOUND} is not supported`);
      }
    }
  }

  #string(node: Json, path: string): void {
    this.#count(node, "minLength", path);
    this.#count(node, "maxLength", path);
    if (
      typeof node.minLength === "number" && typeof node.maxLength === "number" &&
      node.minLength > node.maxLength
    ) {
      invalid(`${path}/minLength`, "minLength is greater than maxLength");
    }
    if (node.pattern !== undefined) {
      if (typeof node.pattern !== "string") invalid(`${path}/pattern`, "pattern must be a string");
      const other = ["minLength", "maxLength", "format"].filter((k) => k in node);
      if (other.length > 0) {
        unsupported(
          `${path}/${other[0]}`,
          `${other.join(", ")} next to pattern would be ignored; fold it into the pattern`,
        );
      }
      if (UNSAFE_PATTERN.test(node.pattern)) {
        unsupported(
          `${path}/pattern`,
          "patterns with quotes, escaped backslashes or control-character escapes (\\n, \\x.., \\u..) are not supported",
        );
      }
    }
    if (node.format !== undefined) {
      if (typeof node.format !== "string") invalid(`${path}/format`, "format must be a string");
      if (!SUPPORTED_FORMATS.has(node.format)) {
        this.warnings.push(
          `${path}/format: format ${JSON.stringify(node.format)} is not enforced (an annotation)`,
        );
      } else {
        const other = ["minLength", "maxLength"].filter((k) => k in node);
        if (other.length > 0) {
          unsupported(`${path}/${other[0]}`, `${other.join(", ")} next to format would be ignored`);
        }
      }
    }
  }

  #array(node: Json, path: string, depth: number): void {
    if (Array.isArray(node.items)) {
      unsupported(
        `${path}/items`,
        "array-form items (draft 4 tuples) is not supported; use prefixItems",
      );
    }
    if (node.uniqueItems === true) {
      unsupported(`${path}/uniqueItems`, "uniqueItems is not enforced by the grammar engine");
    }
    this.#count(node, "minItems", path);
    this.#count(node, "maxItems", path);
    if (
      typeof node.minItems === "number" && typeof node.maxItems === "number" &&
      node.minItems > node.maxItems
    ) {
      invalid(`${path}/minItems`, "minItems is greater than maxItems");
    }
    if (node.items !== undefined) this.#sub(node.items, `${path}/items`, depth + 1, true);
    this.#subs(node, "prefixItems", path, depth, true);
    if (node.unevaluatedItems !== undefined) {
      this.#sub(node.unevaluatedItems, `${path}/unevaluatedItems`, depth + 1, true);
    }
  }

  #object(node: Json, path: string, depth: number): void {
    const props = node.properties;
    if (props !== undefined) {
      if (!isObject(props)) invalid(`${path}/properties`, "properties must be an object");
      if (Object.keys(props).length > this.#limits.maxProperties) {
        tooLarge(
          `${path}/properties`,
          `${
            Object.keys(props).length
          } properties, over the limit of ${this.#limits.maxProperties}`,
        );
      }
    }
    if (isObject(props)) {
      for (const k of Object.keys(props)) {
        // xgrammar writes property names into the grammar without JSON escaping.
        if ([...k].some((ch) => ch === '"' || ch === "\\" || ch < " ")) {
          unsupported(
            `${path}/properties/${escapePointer(k)}`,
            `the property name ${JSON.stringify(k)} needs JSON escapes, which are not supported`,
          );
        }
      }
    }
    this.#subs(node, "properties", path, depth, false);
    this.#subs(node, "patternProperties", path, depth, false);
    if (node.required !== undefined) {
      const req = node.required;
      if (!Array.isArray(req) || !req.every((r) => typeof r === "string")) {
        invalid(`${path}/required`, "required must be an array of strings");
      }
      for (const r of req as string[]) {
        if (!isObject(props) || !(r in props)) {
          unsupported(
            `${path}/required`,
            `required property ${
              JSON.stringify(r)
            } is not in properties, so the grammar could never produce it`,
          );
        }
      }
    }
    for (const k of ["additionalProperties", "unevaluatedProperties", "propertyNames"]) {
      if (node[k] !== undefined) this.#sub(node[k], `${path}/${k}`, depth + 1, true);
    }
    this.#count(node, "minProperties", path);
    this.#count(node, "maxProperties", path);
  }

  run(): void {
    this.#sub(this.#root, "", 0);
  }
}

/**
 * Audits a schema: throws GrammarError for what the grammar would not enforce or what is
 * malformed or too large, returns warnings for what is enforced more loosely or ignored by
 * validators as well.
 */
export function auditSchema(
  schema: JsonSchema,
  limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS,
): string[] {
  const auditor = new Auditor(schema, limits);
  auditor.run();
  return auditor.warnings;
}
