/**
 * The grammar of `tool_choice`, as an xgrammar structural tag per format:
 * - "required": one or more calls and nothing else (exactly one without parallel calls);
 * - a named function: exactly one call of that function;
 * - "auto": free text in which a call, once its opening text appears (`<tool_call>`,
 *   `[TOOL_CALLS]`, `{"name": ` for llama3_json), must be complete and valid; text may follow.
 *   This is xgrammar's triggered tags: the mask allows everything until a trigger, so a row in
 *   auto mode costs a mask fill per step but is rarely restricted.
 * Each call is a tag whose begin text fixes the function name and whose content is the EBNF of
 * that function's parameters schema (schema_compile.ts), so arguments always validate.
 * @module
 */
import type { ToolCallSpec } from "./spec.ts";
import { FORMAT_SYNTAX } from "./tool_format.ts";

/** A structural-tag format (xgrammar's JSON shape). */
export type StructuralFormat = Record<string, unknown>;

/** The text before a call's arguments and after them, per format. */
function callText(spec: ToolCallSpec, name: string): { begin: string; end: string } {
  const key = FORMAT_SYNTAX[spec.format].argumentsKey;
  const head = `{"name": ${JSON.stringify(name)}, "${key}": `;
  if (spec.format === "hermes") return { begin: `<tool_call>\n${head}`, end: "}\n</tool_call>" };
  // harmony: the recipient names the function; the body is the arguments object alone.
  if (spec.format === "harmony") return { begin: `<|channel|>commentary to=functions.${name} <|constrain|>json<|message|>`, end: "<|call|>" };
  return { begin: head, end: "}" };
}

/** Separator between parallel calls. */
const SEPARATOR = { hermes: "\n", llama3_json: "; ", mistral: ", ", harmony: "<|start|>assistant" } as const;

/**
 * The structural tag for a tool-call spec, given the parameters EBNF of each tool (by name;
 * every tool of the spec must have one).
 */
export function toolStructuralTag(
  spec: ToolCallSpec,
  parametersEbnf: ReadonlyMap<string, string>,
): { type: "structural_tag"; format: StructuralFormat } {
  const named = typeof spec.choice === "object" ? spec.choice.name : null;
  const tools = named === null ? spec.tools : spec.tools.filter((t) => t.name === named);
  const tags = tools.map((t) => {
    const { begin, end } = callText(spec, t.name);
    return {
      type: "tag",
      begin,
      content: { type: "grammar", grammar: parametersEbnf.get(t.name)! },
      end,
    };
  });
  const single = named !== null || spec.parallel === false;
  const calls: StructuralFormat = {
    type: "tags_with_separator",
    tags,
    separator: SEPARATOR[spec.format],
    at_least_one: true,
    stop_after_first: single,
  };
  // Mistral's calls are one JSON array after the marker.
  const section: StructuralFormat = spec.format === "mistral"
    ? { type: "tag", begin: "[TOOL_CALLS][", content: calls, end: "]" }
    : calls;
  if (spec.choice !== "auto") return { type: "structural_tag", format: section };
  const trigger = spec.format === "hermes"
    ? "<tool_call>"
    : spec.format === "mistral"
    ? "[TOOL_CALLS]"
    : spec.format === "harmony"
    ? "<|channel|>commentary to=functions."
    : '{"name": ';
  // In auto mode each trigger opens one call (hermes, llama3_json) or one call list (mistral).
  const autoTags = spec.format === "mistral" ? [section] : tags;
  return {
    type: "structural_tag",
    format: {
      type: "triggered_tags",
      triggers: [trigger],
      tags: autoTags,
      stop_after_first: spec.parallel === false,
    },
  };
}
