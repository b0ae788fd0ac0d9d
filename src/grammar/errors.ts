/**
 * The one error type of structured output: a grammar spec that cannot be used. Its `code`
 * says what kind of problem it is (the HTTP layer answers 400 with it), its message names
 * the problem, and `path` points into the JSON schema where there is one.
 * @module
 */

/** What is wrong with a grammar spec. */
export type GrammarErrorCode =
  /** The spec's shape is wrong (unknown type, missing field, wrong field type). */
  | "invalid_spec"
  /** A JSON schema that xgrammar rejects (malformed keyword values, bad `$ref`, ...). */
  | "invalid_schema"
  /** A JSON-schema keyword or value that would not be enforced (see schema_audit.ts). */
  | "unsupported_schema"
  /** A regular expression (a `regex` spec or a schema `pattern`) that cannot be compiled. */
  | "invalid_regex"
  /** An EBNF grammar that does not parse. */
  | "invalid_grammar"
  /** Over a size limit that bounds compile time (see GrammarLimits). */
  | "spec_too_large";

/** A grammar spec that cannot be compiled, with a code and a message naming the problem. */
export class GrammarError extends Error {
  /** The kind of problem. */
  readonly code: GrammarErrorCode;
  /** JSON pointer into the schema (e.g. `/properties/age/multipleOf`), when there is one. */
  readonly path: string | null;
  /** The request parameter at fault (e.g. `response_format`), when known. */
  readonly param: string | null;

  constructor(
    code: GrammarErrorCode,
    message: string,
    options: ErrorOptions & { path?: string | null; param?: string | null } = {},
  ) {
    super(message, options);
    this.name = "GrammarError";
    this.code = code;
    this.path = options.path ?? null;
    this.param = options.param ?? null;
  }
}
