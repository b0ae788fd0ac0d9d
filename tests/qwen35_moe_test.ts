/**
 * Qwen3.5-MoE (`qwen3_5_moe`): Qwen3.5's hybrid layers with sparse feed-forwards and a
 * sigmoid-gated shared expert. transformers' own goldens for it are checked with every
 * reference model (qwen35-moe-tiny in reference_families_test.ts); here (layer level:
 * tests/moe_test.ts against a TypeScript reference of routing, experts and shared expert):
 *
 * - qwen35-moe-tiny with its experts fused as transformers holds them and the hub ships them
 *   (its file has them per expert, as save_pretrained writes them) gives the same logits bit
 *   for bit, so transformers' goldens hold for the hub's layout too;
 * - whole model: qwen35-tiny rewritten as a qwen3_5_moe checkpoint whose sparse blocks compute
 *   the dense MLPs again (routed experts f/2, shared expert f gated by sigmoid(0) = 1/2; see
 *   helpers/qwen35_moe_checkpoint.ts) reproduces qwen35-tiny's transformers logits and greedy
 *   ids, both kernel families, routed experts as per-expert tensors and fused (the hub's
 *   Qwen3.5 layout): every part of the block has to be there, with the hub's names and
 *   layout, for the sum to come out right;
 * - serving (random weights, distinct experts): one step of 8 rows (4 decode rows, 4 prefills)
 *   equals the solo runs bit for bit, both families; through createEngine (a Worker) 8
 *   concurrent greedy requests equal their solo runs; engine info counts the shared expert
 *   as active and k/E of the routed experts;
 * - load-time q8_0 quantizes the shared expert (a dense MLP) and the routed experts, and
 *   matches the f32 path on the round-tripped weights (as quant_reference_test.ts's gemma3).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { createGpu } from "../src/gpu/device.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch, type SequenceChunk } from "../src/runner/step_meta.ts";
import { Engine } from "../src/engine/engine.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { createEngine } from "../mod.ts";
import { greedyIds, loadGolden, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { withTempDir, writeSafetensors } from "./helpers/synthetic_checkpoint.ts";
import * as sys from "./helpers/platform.ts";
import { openModel } from "../src/model/model_source.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { valueDType } from "../src/model/safetensors.ts";
import { EXACT_TOL } from "./helpers/quant_goldens.ts";
import { quantizeRows } from "../src/model/quant/quantized_source.ts";
import { dequantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { TINY_QWEN35_MOE_CONFIG, writeFusedExpertsCopy, writeQwen35MoeFromDense, writeRandomQwen35Moe } from "./helpers/qwen35_moe_checkpoint.ts";

/** As reference_suite.ts: f32 KV, max |ours - HF| <= 1e-4 of the largest logit. */
const REL_TOL = 1e-4;
/** Greedy ids checked per golden case. */
const GREEDY = 8;

async function readU32(device: GPUDevice, buffer: GPUBuffer, words: number): Promise<Uint32Array> {
  const staging = device.createBuffer({ size: words * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, words * 4);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Uint32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  return out;
}

test("qwen35-moe-tiny with fused experts (the hub's layout) gives the per-expert file's logits bit for bit, and transformers' (cpu and gpu families)", async (t) => {
  const name = "qwen35-moe-tiny";
  const golden = await loadGolden(name);
  await withTempDir(async (tmp) => {
    assertEquals(await writeFusedExpertsCopy(modelDir(name), tmp), 4);
    const gpu = await createGpu();
    try {
      for (const kernelFamily of KERNEL_FAMILIES) {
        await t.step(`${kernelFamily} family`, async () => {
          const opts = { gpu, kernelFamily, kvDtype: "f32", maxTokens: 128, maxLogitRows: 128, maxSeqs: 4, blockSize: 16, numBlocks: 64 } as const;
          const perExpert = await ModelRunner.load(modelDir(name), opts);
          const fused = await ModelRunner.load(tmp, opts);
          assertEquals(fused.spec, perExpert.spec);
          const V = fused.spec.vocabSize;
          let worst = 0;
          for (const c of golden.cases) {
            const a = await promptLogits(perExpert, c.prompt_ids);
            const b = await promptLogits(fused, c.prompt_ids);
            assertEquals(maxAbsDiff(a, b), 0, `${c.prompt}: fused experts change the logits`);
            c.logit_positions.forEach((pos, j) => {
              const err = maxAbsDiff(b.subarray(pos * V, (pos + 1) * V), c.logits[j]) / maxAbs(c.logits[j]);
              worst = Math.max(worst, err);
              assert(err <= REL_TOL, `pos ${pos}: relative error ${err} > ${REL_TOL}`);
            });
          }
          console.log(`  ${name} fused, ${kernelFamily} family: max rel err ${worst.toExponential(2)}`);
        });
      }
    } finally {
      gpu.device.destroy();
    }
  });
});

test("qwen35-moe from qwen35-tiny: sparse blocks with routed and shared experts equal to the dense MLPs reproduce qwen35-tiny's transformers logits and greedy ids (cpu family on per-expert tensors, gpu family on fused experts)", async (t) => {
  const golden = await loadGolden("qwen35-tiny");
  await withTempDir(async (tmp) => {
    const gpu = await createGpu();
    try {
      const runs = [["cpu", "per_expert"], ["gpu", "fused"]] as const;
      assertEquals(runs.map(([f]) => f), [...KERNEL_FAMILIES]);
      for (const [kernelFamily, layout] of runs) {
        await t.step(`${kernelFamily} family, ${layout} experts`, async () => {
          const dir = `${tmp}/${layout}`;
          await writeQwen35MoeFromDense(dir, { experts: 4, topK: 2, layout });
          const runner = await ModelRunner.load(dir, { gpu, kernelFamily, kvDtype: "f32", maxTokens: 128, maxLogitRows: 128, maxSeqs: 4, blockSize: 16, numBlocks: 64 });
          const engine = Engine.start(runner);
          try {
            const spec = runner.spec;
            assertEquals(spec.architecture, "qwen35_moe");
            assertEquals([spec.moe?.numExperts, spec.moe?.topK, spec.moe?.sharedExpertIntermediateSize], [4, 2, 320]);
            assert(spec.moe!.sparseLayers.every((s) => s) && spec.linearAttention!.layers.filter((l) => l).length === 3);
            const V = spec.vocabSize;
            const used = new Set<number>();
            const summary: string[] = [];
            for (const c of golden.cases) {
              const logits = await promptLogits(runner, c.prompt_ids, engine.scheduler.blocks);
              // The last sparse layer's routing of this prompt (k ids per token).
              for (const id of await readU32(runner.gpu.device, runner.forward.moeScratch!.ids, c.prompt_ids.length * 2)) used.add(id);
              let worst = 0;
              c.logit_positions.forEach((pos, j) => {
                const err = maxAbsDiff(logits.subarray(pos * V, (pos + 1) * V), c.logits[j]) / maxAbs(c.logits[j]);
                worst = Math.max(worst, err);
                assert(err <= REL_TOL, `pos ${pos}: relative error ${err} > ${REL_TOL}`);
              });
              // Greedy ids from the serving path (the first GREEDY of transformers' 24, to keep
              // the test short); a divergence may only come at a near-tie.
              const ids = await greedyIds(engine, c.prompt_ids, GREEDY);
              const tolAbs = 2 * REL_TOL * Math.max(...c.logits.map(maxAbs));
              assertEquals(ids.length, GREEDY);
              const at = ids.findIndex((id, k) => id !== c.greedy_ids[k]);
              assert(at === -1 || c.greedy_top2_margin[at] < tolAbs, `greedy id ${at}: ${ids[at]} vs ${c.greedy_ids[at]}\n ours ${ids}\n ref  ${c.greedy_ids}`);
              summary.push(`${worst.toExponential(2)} (${at === -1 ? ids.length : at}/${ids.length} ids)`);
            }
            assertEquals(used.size, 4, "the prompts' tokens should use every expert");
            console.log(`  qwen35-moe (from qwen35-tiny) ${kernelFamily} ${layout}: max rel err ${summary.join(", ")}`);
          } finally {
            await engine.close();
          }
        });
      }
    } finally {
      gpu.device.destroy();
    }
  });
});

test("qwen35-moe random: 8 mixed prefill/decode rows routed to different experts equal their solo runs bit for bit (cpu and gpu families); parameters count the shared expert as active", async (t) => {
  await withTempDir(async (dir) => {
    const tensors = await writeRandomQwen35Moe(dir);
    const gpu = await createGpu();
    try {
      for (const kernelFamily of KERNEL_FAMILIES) {
        await t.step(`${kernelFamily} family`, async () => {
          // The scan form of the delta rule: a prefill split mid-chunk (the decode rows below
          // continue 6-token prefills) equals one-shot only to rounding with the chunked form
          // (tests/deltanet_chunked_test.ts); here the question is the experts' batch invariance.
          const runner = await ModelRunner.load(dir, { gpu, kernelFamily, kvDtype: "f32", maxTokens: 256, maxLogitRows: 256, maxSeqs: 8, blockSize: 8, numBlocks: 128, deltaRuleForm: "scan" });
          const engine = Engine.start(runner);
          try {
            const bs = 8;
            const V = runner.spec.vocabSize;
            const prompts = [[5, 17, 99, 3, 250, 8, 41], [300, 2, 77, 77, 12], [9, 8, 7, 6, 5, 4, 3, 2, 1, 400, 401], [123, 45]];
            const seqs = [...prompts, ...prompts.map((p) => [...p].reverse())];
            let next = 0;
            const tables = seqs.map((p) => Array.from({ length: Math.ceil(p.length / bs) }, () => next++));
            const solo: Float32Array[] = [];
            for (let i = 0; i < seqs.length; i++) {
              solo.push(await runner.logits(buildStepBatch([{ tokens: seqs[i], start: 0, blockTable: tables[i], logits: "all", stateSlot: i }], bs)));
            }
            // Sequences 0..3 prefill all but their last token, then one step of 8 rows: their
            // last tokens (decode rows) interleaved with sequences 4..7's whole prompts.
            await runner.logits(buildStepBatch([0, 1, 2, 3].map((i): SequenceChunk => ({ tokens: seqs[i].slice(0, -1), start: 0, blockTable: tables[i], logits: "none", stateSlot: i })), bs));
            const rows: [number, SequenceChunk][] = [];
            for (let i = 0; i < 4; i++) {
              const s = seqs[i];
              rows.push([i, { tokens: s.slice(-1), start: s.length - 1, blockTable: tables[i], logits: "last", stateSlot: i }]);
              rows.push([4 + i, { tokens: seqs[4 + i], start: 0, blockTable: tables[4 + i], logits: "last", stateSlot: 4 + i }]);
            }
            const batch = buildStepBatch(rows.map(([, c]) => c), bs);
            const out = await runner.logits(batch);
            rows.forEach(([i], r) => {
              const n = seqs[i].length;
              assertEquals(maxAbsDiff(out.subarray(r * V, (r + 1) * V), solo[i].subarray((n - 1) * V, n * V)), 0, `seq ${i} differs in the mixed step`);
            });
            const ids = await readU32(runner.gpu.device, runner.forward.moeScratch!.ids, batch.tokenIds.length * 2);
            assert(new Set(ids).size >= 6, `the step's tokens route to only ${new Set(ids).size} experts`);

            // Parameters from the tensors written: the routed experts count k/E, the rest
            // (the shared expert and its gate included) wholly.
            const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
            const total = tensors.reduce((n, x) => n + size(x.shape), 0);
            const routed = tensors.filter((x) => /\.mlp\.experts\.\d+\./.test(x.name)).reduce((n, x) => n + size(x.shape), 0);
            const shared = tensors.filter((x) => x.name.includes(".mlp.shared_expert")).reduce((n, x) => n + size(x.shape), 0);
            const H = TINY_QWEN35_MOE_CONFIG.hidden_size as number;
            assertEquals(shared, 4 * (3 * H * (TINY_QWEN35_MOE_CONFIG.shared_expert_intermediate_size as number) + H));
            assertEquals(engine.info.parameters, { total, active: total - routed + (routed * 2) / 8 });
          } finally {
            await engine.close();
          }
        });
      }
    } finally {
      gpu.device.destroy();
    }
  });
});

test("qwen35-moe random engine (createEngine): 8 concurrent greedy requests equal their solo runs", async () => {
  await withTempDir(async (dir) => {
    await writeRandomQwen35Moe(dir);
    const engine = await createEngine({ model: dir, maxBatchTokens: 64, maxSeqs: 8, blockSize: 8 });
    try {
      assertEquals(engine.info.architecture, "qwen35_moe");
      const prompts = ["Once upon a time", "The little dog ran to the park and saw a", "Lily and Tom were friends. They liked to", "A", "Tom had a big red ball.", "One day, a girl named Sue", "The sun was", "Ben"];
      const reqs = prompts.map((prompt, i) => ({ prompt, maxTokens: 5 + ((i * 3) % 7), ignoreEos: true }));
      const alone: number[][] = [];
      for (const r of reqs) alone.push((await engine.generate(r)).ids);
      const together = await Promise.all(reqs.map((r) => engine.generate(r)));
      together.forEach((r, i) => assertEquals(r.ids, alone[i], `request ${i} in a batch of 8`));
      assert(new Set(alone.flat()).size > 3, "greedy outputs should vary");
    } finally {
      await engine.close();
    }
  });
});

test("qwen35-moe random: load-time q8_0 quantizes the shared expert and the routed experts, and matches the f32 path on the round-tripped weights (both families)", async () => {
  await withTempDir(async (dir) => {
    await writeRandomQwen35Moe(`${dir}/model`);
    // The checkpoint with every quantized tensor replaced by its dequantized blocks.
    const roundTrip = `${dir}/round_trip`;
    await sys.mkdir(roundTrip);
    for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${dir}/model/${f}`, `${roundTrip}/${f}`);
    const { tensors } = await openModel(`${dir}/model`, { quantization: "q8_0" });
    try {
      const out = [];
      for (const t of tensors.names()) {
        const info = tensors.get(t);
        let data = dequantize(valueDType(info), await tensors.read(info));
        // Routed experts are quantized by their uploader, along K (their rows' last dim, per
        // expert or fused): round-trip them here the same way.
        if (/\.mlp\.experts\./.test(t)) {
          const rt = new Float32Array(data.length);
          dequantizeQ8_0(quantizeRows("Q8_0", data), 0, data.length / 32, rt);
          data = rt;
        }
        out.push({ name: t, shape: info.shape, dtype: "F32" as const, data });
      }
      await writeSafetensors(`${roundTrip}/model.safetensors`, out);
    } finally {
      tensors.close();
    }
    const opts = { kvDtype: "f32", weightDType: "f32", maxTokens: 64, maxLogitRows: 64, maxSeqs: 1, blockSize: 8, numBlocks: 16 } as const;
    const prompt = [5, 17, 99, 3, 250, 8, 41, 300, 2, 77];
    const gpu = await createGpu();
    try {
      for (const kernelFamily of KERNEL_FAMILIES) {
        const quant = await ModelRunner.load(`${dir}/model`, { ...opts, kernelFamily, quantization: "q8_0", gpu });
        const plain = await ModelRunner.load(roundTrip, { ...opts, kernelFamily, gpu });
        try {
          // The shared expert's gate|up (K = hidden 64) runs as blocks; its down (K = 48, no
          // multiple of 32) stays f32; the routed experts (hidden 64, width 32) are Q8_0.
          const l0 = quant.weights.layers[0];
          assertEquals([l0.gateUp?.kind, l0.gateUp?.dtype, l0.down?.kind, l0.moe?.dtype], ["quant", "q8_0", "dense", "q8_0"]);
          const a = await promptLogits(quant, prompt);
          const b = await promptLogits(plain, prompt);
          const err = maxAbsDiff(a, b) / maxAbs(b);
          assert(err <= EXACT_TOL, `${kernelFamily}: q8_0 vs f32 on round-tripped weights ${err} > ${EXACT_TOL}`);
        } finally {
          plain.close();
          quant.close();
        }
      }
    } finally {
      gpu.device.destroy();
    }
  });
});
