/**
 * OpenAI request fields to a grammar: `response_format` (`json_object`, `json_schema`), vLLM's
 * `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`, and `tools` /
 * `tool_choice` / `parallel_tool_calls`. Shapes are checked here (GrammarError
 * "invalid_spec" with the parameter's name); the schema itself is checked when compiled.
 *
 * Decisions: at most one output constraint per request; `tool_choice` "required" or a named
 * function is itself a constraint, so it cannot be combined with another one. "auto" is not
 * constrained unless `constrainAuto` is set: the model writes freely and its calls are parsed
 * afterwards (as vLLM does), so the row keeps the GPU-resident multi-step decode; with
 * `constrainAuto` a started call must be valid, at the price of a mask every step.
 * @module
 */
import type { ResponseFormat, ToolChoiceOption } from "../types/api.ts";
import { GrammarError } from "./errors.ts";
import { type GrammarSpec, type JsonSchema, type ToolChoice, toolParametersProblem } from "./spec.ts";
import type { ToolCallFormat, ToolFunction } from "./tool_format.ts";

/** OpenAI's `tools[]` entry. */
export interface OpenAITool {
  type: "function";
  function: ToolFunction;
}

/** What a request asks for, ready for the engine and the chat template. */
export interface StructuredOutput {
  /** The grammar to enforce, or null. */
  spec: GrammarSpec | null;
  /** Tools to pass to the chat template (absent: none). */
  tools?: OpenAITool[];
  /** The effective tool choice ("none" without tools). */
  toolChoice: "none" | ToolChoice;
  /** Whether to parse tool calls out of the output (tools offered and choice not "none"). */
  parseToolCalls: boolean;
}

/** Options of {@link structuredOutputOf}. */
export interface StructuredOutputOptions {
  /** The model's tool-call format (tool_format.ts); null when it has none. */
  toolFormat: ToolCallFormat | null;
  /** Enforce valid calls in "auto" mode too (default false, see the module doc). */
  constrainAuto?: boolean;
  /** Which endpoint: tools only exist on chat. */
  endpoint: "chat" | "completion";
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const present = (b: Json, k: string) => b[k] !== undefined && b[k] !== null;

function bad(param: string, message: string): never {
  throw new GrammarError("invalid_spec", message, { param });
}

function schemaOf(v: unknown, param: string): JsonSchema {
  if (typeof v === "string") {
    try {
      v = JSON.parse(v);
    } catch (e) {
      bad(param, `${param} is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!isObject(v) && v !== true) bad(param, `${param} must be a JSON schema object`);
  return v as JsonSchema;
}

/** The output constraint of `response_format` or a `guided_*` field, or null. */
function responseSpec(body: Json): { spec: GrammarSpec; param: string } | null {
  const found: { spec: GrammarSpec; param: string }[] = [];
  if (present(body, "response_format")) {
    const rf = body.response_format;
    if (!isObject(rf)) bad("response_format", "response_format must be an object");
    if (rf.type === "json_object") {
      found.push({ spec: { type: "json_object" }, param: "response_format" });
    } else if (rf.type === "json_schema") {
      const js = rf.json_schema;
      if (!isObject(js)) bad("response_format", "response_format.json_schema must be an object");
      if (typeof js.name !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(js.name)) {
        bad(
          "response_format",
          "response_format.json_schema.name must be 1-64 of a-z, A-Z, 0-9, _ and -",
        );
      }
      if (js.strict !== undefined && js.strict !== null && typeof js.strict !== "boolean") {
        bad("response_format", "response_format.json_schema.strict must be a boolean");
      }
      const schema = js.schema === undefined
        ? { type: "object" }
        : schemaOf(js.schema, "response_format.json_schema.schema");
      found.push({
        spec: { type: "json_schema", schema, strict: js.strict !== false },
        param: "response_format",
      });
    } else if (rf.type !== "text") {
      bad(
        "response_format",
        `response_format.type must be "text", "json_object" or "json_schema", got ${
          JSON.stringify(rf.type)
        }`,
      );
    }
  }
  if (present(body, "guided_json")) {
    found.push({
      spec: {
        type: "json_schema",
        schema: schemaOf(body.guided_json, "guided_json"),
        strict: true,
      },
      param: "guided_json",
    });
  }
  if (present(body, "guided_regex")) {
    if (typeof body.guided_regex !== "string") bad("guided_regex", "guided_regex must be a string");
    found.push({ spec: { type: "regex", pattern: body.guided_regex }, param: "guided_regex" });
  }
  if (present(body, "guided_choice")) {
    const c = body.guided_choice;
    if (!Array.isArray(c) || !c.every((x) => typeof x === "string")) {
      bad("guided_choice", "guided_choice must be an array of strings");
    }
    found.push({ spec: { type: "choice", choices: c as string[] }, param: "guided_choice" });
  }
  if (present(body, "guided_grammar")) {
    if (typeof body.guided_grammar !== "string") {
      bad("guided_grammar", "guided_grammar must be a string");
    }
    found.push({ spec: { type: "ebnf", grammar: body.guided_grammar }, param: "guided_grammar" });
  }
  if (found.length > 1) {
    bad(
      found[1].param,
      `only one of response_format and guided_* may constrain the output (got ${
        found.map((f) => f.param).join(", ")
      })`,
    );
  }
  return found[0] ?? null;
}

function toolsOf(body: Json): OpenAITool[] | undefined {
  if (!present(body, "tools")) return undefined;
  const tools = body.tools;
  if (!Array.isArray(tools)) bad("tools", "tools must be an array");
  return tools.map((t, i) => {
    if (!isObject(t) || t.type !== "function" || !isObject(t.function)) {
      bad(`tools[${i}]`, `tools[${i}] must be {"type": "function", "function": {...}}`);
    }
    const f = t.function;
    if (typeof f.name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(f.name)) {
      bad(
        `tools[${i}].function.name`,
        `tools[${i}].function.name must be 1-64 of a-z, A-Z, 0-9, _, . and -`,
      );
    }
    if (f.description !== undefined && typeof f.description !== "string") {
      bad(`tools[${i}].function.description`, "description must be a string");
    }
    const problem = f.parameters === undefined ? null : toolParametersProblem(f.parameters);
    if (problem) bad(`tools[${i}].function.parameters`, problem);
    return { type: "function", function: f as unknown as ToolFunction };
  });
}

function toolChoiceOf(body: Json, tools: OpenAITool[] | undefined): "none" | ToolChoice {
  if (!present(body, "tool_choice")) return tools && tools.length > 0 ? "auto" : "none";
  const c = body.tool_choice;
  if (c === "none" || c === "auto" || c === "required") {
    if (c !== "none" && !(tools && tools.length > 0)) {
      bad("tool_choice", `tool_choice "${c}" needs tools`);
    }
    return c;
  }
  if (
    isObject(c) && c.type === "function" && isObject(c.function) &&
    typeof c.function.name === "string"
  ) {
    const name = c.function.name;
    if (!tools?.some((t) => t.function.name === name)) {
      bad("tool_choice", `tool_choice names ${JSON.stringify(name)}, which is not in tools`);
    }
    return { name };
  }
  bad(
    "tool_choice",
    `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`,
  );
}

/** A request body's structured-output fields as the engine's request options. */
export interface StructuredOptions {
  responseFormat?: ResponseFormat;
  tools?: ToolFunction[];
  toolChoice?: ToolChoiceOption;
  parallelToolCalls?: boolean;
  /** Which body field `responseFormat` came from (`response_format` or a `guided_*`). */
  responseParam?: string;
  /** The tools in OpenAI's shape (what the chat template is given). */
  openaiTools?: OpenAITool[];
}

/**
 * Reads the structured-output fields of a request body as request options (shapes checked
 * here, with the parameter named; the combination and the grammar itself are checked by the
 * engine's request validation).
 */
export function structuredOptionsOf(
  body: Json,
  endpoint: "chat" | "completion",
): StructuredOptions {
  const response = responseSpec(body);
  const out: StructuredOptions = {};
  if (response) {
    out.responseFormat = response.spec as ResponseFormat;
    out.responseParam = response.param;
  }
  if (endpoint === "completion") {
    for (const k of ["tools", "tool_choice", "parallel_tool_calls"]) {
      if (present(body, k)) bad(k, `${k} is only supported on /v1/chat/completions`);
    }
    return out;
  }
  const tools = toolsOf(body);
  if (tools) {
    out.openaiTools = tools;
    out.tools = tools.map((t) => t.function);
  }
  if (present(body, "tool_choice")) out.toolChoice = toolChoiceOf(body, tools);
  if (present(body, "parallel_tool_calls")) {
    if (typeof body.parallel_tool_calls !== "boolean") {
      bad("parallel_tool_calls", "parallel_tool_calls must be a boolean");
    }
    out.parallelToolCalls = body.parallel_tool_calls;
  }
  return out;
}

/** Reads the structured-output fields of a request body. */
export function structuredOutputOf(body: Json, options: StructuredOutputOptions): StructuredOutput {
  const response = responseSpec(body);
  if (options.endpoint === "completion") {
    for (const k of ["tools", "tool_choice", "parallel_tool_calls"]) {
      if (present(body, k)) bad(k, `${k} is only supported on /v1/chat/completions`);
    }
    return { spec: response?.spec ?? null, toolChoice: "none", parseToolCalls: false };
  }
  const tools = toolsOf(body);
  const toolChoice = toolChoiceOf(body, tools);
  if (present(body, "parallel_tool_calls") && typeof body.parallel_tool_calls !== "boolean") {
    bad("parallel_tool_calls", "parallel_tool_calls must be a boolean");
  }
  const parallel = body.parallel_tool_calls !== false;
  const calls = toolChoice !== "none";
  if (calls && options.toolFormat === null) {
    bad(
      "tools",
      "this model's chat template has no tool-call format this server knows (hermes, llama3_json, mistral, harmony)",
    );
  }
  const forced = toolChoice === "required" || typeof toolChoice === "object";
  if (forced && response) {
    bad(
      "tool_choice",
      `tool_choice ${JSON.stringify(toolChoice)} cannot be combined with ${response.param}`,
    );
  }
  let spec: GrammarSpec | null = response?.spec ?? null;
  if (calls && (forced || (options.constrainAuto && !response))) {
    spec = {
      type: "tool_calls",
      format: options.toolFormat!,
      tools: tools!.map((t) => t.function),
      choice: toolChoice,
      parallel,
    };
  }
  return { spec, tools, toolChoice, parseToolCalls: calls };
}
