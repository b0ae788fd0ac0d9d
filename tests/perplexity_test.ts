/**
 * Quality on the trained model: perplexity of stories260K on the text in the reference
 * models' README, f32 against transformers' 2.310, and Q8_0 / Q4_0 load-time quantization
 * within 1% / 10% of our f32 figure (transformers measured +0.0% and +4.4%).
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
    const q8r = await ModelRunner.load(modelDir("stories260K"), { ...opts, gpu, quantization: "q8_0" });
    const q8 = await perplexity(q8r, ids);
    q8r.close();
    const q4r = await ModelRunner.load(modelDir("stories260K"), { ...opts, gpu, quantization: "q4_0" });
    const q4 = await perplexity(q4r, ids);
    q4r.close();
    console.log(`  perplexity f32 ${base.toFixed(4)}, Q8_0 ${q8.toFixed(4)} (${((q8 / base - 1) * 100).toFixed(2)}%), Q4_0 ${q4.toFixed(4)} (${((q4 / base - 1) * 100).toFixed(2)}%)`);
    assert(Math.abs(base - 2.310) < 0.0051, `f32 perplexity ${base}, transformers 2.310`);
    assert(Math.abs(q8 / base - 1) <= 0.01, `Q8_0 perplexity ${q8} vs f32 ${base}`);
    assert(Math.abs(q4 / base - 1) <= 0.10, `Q4_0 perplexity ${q4} vs f32 ${base}`);
    // The goldens' figures, to the printed digits: the round trip is the same.
    assert(Math.abs(q8 - 2.308) < 0.0051 && Math.abs(q4 - 2.411) < 0.0051, `Q8_0 ${q8} (HF 2.308), Q4_0 ${q4} (HF 2.411)`);
  } finally {
    gpu.device.destroy();
  }
});
