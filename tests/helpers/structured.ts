/**
 * Shared cases of the structured-output tests: a set of JSON schemas (nested objects, arrays,
 * enums, required fields, numbers with ranges, strings with patterns), tools, and the checks
 * that an output parses and validates (ajv).
 * @module
 */
import type { ToolFunction } from "../../src/types/api.ts";
import { validator } from "./grammar.ts";
import { assert } from "./assert.ts";

/** Schemas whose every valid output is short (bounded strings, arrays and numbers). */
export const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: "object",
    properties: {
      name: { type: "string", minLength: 1, maxLength: 10 },
      age: { type: "integer", minimum: 0, maximum: 120 },
      nickname: { type: "string", maxLength: 6 },
    },
    required: ["name", "age"],
    additionalProperties: false,
  },
  nested: {
    type: "object",
    properties: {
      user: {
        type: "object",
        properties: {
          id: { type: "integer", minimum: 1, maximum: 9999 },
          tags: { type: "array", items: { type: "string", maxLength: 5 }, minItems: 1, maxItems: 3 },
        },
        required: ["id", "tags"],
        additionalProperties: false,
      },
      active: { type: "boolean" },
    },
    required: ["user", "active"],
    additionalProperties: false,
  },
  enums: {
    type: "object",
    properties: {
      color: { enum: ["red", "green", "blue"] },
      size: { type: "string", enum: ["S", "M", "L"] },
      count: { type: "integer", enum: [1, 2, 3] },
    },
    required: ["color", "size", "count"],
    additionalProperties: false,
  },
  numbers: {
    type: "object",
    properties: {
      temp: { type: "number", minimum: -40, maximum: 50 },
      ratio: { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 },
      score: { type: "integer", minimum: -5, maximum: 5 },
    },
    required: ["temp", "ratio", "score"],
    additionalProperties: false,
  },
  patterns: {
    type: "object",
    properties: {
      code: { type: "string", pattern: "^[A-Z]{3}-[0-9]{2}$" },
      month: { type: "string", pattern: "^20[0-9]{2}-(0[1-9]|1[0-2])$" },
    },
    required: ["code", "month"],
    additionalProperties: false,
  },
  points: {
    type: "array",
    items: {
      type: "object",
      properties: { x: { type: "integer", minimum: 0, maximum: 9 }, y: { type: "integer", minimum: 0, maximum: 9 } },
      required: ["x", "y"],
      additionalProperties: false,
    },
    minItems: 1,
    maxItems: 3,
  },
};

/** Tools with argument schemas of every kind above. */
export const TOOLS: ToolFunction[] = [
  {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 1, maxLength: 8 },
        unit: { type: "string", enum: ["c", "f"] },
      },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
  {
    name: "add",
    description: "Adds two integers",
    parameters: {
      type: "object",
      properties: { a: { type: "integer", minimum: -99, maximum: 99 }, b: { type: "integer", minimum: -99, maximum: 99 } },
      required: ["a", "b"],
      additionalProperties: false,
    },
  },
];

/** Parses `text` as JSON and validates it against `schema`; throws with the reason when not. */
export function assertValidJson(text: string, schema: unknown, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: not JSON (${(e as Error).message}): ${JSON.stringify(text)}`);
  }
  const valid = validator(schema);
  assert(valid(value), `${what}: ${text} fails its schema: ${JSON.stringify(valid.errors)}`);
  return value;
}

/** Checks a tool call against the tools: known name, arguments valid against its parameters. */
export function assertValidCall(call: { name: string; arguments: string }, tools: ToolFunction[], what: string): void {
  const tool = tools.find((t) => t.name === call.name);
  assert(tool, `${what}: unknown function ${call.name}`);
  assertValidJson(call.arguments, tool.parameters ?? { type: "object" }, `${what} ${call.name} arguments`);
}
