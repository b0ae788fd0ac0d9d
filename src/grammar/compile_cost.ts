/**
 * A rough estimate of what a spec costs to compile, from its text alone, before any compile:
 * it routes specs likely to be slow straight to the slow compile lane (compile_pool.ts), so
 * they do not hold the fast lane for its budget first. xgrammar's compile time grows with the
 * grammar's positions: bounded repetitions expand (`maxLength`, `maxItems` times their item),
 * optional properties pair up, alternatives add. Units are arbitrary; only the threshold
 * ({@link SLOW_COST}) matters, and a wrong guess costs at most one fast-lane budget.
 * @module
 */
import type { GrammarSpec } from "./spec.ts";

/** Estimates above this go to the slow lane. */
export const SLOW_COST = 4000;

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0);

/** Cost of a schema node; `depth` bounds the walk (schemas are audited for depth already). */
function schemaCost(node: unknown, depth = 0): number {
  if (!isObject(node) || depth > 64) return 1;
  let cost = 1;
  const sub = (v: unknown) => schemaCost(v, depth + 1);
  if (typeof node.pattern === "string") cost += node.pattern.length;
  cost += num(node.maxLength) + num(node.minLength);
  if (node.items !== undefined) {
    // A bounded array repeats its item's grammar up to maxItems times; an unbounded one loops.
    cost += Math.max(1, num(node.maxItems), num(node.minItems)) * sub(node.items);
  }
  for (const key of ["prefixItems", "anyOf", "oneOf", "allOf"]) {
    if (Array.isArray(node[key])) for (const s of node[key] as unknown[]) cost += sub(s);
  }
  for (const key of ["$defs", "definitions", "patternProperties"]) {
    if (isObject(node[key])) for (const s of Object.values(node[key] as Json)) cost += sub(s);
  }
  for (const key of ["additionalProperties", "unevaluatedProperties", "propertyNames"]) {
    if (isObject(node[key])) cost += sub(node[key]);
  }
  if (isObject(node.properties)) {
    const names = Object.keys(node.properties);
    const required = new Set(Array.isArray(node.required) ? node.required : []);
    const optional = names.filter((n) => !required.has(n)).length;
    for (const s of Object.values(node.properties as Json)) cost += sub(s);
    // Optional properties: a rule per suffix of the remaining ones.
    cost += optional * optional;
  }
  if (Array.isArray(node.enum)) cost += JSON.stringify(node.enum).length;
  return cost;
}

/** The estimated compile cost of a normalized spec. */
export function compileCost(spec: GrammarSpec): number {
  switch (spec.type) {
    case "json_object":
      return 1;
    case "json_schema":
      return schemaCost(spec.schema);
    case "regex":
      return spec.pattern.length + repetitions(spec.pattern);
    case "ebnf":
      return spec.grammar.length + repetitions(spec.grammar);
    case "choice":
      return spec.choices.reduce((n, c) => n + c.length, 0);
    case "tool_calls":
      return spec.tools.reduce((n, t) => n + schemaCost(t.parameters ?? {}), 1);
  }
}

/** Bounded repetitions `{m,n}` in a regex or grammar: each expands to up to n copies. */
function repetitions(text: string): number {
  let cost = 0;
  for (const m of text.matchAll(/\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}/g)) {
    cost += Math.max(Number(m[1]), Number(m[2] || 0));
  }
  return cost;
}
