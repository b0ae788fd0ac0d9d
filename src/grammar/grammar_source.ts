/**
 * A normalized spec to an xgrammar CompiledGrammar on a given instance: the one place that
 * knows which xgrammar entry point each spec type uses. Used by the compile probe Worker and
 * by the compiler on the engine's thread, so both compile exactly the same grammar.
 * @module
 */
import type * as XG from "@mlc-ai/web-xgrammar";
import { ebnfString, schemaToEbnf } from "./schema_compile.ts";
import type { GrammarSpec } from "./spec.ts";
import { toolStructuralTag } from "./tool_grammar.ts";
import type { XGrammarInstance } from "./xgrammar.ts";

/** A schema for "any JSON object" (OpenAI's json_object). */
const ANY_OBJECT = { type: "object" };

/** Builds the spec's grammar and compiles it against the compiler's vocabulary. */
export async function compileSpec(
  xg: XGrammarInstance,
  compiler: XG.GrammarCompiler,
  spec: GrammarSpec,
): Promise<XG.CompiledGrammar> {
  switch (spec.type) {
    case "json_object":
      return await compiler.compileGrammar(await schemaToEbnf(xg, ANY_OBJECT, true));
    case "json_schema":
      return await compiler.compileGrammar(
        await schemaToEbnf(xg, spec.schema, spec.strict !== false),
      );
    case "regex":
      return await compiler.compileStructuralTag({
        type: "structural_tag",
        format: { type: "regex", pattern: spec.pattern },
      });
    case "choice":
      return await compiler.compileGrammar(`root ::= ${spec.choices.map(ebnfString).join(" | ")}`);
    case "ebnf":
      return await compiler.compileGrammar(spec.grammar);
    case "tool_calls": {
      const params = new Map<string, string>();
      for (const t of spec.tools) {
        params.set(t.name, await schemaToEbnf(xg, t.parameters ?? ANY_OBJECT, true));
      }
      return await compiler.compileStructuralTag(toolStructuralTag(spec, params));
    }
  }
}
