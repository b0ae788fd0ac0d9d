/**
 * Quality on the trained model: perplexity of stories260K on the text in the reference
 * models' README, f32 against transformers' 2.310, and Q8_0 / Q4_0 load-time quantization
 * within 1% / 10% of our f32 figure (transformers measured +0.0% and +4.4%), through the
 * quantized matmuls: on the exact path (the default) and on the fast path (activations
 * quantized to Q8 blocks, `quantizedActivations`), which must pass the same gates.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { perplexity } from "../src/runner/perplexity.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { modelDir } from "./helpers/reference.ts";

const TEXT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with " +
  "her dog, Max. One day, Lily saw a big red ball under a tree. She wanted to play with it, but it was " +
  "too high. Max barked and jumped, and the ball fell down. Lily was very happy. She said, \"Thank you, " +
  "Max!\" They played with the ball all day long. When the sun went down, they went home and had a " +
  "nice dinner with mom and dad.";

test("perplexity stories260K: f32 as transformers (2.310), Q8_0 within 1% and Q4_0 within 10% of it", async () => {
  const ids = (await Tokenizer.load(modelDir("stories260K"))).encode(TEXT);
  assertEquals(ids.length, 170);
  const opts = { maxTokens: 256, maxLogitRows: 256, maxSeqs: 1, numBlocks: 16 };
  const f32 = await ModelRunner.load(modelDir("stories260K"), opts);
  const gpu = f32.gpu;
  try {
    const base = await perplexity(f32, ids);
    f32.close();
    const quantized = async (quantization: "q8_0" | "q4_0", quantizedActivations: boolean) => {
      const r = await ModelRunner.load(modelDir("stories260K"), { ...opts, gpu, quantization, quantizedActivations });
      try {
        assertEquals(r.weights.layers[0].gateUp!.kind, "quant");
        return await perplexity(r, ids);
      } finally {
        r.close();
      }
    };
    const pct = (v: number) => `${v.toFixed(4)} (${((v / base - 1) * 100).toFixed(2)}%)`;
    const q8 = await quantized("q8_0", false);
    const q4 = await quantized("q4_0", false);
    const q8f = await quantized("q8_0", true);
    const q4f = await quantized("q4_0", true);
    console.log(`  perplexity f32 ${base.toFixed(4)}, exact: Q8_0 ${pct(q8)}, Q4_0 ${pct(q4)}; fast: Q8_0 ${pct(q8f)}, Q4_0 ${pct(q4f)}`);
    assert(Math.abs(base - 2.310) < 0.0051, `f32 perplexity ${base}, transformers 2.310`);
    for (const [name, v8, v4] of [["exact", q8, q4], ["fast", q8f, q4f]] as const) {
      assert(Math.abs(v8 / base - 1) <= 0.01, `${name} Q8_0 perplexity ${v8} vs f32 ${base}`);
      assert(Math.abs(v4 / base - 1) <= 0.10, `${name} Q4_0 perplexity ${v4} vs f32 ${base}`);
    }
    // The goldens' figures, to the printed digits: the exact path's round trip is the same.
    assert(Math.abs(q8 - 2.308) < 0.0051 && Math.abs(q4 - 2.411) < 0.0051, `Q8_0 ${q8} (HF 2.308), Q4_0 ${q4} (HF 2.411)`);
  } finally {
    gpu.device.destroy();
  }
});
