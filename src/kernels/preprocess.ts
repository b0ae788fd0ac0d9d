/**
 * The WGSL preprocessor: `#if NAME` / `#ifnot NAME` / `#else` / `#endif`, `#include NAME` and
 * `{{NAME}}` substitution. Booleans drive the conditionals, numbers fill the substitutions.
 * @module
 */

/** Values a kernel is specialised on. Booleans drive `#if`, numbers fill `{{NAME}}`. */
export type Defines = Record<string, number | boolean>;

/** Expands `#if`/`#else`/`#endif`, `#include` and `{{NAME}}` in a WGSL source. */
export function preprocess(
  source: string,
  defines: Defines,
  include: (name: string) => string,
): string {
  const out: string[] = [];
  const stack: { active: boolean; taken: boolean }[] = [];
  const active = () => stack.every((s) => s.active);
  for (const line of source.split("\n")) {
    const trimmed = line.trim();
    const m = /^#(if|ifnot|else|endif|include)\b\s*(\S*)/.exec(trimmed);
    if (m) {
      const [, directive, name] = m;
      if (directive === "if" || directive === "ifnot") {
        const value = Boolean(defines[name]);
        const cond = directive === "if" ? value : !value;
        stack.push({ active: cond, taken: cond });
      } else if (directive === "else") {
        const top = stack.at(-1);
        if (!top) throw new Error("#else without #if");
        top.active = !top.taken;
      } else if (directive === "endif") {
        if (!stack.pop()) throw new Error("#endif without #if");
      } else if (active()) {
        out.push(preprocess(include(name), defines, include));
      }
      continue;
    }
    if (!active()) continue;
    out.push(line.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
      const v = defines[name];
      if (v === undefined) throw new Error(`undefined {{${name}}}`);
      return typeof v === "number" && !Number.isInteger(v) ? v.toExponential(9) : String(Number(v));
    }));
  }
  if (stack.length) throw new Error("unterminated #if");
  return out.join("\n");
}
