/**
 * `deno run -A bench/device/streams.ts --model-dir DIR --streams 64 --tokens 64 --json OUT`:
 * writes the synthetic SmolLM2-135M-shaped f16 model into DIR (so transformers can load the
 * same weights) and measures our engine on `streams` concurrent greedy requests of `tokens`
 * tokens each (prompts of 16-32 random ids, seed 3, as the llama.cpp peer uses): output
 * tok/s over the wall time of the whole batch, after a warm-up batch.
 * @module
 */
import { createEngine } from "../../mod.ts";
import { createGpu } from "../../src/gpu/device.ts";
import { kernelFamilyFor } from "../../src/kernels/family.ts";
import * as rt from "../../src/runtime/runtime.ts";
import { writeSyntheticModel } from "../synthetic_model.ts";
import { makeWorkload } from "../workload.ts";

const argv = rt.args();
const arg = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
};
const dir = arg("model-dir", `${await rt.makeTempDir("streams_")}/smollm2-135m-synthetic`);
const streams = Number(arg("streams", "64"));
const tokens = Number(arg("tokens", "64"));
const json = arg("json", "");
const root = new URL("../../", import.meta.url).pathname;

await writeSyntheticModel(dir, { tokenizerDir: `${root}tests/fixtures/models/stories260K` });
const gpu = await createGpu();
const adapter = gpu.description;
const family = kernelFamilyFor(gpu);
gpu.device.destroy();
const prompts = makeWorkload({
  vocab: 49152,
  bosId: 1,
  requests: streams,
  promptLen: [16, 32],
  seed: 3,
}).map((r) => r.promptIds);
const engine = await createEngine({
  model: dir,
  maxSeqs: streams,
  maxContext: 128,
  maxBatchTokens: 2048,
});
try {
  const run = (n: number) =>
    Promise.all(
      prompts.map((prompt) =>
        engine.generate({ prompt, maxTokens: n, ignoreEos: true, temperature: 0 })
      ),
    );
  await run(8); // warm-up: every row-count variant up to `streams`
  const t0 = performance.now();
  const outs = await run(tokens);
  const wallS = (performance.now() - t0) / 1000;
  const generated = outs.reduce((a, o) => a + o.ids.length, 0);
  const result = {
    impl: "webgpu-llm",
    adapter,
    family,
    runtime: rt.runtimeInfo().runtime,
    streams,
    tokensPerStream: tokens,
    generated,
    wallS,
    tokPerS: generated / wallS,
    firstIds: outs[0].ids.slice(0, 16),
  };
  console.log(JSON.stringify(result));
  if (json) await rt.writeFile(json, JSON.stringify(result, null, 2) + "\n");
} finally {
  await engine.close();
}
