/**
 * GGUF files on the GPU: every reference model converted by `convert` and loaded from the
 * .gguf (llama.cpp's names, metadata, q/k row order, Gemma's 1 + w norms, Llama-3.1 rope
 * as rope_freqs; Qwen3.5's Gated DeltaNet tensors) matches transformers' golden.json like the safetensors path (1e-4 of the
 * largest logit, matrices f32), and a Q8_0 file gives the same logits as load-time Q8_0
 * quantization of the checkpoint (the same blocks, see gguf_test.ts).
 */
import { shared, sharedTest } from "./helpers/test.ts";
import { createGpu } from "../src/gpu/device.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { ggufModelSpec } from "../src/model/gguf/spec.ts";
import { CheckpointError } from "../src/model/errors.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { HYBRID_MODEL_NAMES, loadGolden, maxAbs, maxAbsDiff, MODEL_NAMES, modelDir, MOE_MODEL_NAMES, promptLogits } from "./helpers/reference.ts";
import { worstRelativeError } from "./helpers/quant_goldens.ts";
import { writeQwen35MoeFromDense, writeRandomQwen35Moe } from "./helpers/qwen35_moe_checkpoint.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";

// As for qwen35 (above): the file tiles the value heads (out_proj sums its inputs in another
// order) and stores -exp(A_log), so the logits agree to rounding, not bit for bit; every other
// tensor (experts, shared expert, router) is the checkpoint's exactly (gguf_test.ts).
const QWEN35_MOE_SAME = 1e-5;

// f32 KV: the goldens bound the error to 1e-4; the f16 cache (the default where the adapter
// has shader-f16) is measured against them in reference_test.ts.
const OPTS = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 1, blockSize: 16, numBlocks: 16, weightDType: "f32", kvDtype: "f32" } as const;

// One device for the file: its pipelines, compiled once, serve every model's runners.
const QUANTS = ["q8_0", "q4_0"] as const;

const sharedGpu = shared(() => createGpu(), (gpu) => gpu.device.destroy());

// qwen35-tiny (llama.cpp's `qwen35`: ssm_* tensors, -exp(A_log), value heads tiled, 1 + w norms).
for (const name of [...MODEL_NAMES, ...HYBRID_MODEL_NAMES]) {
  sharedTest(`gguf reference ${name}: the converted file matches transformers, and Q8_0 from GGUF equals load-time Q8_0`, async () => {
    await withTempDir(async (dir) => {
      await convertToGguf(modelDir(name), `${dir}/f.gguf`);
      await convertToGguf(modelDir(name), `${dir}/q8.gguf`, { quantization: "q8_0" });
      const golden = await loadGolden(name);
      const gpu = await sharedGpu();
      const plain = await ModelRunner.load(`${dir}/f.gguf`, { ...OPTS, gpu });
      const err = await worstRelativeError(plain, golden.cases);
      plain.close();
      const fromFile = await ModelRunner.load(`${dir}/q8.gguf`, { ...OPTS, gpu });
      const loadTime = await ModelRunner.load(modelDir(name), { ...OPTS, gpu, quantization: "q8_0" });
      let same = 0;
      try {
        for (const c of golden.cases) {
          const a = await promptLogits(fromFile, c.prompt_ids);
          const b = await promptLogits(loadTime, c.prompt_ids);
          same = Math.max(same, maxAbsDiff(a, b) / maxAbs(b));
        }
      } finally {
        fromFile.close();
        loadTime.close();
      }
      console.log(`  ${name}: GGUF f32 vs HF ${err.toExponential(2)}, GGUF Q8_0 vs load-time Q8_0 ${same.toExponential(2)}`);
      assert(err <= 1e-4, `${name}: GGUF logits relative error ${err}`);
      // Qwen3.5's file tiles the value heads (out_proj sums its inputs in another order) and
      // stores -exp(A_log) (an f32 round trip): rounding, three orders below a wrong head.
      const sameTol = (HYBRID_MODEL_NAMES as readonly string[]).includes(name) ? 1e-5 : 1e-6;
      assert(same <= sameTol, `${name}: GGUF Q8_0 and load-time Q8_0 differ by ${same}`);
    });
  });
}

// The MoE families (llama.cpp's qwen3moe / gpt-oss: stacked ffn_*_exps experts, gpt-oss's
// gate/up split apart, biases, sinks, YaRN metadata, MXFP4 experts as GGML MXFP4 blocks):
// the converted file holds the checkpoint's values exactly, so it gives the safetensors
// load's logits bit for bit, and those match transformers (the MXFP4 file its own goldens).
// `convert --quantization` writes float experts as the load-time Q8_0 / Q4_0 blocks, which the
// loader packs as they are: the same expert weights on the GPU, so the same logits bit for
// bit, in both kernel families (MXFP4 experts stay MXFP4 both ways).
for (const name of MOE_MODEL_NAMES) {
  sharedTest(`gguf reference ${name}: the converted MoE file gives the checkpoint's logits and matches transformers; Q8_0 / Q4_0 from GGUF equal load-time Q8_0 / Q4_0, both kernel families`, async () => {
    await withTempDir(async (dir) => {
      await convertToGguf(modelDir(name), `${dir}/f.gguf`);
      for (const q of QUANTS) await convertToGguf(modelDir(name), `${dir}/${q}.gguf`, { quantization: q });
      const golden = await loadGolden(name);
      const gpu = await sharedGpu();
      const fromFile = await ModelRunner.load(`${dir}/f.gguf`, { ...OPTS, gpu });
      const checkpoint = await ModelRunner.load(modelDir(name), { ...OPTS, gpu });
      let sameF32 = 0;
      let err = 0;
      try {
        assert(fromFile.spec.moe?.experts === checkpoint.spec.moe?.experts && !!fromFile.spec.moe?.mxfp4 === !!checkpoint.spec.moe?.mxfp4, `${name}: the GGUF spec lost the experts`);
        err = await worstRelativeError(fromFile, golden.cases);
        for (const c of golden.cases) {
          const a = await promptLogits(fromFile, c.prompt_ids);
          const b = await promptLogits(checkpoint, c.prompt_ids);
          sameF32 = Math.max(sameF32, maxAbsDiff(a, b) / maxAbs(b));
        }
      } finally {
        fromFile.close();
        checkpoint.close();
      }
      console.log(`  ${name}: GGUF vs HF ${err.toExponential(2)}, GGUF vs safetensors ${sameF32.toExponential(2)}`);
      assert(err <= 1e-4, `${name}: GGUF logits relative error ${err}`);
      assert(sameF32 === 0, `${name}: GGUF and safetensors logits differ by ${sameF32}`);
      for (const kernelFamily of KERNEL_FAMILIES) {
        for (const q of QUANTS) {
          const qFile = await ModelRunner.load(`${dir}/${q}.gguf`, { ...OPTS, kernelFamily, gpu });
          const qLoad = await ModelRunner.load(modelDir(name), { ...OPTS, kernelFamily, gpu, quantization: q });
          let same = 0;
          try {
            const expertTypes = (r: ModelRunner) => r.weights.layers.filter((l) => l.moe).map((l) => `${l.moe!.dtype}/${l.moe!.layout}`);
            const want = `${name.includes("mxfp4") ? "mxfp4" : q}/column_blocks`;
            assertEquals(expertTypes(qFile), expertTypes(qLoad).map(() => want), `${name} ${kernelFamily} ${q}: experts from the file`);
            assertEquals(expertTypes(qLoad), expertTypes(qFile), `${name} ${kernelFamily} ${q}: experts at load time`);
            for (const c of golden.cases) {
              const a = await promptLogits(qFile, c.prompt_ids);
              const b = await promptLogits(qLoad, c.prompt_ids);
              same = Math.max(same, maxAbsDiff(a, b) / maxAbs(b));
            }
          } finally {
            qFile.close();
            qLoad.close();
          }
          console.log(`  ${name} ${kernelFamily}: GGUF ${q} vs load-time ${q} ${same.toExponential(2)}`);
          assert(same === 0, `${name} ${kernelFamily}: GGUF ${q} and load-time ${q} differ by ${same}`);
        }
      }
    });
  });
}

// Qwen3.5-MoE (llama.cpp's `qwen35moe`: qwen35's tensors and metadata plus the qwen3moe-style
// stacked experts and the shared expert `*_shexp` with its gate `ffn_gate_inp_shexp`). Two
// checkpoints: qwen35-tiny rewritten as a sparse model that computes its dense MLPs again
// (hub layout, fused experts: tests/helpers/qwen35_moe_checkpoint.ts), which must match
// qwen35-tiny's transformers goldens from the file; and random weights with distinct experts
// and tiled value heads (2 key heads, 4 value heads). Each file gives the safetensors load's
// logits (within QWEN35_MOE_SAME, see below); a Q8_0 file equals load-time Q8_0 (from-dense).
const QWEN35_MOE_PROMPTS = [[1, 5, 9, 44, 7, 100, 3, 250, 17, 8, 61, 2, 90, 33], [1, 42]];
for (const kind of ["from-dense", "random"] as const) {
  sharedTest(`gguf reference qwen35moe (${kind}): the converted file gives the safetensors logits${kind === "from-dense" ? " and qwen35-tiny's transformers goldens; Q8_0 from GGUF equals load-time Q8_0" : ""}, both kernel families`, async () => {
    await withTempDir(async (dir) => {
      const ck = `${dir}/ck`;
      if (kind === "from-dense") await writeQwen35MoeFromDense(ck, { experts: 4, topK: 2, layout: "fused" });
      else await writeRandomQwen35Moe(ck);
      await convertToGguf(ck, `${dir}/f.gguf`);
      await convertToGguf(ck, `${dir}/q8_0.gguf`, { quantization: "q8_0" });
      const header = await readGgufHeader(`${dir}/f.gguf`);
      assertEquals(header.metadata.get("general.architecture"), "qwen35moe");
      if (kind === "random") {
        // llama.cpp's names and keys (TINY_QWEN35_MOE_CONFIG: H 64, 8 experts of 32, shared 48).
        const meta = (key: string) => header.metadata.get(`qwen35moe.${key}`);
        assertEquals(["expert_count", "expert_used_count", "expert_feed_forward_length", "expert_shared_feed_forward_length", "full_attention_interval", "ssm.group_count", "ssm.time_step_rank"].map(meta), [8, 2, 32, 48, 4, 2, 4]);
        const dims = (n: string) => header.tensors.get(`blk.3.${n}`)?.dims;
        assertEquals(
          ["ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight", "ffn_gate_inp_shexp.weight", "post_attention_norm.weight", "attn_gate.weight"].map(dims),
          [[64, 8], [64, 32, 8], [64, 32, 8], [32, 64, 8], [64, 48], [64, 48], [48, 64], [64, 1], [64], undefined],
        );
        assertEquals(["ssm_a", "ssm_conv1d.weight", "ssm_out.weight", "attn_gate.weight"].map((n) => header.tensors.has(`blk.0.${n}`)), [true, true, true, true]);
        // A file without the shared expert's width is refused by name.
        const metadata = new Map(header.metadata);
        metadata.delete("qwen35moe.expert_shared_feed_forward_length");
        const e = assertThrows(() => ggufModelSpec({ ...header, metadata }), CheckpointError);
        assert(/missing required metadata qwen35moe\.expert_shared_feed_forward_length/.test(e.message), e.message);
      }
      const gpu = await sharedGpu();
      const prompts = kind === "from-dense" ? (await loadGolden("qwen35-tiny")).cases.map((c) => c.prompt_ids) : QWEN35_MOE_PROMPTS;
      for (const kernelFamily of KERNEL_FAMILIES) {
        const fromFile = await ModelRunner.load(`${dir}/f.gguf`, { ...OPTS, gpu, kernelFamily });
        const checkpoint = await ModelRunner.load(ck, { ...OPTS, gpu, kernelFamily });
        const qFile = await ModelRunner.load(`${dir}/q8_0.gguf`, { ...OPTS, gpu, kernelFamily });
        const qLoad = await ModelRunner.load(ck, { ...OPTS, gpu, kernelFamily, quantization: "q8_0" });
        let same = 0;
        let sameQ = 0;
        let err = 0;
        try {
          assertEquals(fromFile.spec.architecture, "qwen35_moe");
          assertEquals(fromFile.spec.moe, checkpoint.spec.moe);
          assertEquals(fromFile.spec.linearAttention?.layers, checkpoint.spec.linearAttention?.layers);
          // The shared expert runs as the layer's dense MLP, quantized like one (where its K
          // is a multiple of 32: the random model's down has K = 48); the routed experts Q8_0.
          const types = (r: ModelRunner) => r.weights.layers.map((l) => `${l.gateUp?.dtype}/${l.down?.dtype}/${l.moe?.dtype}`);
          assertEquals(types(qFile), types(qLoad));
          assertEquals(types(qFile).map((t) => t.split("/")[0] + "/" + t.split("/")[2]), types(qFile).map(() => "q8_0/q8_0"));
          if (kind === "from-dense") err = await worstRelativeError(fromFile, (await loadGolden("qwen35-tiny")).cases);
          for (const ids of prompts) {
            const b = await promptLogits(checkpoint, ids);
            same = Math.max(same, maxAbsDiff(await promptLogits(fromFile, ids), b) / maxAbs(b));
            const qb = await promptLogits(qLoad, ids);
            sameQ = Math.max(sameQ, maxAbsDiff(await promptLogits(qFile, ids), qb) / maxAbs(qb));
          }
        } finally {
          for (const r of [fromFile, checkpoint, qFile, qLoad]) r.close();
        }
        console.log(`  qwen35moe ${kind} ${kernelFamily}: GGUF vs safetensors ${same.toExponential(2)}, GGUF Q8_0 vs load-time Q8_0 ${sameQ.toExponential(2)}${kind === "from-dense" ? `, GGUF vs HF (qwen35-tiny) ${err.toExponential(2)}` : ""}`);
        assert(err <= 1e-4, `qwen35moe ${kind}: GGUF logits relative error ${err}`);
        assert(same <= QWEN35_MOE_SAME, `qwen35moe ${kind} ${kernelFamily}: GGUF and safetensors differ by ${same}`);
        // The random model's value heads are 16 wide: tiling out_proj's columns regroups its
        // 32-wide K blocks, so the file's Q8_0 blocks (llama.cpp's converter quantizes the tiled
        // tensor too) are not load-time quantization's; qwen35-tiny's 32-wide heads keep them.
        if (kind === "from-dense") assert(sameQ <= QWEN35_MOE_SAME, `qwen35moe ${kind} ${kernelFamily}: GGUF Q8_0 and load-time Q8_0 differ by ${sameQ}`);
      }
    });
  });
}
