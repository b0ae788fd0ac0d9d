/**
 * llama.cpp (node-llama-cpp, its prebuilt CPU binary) as a second implementation: loads a
 * GGUF file and prints, as JSON, its greedy continuation of each prompt (token ids in,
 * token ids out), or with `--logprobs` its log-probabilities of every vocabulary entry at
 * given positions of given sequences (teacher-forced: the rows a logit comparison needs,
 * since log p equals the logits up to one constant per row). A script run under Deno
 * (deno.json imports node-llama-cpp), so that the test calling it runs the same way under
 * both runtimes.
 * Usage: deno run -A llama_cpp_greedy.ts FILE.gguf[,FILE.gguf...] TOKENS PROMPTS_JSON
 *   prints one list of continuations per file;
 *        deno run -A llama_cpp_greedy.ts --logprobs FILE.gguf SEQUENCES_JSON FROM_JSON
 *   prints, per sequence s, the rows at positions FROM[s] - 1 .. len(s) - 1 (each row: the
 *   distribution of the token after that position).
 * @module
 */
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
try {
  console.log(JSON.stringify(Deno.args[0] === "--logprobs" ? await logprobs(...Deno.args.slice(1) as [string, string, string]) : await greedy(...Deno.args as [string, string, string])));
} finally {
  await llama.dispose();
}

async function greedy(paths: string, count: string, promptsJson: string): Promise<number[][][]> {
  const prompts = JSON.parse(promptsJson) as number[][];
  const n = Number(count);
  const all: number[][][] = [];
  for (const path of paths.split(",")) {
    const model = await llama.loadModel({ modelPath: path });
    const context = await model.createContext({ contextSize: Math.max(...prompts.map((p) => p.length)) + n + 8, threads: 2 });
    const out: number[][] = [];
    try {
      const seq = context.getSequence();
      for (const prompt of prompts) {
        const ids: number[] = [];
        for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
          ids.push(t as number);
          if (ids.length >= n) break;
        }
        out.push(ids);
        await seq.clearHistory();
      }
    } finally {
      await context.dispose();
      await model.dispose();
    }
    all.push(out);
  }
  return all;
}

async function logprobs(path: string, seqsJson: string, fromJson: string): Promise<number[][][]> {
  const seqs = JSON.parse(seqsJson) as number[][];
  const from = JSON.parse(fromJson) as number[];
  const model = await llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: Math.max(...seqs.map((s) => s.length)) + 8, threads: 2 });
  const out: number[][][] = [];
  try {
    const seq = context.getSequence();
    for (const [i, s] of seqs.entries()) {
      const input = s.map((t, k) => k >= from[i] - 1 ? [t as Token, { generateNext: { probabilities: true } }] as [Token, { generateNext: { probabilities: true } }] : t as Token);
      const res = await seq.controlledEvaluate(input);
      const rows: number[][] = [];
      for (let k = from[i] - 1; k < s.length; k++) {
        const p = res[k]!.next.probabilities!;
        const row = new Array<number>(p.size).fill(-Infinity);
        for (const [t, v] of p) row[t] = Math.log(v);
        rows.push(row);
      }
      out.push(rows);
      await seq.clearHistory();
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  return out;
}
