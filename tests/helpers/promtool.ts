/**
 * `promtool check metrics` on exposition text. vLLM's names contain ':' (which promtool's
 * linter flags: colons are meant for recording rules), and the ecosystem reads them as they
 * are, so that one lint is expected for `vllm:` series and nothing else.
 */
import { run } from "./platform.ts";

/** promtool's exit code and every problem it reported other than the colon lint on vllm: names. */
export async function promtoolProblems(text: string): Promise<{ code: number; problems: string[] }> {
  const out = await run("promtool", ["check", "metrics"], { stdin: text });
  const lines = `${out.stdout}\n${out.stderr}`.split("\n").map((l) => l.trim()).filter(Boolean);
  const problems = lines.filter((l) => !/^vllm:[a-z0-9_]+ metric names should not contain ':'$/.test(l));
  // Exit 3 is "lint problems found"; anything else non-zero is a parse failure.
  return { code: out.code, problems: out.code === 0 || out.code === 3 ? problems : [`exit ${out.code}`, ...problems] };
}
