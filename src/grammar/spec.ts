/**
 * What a request constrains its output to: a {@link GrammarSpec}. The OpenAI surface maps
 * `response_format`, vLLM's `guided_*` extras and `tools`/`tool_choice` onto it; the compiler
 * caches compiled grammars by {@link specKey}.
 * @module
 */
import type { GrammarSpec, JsonSchema, ToolCallSpec, ToolFunction } from "../types/api.ts";
import { GrammarError } from "./errors.ts";

// The spec types are request data, declared with the request options in types/api.ts.
export type { GrammarSpec, JsonSchema, ToolCallSpec } from "../types/api.ts";

/** Which tool calls a {@link ToolCallSpec} allows (OpenAI's `tool_choice` minus "none"). */
export type ToolChoice = ToolCallSpec["choice"];

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fail(message: string): never {
  throw new GrammarError("invalid_spec", message);
}

function nonEmptyString(v: unknown, what: string): string {
  if (typeof v !== "string" || v.length === 0) fail(`${what} must be a non-empty string`);
  return v;
}

const FUNCTION_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Why a tool's `parameters` cannot be used, or null: it must be a JSON schema object whose
 * `type`, when given, is "object" (a call's arguments are an object; OpenAI refuses the rest).
 */
export function toolParametersProblem(parameters: unknown): string | null {
  if (!isObject(parameters)) return "parameters must be a JSON schema object";
  if (parameters.type !== undefined && parameters.type !== "object") {
    return `parameters must be a JSON schema of type "object", got type ${JSON.stringify(parameters.type)}`;
  }
  return null;
}

function checkTools(tools: unknown): ToolFunction[] {
  if (!Array.isArray(tools) || tools.length === 0) fail("tools must be a non-empty array");
  const seen = new Set<string>();
  return tools.map((t, i) => {
    if (!isObject(t)) fail(`tools[${i}] must be an object`);
    const name = nonEmptyString(t.name, `tools[${i}].name`);
    if (!FUNCTION_NAME.test(name)) {
      fail(`tools[${i}].name ${JSON.stringify(name)} must be 1-64 of a-z, A-Z, 0-9, _, ., -`);
    }
    if (seen.has(name)) fail(`tools[${i}].name ${JSON.stringify(name)} is not unique`);
    seen.add(name);
    if (t.description !== undefined && typeof t.description !== "string") {
      fail(`tools[${i}].description must be a string`);
    }
    const problem = t.parameters === undefined ? null : toolParametersProblem(t.parameters);
    if (problem) fail(`tools[${i}].${problem}`);
    const out: ToolFunction = { name };
    if (t.description !== undefined) out.description = t.description as string;
    if (t.parameters !== undefined) out.parameters = t.parameters as Json;
    return out;
  });
}

/**
 * Checks a spec's shape and returns it normalized (fields in a fixed order, defaults made
 * explicit, unknown fields dropped), or throws GrammarError "invalid_spec".
 */
export function normalizeSpec(spec: unknown): GrammarSpec {
  if (!isObject(spec)) fail("a grammar spec must be an object");
  switch (spec.type) {
    case "json_object":
      return { type: "json_object" };
    case "json_schema": {
      const s = spec.schema;
      if (!isObject(s) && s !== true) fail("json_schema.schema must be a JSON schema object");
      if (spec.strict !== undefined && typeof spec.strict !== "boolean") {
        fail("json_schema.strict must be a boolean");
      }
      return { type: "json_schema", schema: s as JsonSchema, strict: spec.strict !== false };
    }
    case "regex":
      return { type: "regex", pattern: nonEmptyString(spec.pattern, "regex.pattern") };
    case "choice": {
      const c = spec.choices;
      if (
        !Array.isArray(c) || c.length === 0 ||
        !c.every((x) => typeof x === "string" && x.length > 0)
      ) {
        fail("choice.choices must be a non-empty array of non-empty strings");
      }
      return { type: "choice", choices: [...c] as string[] };
    }
    case "ebnf":
      return { type: "ebnf", grammar: nonEmptyString(spec.grammar, "ebnf.grammar") };
    case "tool_calls": {
      const format = spec.format;
      if (format !== "hermes" && format !== "llama3_json" && format !== "mistral" && format !== "harmony") {
        fail(
          `tool_calls.format must be "hermes", "llama3_json", "mistral" or "harmony", got ${
            JSON.stringify(format)
          }`,
        );
      }
      const tools = checkTools(spec.tools);
      const c = spec.choice;
      let choice: ToolChoice;
      if (c === "auto" || c === "required") choice = c;
      else if (isObject(c) && typeof c.name === "string") {
        if (!tools.some((t) => t.name === c.name)) {
          fail(`tool_choice names ${JSON.stringify(c.name)}, which is not in tools`);
        }
        choice = { name: c.name };
      } else fail(`tool_calls.choice must be "auto", "required" or {"name": ...}`);
      if (spec.parallel !== undefined && typeof spec.parallel !== "boolean") {
        fail("tool_calls.parallel must be a boolean");
      }
      return { type: "tool_calls", format, tools, choice, parallel: spec.parallel !== false };
    }
    default:
      fail(`unknown grammar spec type ${JSON.stringify(spec.type)}`);
  }
}

/**
 * The cache key of a normalized spec: its JSON. Key order inside a schema is kept, not
 * sorted, because xgrammar emits properties in schema order: two schemas that differ only in
 * order are different grammars.
 */
export function specKey(spec: GrammarSpec): string {
  return JSON.stringify(spec);
}
