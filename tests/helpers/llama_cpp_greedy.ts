/**
 * llama.cpp (node-llama-cpp, its prebuilt CPU binary) as a second implementation: loads a
 * GGUF file and prints, as JSON, its greedy continuation of each prompt (token ids in,
 * token ids out). A script run under Deno (deno.json imports node-llama-cpp), so that the
 * test calling it runs the same way under both runtimes.
 * Usage: deno run -A llama_cpp_greedy.ts FILE.gguf[,FILE.gguf...] TOKENS PROMPTS_JSON
 * prints one list of continuations per file.
 * @module
 */
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";

const [paths, count, promptsJson] = Deno.args;
const prompts = JSON.parse(promptsJson) as number[][];
const n = Number(count);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const all: number[][][] = [];
try {
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
} finally {
  await llama.dispose();
}
console.log(JSON.stringify(all));
