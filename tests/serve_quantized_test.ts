/**
 * Quantized and GGUF models through the product surfaces, as a user meets them: serve.ts
 * (the openai client) on a Q4_0 GGUF file and on a checkpoint with `quantization: "q8_0"`,
 * and mod.ts's createEngine on the same models. Each surface must give the text the engine
 * gives for the same weights (greedy), and the GGUF file the text of load-time quantization
 * (its blocks are the same).
 */
import { test } from "./helpers/test.ts";
import OpenAI from "openai";
import { assert, assertEquals } from "./helpers/assert.ts";
import { testServer } from "./helpers/server.ts";
import { modelDir } from "./helpers/reference.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { createEngine } from "../mod.ts";
import type { Quantization } from "../src/types/api.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";

const PROMPT = "Once upon a time";
const TOKENS = 20;

async function engineText(model: string, quantization: Quantization, linearWeights: string[]): Promise<string> {
  const engine = await createEngine({ model, quantization, maxSeqs: 2 });
  try {
    // The decoder's matmuls run on blocks (stories260K's down projection, K = 172, is not
    // whole blocks and stays f32).
    assertEquals(engine.info.linearWeights.toSorted(), linearWeights);
    const r = await engine.generate({ prompt: PROMPT, maxTokens: TOKENS, temperature: 0, ignoreEos: true });
    assertEquals(r.ids.length, TOKENS);
    return r.text;
  } finally {
    await engine.close();
  }
}

async function servedText(model: string, quantization: Quantization): Promise<string> {
  const s = await testServer("stories260K", { model, quantization });
  try {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "unused" });
    const c = await client.completions.create({ model: "stories260K", prompt: PROMPT, max_tokens: TOKENS, temperature: 0 });
    assertEquals(c.usage?.completion_tokens, TOKENS);
    // Streaming gives the same text.
    const stream = await client.completions.create({ model: "stories260K", prompt: PROMPT, max_tokens: TOKENS, temperature: 0, stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    assertEquals(streamed, c.choices[0].text);
    return c.choices[0].text;
  } finally {
    await s.close();
  }
}

test("serve.ts and mod.ts: a Q4_0 GGUF file and load-time Q8_0 serve like any checkpoint, with the engine's text", async () => {
  await withTempDir(async (dir) => {
    const gguf = `${dir}/stories260K-q4_0.gguf`;
    await convertToGguf(modelDir("stories260K"), gguf, { quantization: "q4_0" });
    const q4LoadTime = await engineText(modelDir("stories260K"), "q4_0", ["f32", "q4_0"]);
    assertEquals(await engineText(gguf, "none", ["f32", "q4_0"]), q4LoadTime, "mod.ts: the GGUF file's blocks are load-time Q4_0's");
    assertEquals(await servedText(gguf, "none"), q4LoadTime, "serve.ts on the GGUF file");

    const q8 = await engineText(modelDir("stories260K"), "q8_0", ["f32", "q8_0"]);
    assertEquals(await servedText(modelDir("stories260K"), "q8_0"), q8, "serve.ts with quantization q8_0");
    assert(q8.length > 20 && q4LoadTime.length > 20, `texts: ${JSON.stringify([q8, q4LoadTime])}`);
  });
});
