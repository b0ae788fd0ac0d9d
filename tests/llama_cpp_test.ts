/**
 * A second implementation: llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary, run by
 * tests/helpers/llama_cpp_greedy.ts under Deno from both runtimes) runs the GGUF files
 * `convert` writes (f32/f16, Q8_0, Q4_0) and must give our greedy tokens on the reference
 * prompts, up to the top-2 margin rule: the two may part only at a step where our top-2
 * logit margin is below 2% of the largest logit (each side may be off by 1e-2 of the
 * logit range: llama.cpp quantizes activations to 8 bits for Q8_0/Q4_0 matmuls and keeps
 * its KV cache in f16).
 *
 * Known: llama.cpp runs Mistral GGUFs as plain llama and ignores
 * `llama.attention.sliding_window` (node-llama-cpp 3.21.1), so for mistral-tiny (window 16)
 * only the tokens generated while the sequence still fits in the window are compared.
 *
 * qwen35-tiny (llama.cpp's `qwen35`: Gated DeltaNet + gated attention) is held to more: at
 * every generated step llama.cpp's logits (its log-probabilities, which equal the logits up
 * to one constant per row) must equal ours within LOGIT_TOL of the largest logit. The greedy
 * rule alone let a wrong rope.dimension_sections through (5 of 8 rotary pairs unrotated in
 * llama.cpp: logits 6e-2 off, the tokens parted only at near-ties). For Q8_0 / Q4_0 the
 * comparison runs llama.cpp on an F32 file of the same dequantized weights: its quantized
 * matmuls round the activations to 8 bits, which moves this model's logits by up to ~0.1
 * of the largest (measured 2026-12-07; qwen3-tiny: ~0.02), past the margin rule. The real
 * quantized files must still load and generate in llama.cpp.
 *
 * llama.cpp's YaRN always rounds the ends of its ramp (ggml_rope_yarn_corr_dims floors and
 * ceils: transformers' `truncate: true`), while gpt-oss checkpoints say `truncate: false`; so
 * for gpt-oss, llama.cpp's tokens are compared with ours for the same checkpoint with
 * `truncate: true` (on the GGUF files of the real one, whose tokens differ from it).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert } from "./helpers/assert.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { KQUANT_QWEN3_MOE, writeDequantized } from "./helpers/kquant_moe.ts";
import { writeQwen35MoeFromDense, writeRandomQwen35Moe } from "./helpers/qwen35_moe_checkpoint.ts";
import { greedyIds, HYBRID_MODEL_NAMES, loadGolden, maxAbs, MODEL_NAMES, modelDir, MOE_MODEL_NAMES, promptLogits } from "./helpers/reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { Engine } from "../src/engine/engine.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { writeRoundTripCheckpoint } from "./helpers/quant_goldens.ts";

const HELPER = new URL("./helpers/llama_cpp_greedy.ts", import.meta.url).pathname;
const TOKENS = 16;
const MARGIN = 0.02;
const QUANTS = ["none", "q8_0", "q4_0"] as const;
const LOGIT_TOL = 2e-3;
const HYBRID: readonly string[] = HYBRID_MODEL_NAMES;

/** llama.cpp's greedy continuations, one list per file. */
async function llamaCpp(files: string[], prompts: number[][]): Promise<number[][][]> {
  const r = await sys.run("deno", ["run", "-A", "--no-check=remote", HELPER, files.join(","), String(TOKENS), JSON.stringify(prompts)]);
  assert(r.code === 0, `llama.cpp helper failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** llama.cpp's log-probabilities after positions from[s] - 1 .. of each sequence (teacher-forced). */
async function llamaCppLogprobs(file: string, seqs: number[][], from: number[]): Promise<number[][][]> {
  const r = await sys.run("deno", ["run", "-A", "--no-check=remote", HELPER, "--logprobs", file, JSON.stringify(seqs), JSON.stringify(from)]);
  assert(r.code === 0, `llama.cpp helper failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** Largest |ours - theirs - c| over a row for the best constant c, relative to our largest |logit|. */
function shiftedError(ours: Float32Array, theirs: (number | null)[]): number {
  let lo = Infinity, hi = -Infinity;
  for (let t = 0; t < ours.length; t++) {
    assert(theirs[t] != null && Number.isFinite(theirs[t]), `llama.cpp gave no probability for token ${t}`);
    const d = ours[t] - theirs[t]!;
    lo = Math.min(lo, d);
    hi = Math.max(hi, d);
  }
  return (hi - lo) / 2 / maxAbs(ours);
}

/**
 * The largest {@link shiftedError} between llama.cpp's log-probabilities for `file` and our
 * logits, teacher-forced on each `seqs[p]` (a prompt of `promptLens[p]` tokens, then our
 * greedy tokens), over the generated positions.
 */
async function worstLogitError(runner: ModelRunner, file: string, seqs: number[][], promptLens: number[]): Promise<number> {
  const rows = await llamaCppLogprobs(file, seqs, promptLens);
  const V = runner.spec.vocabSize;
  let worst = 0;
  for (const [p, seq] of seqs.entries()) {
    const logits = await promptLogits(runner, seq);
    for (const [k, row] of rows[p].entries()) {
      const at = promptLens[p] - 1 + k;
      worst = Math.max(worst, shiftedError(logits.subarray(at * V, (at + 1) * V), row));
    }
  }
  return worst;
}

/** Our top1 - top2 margin, relative to the largest |logit|, at each generated step. */
async function margins(runner: ModelRunner, prompt: number[], ids: number[]): Promise<number[]> {
  const V = runner.spec.vocabSize;
  const logits = await promptLogits(runner, [...prompt, ...ids]);
  return ids.map((_, k) => {
    const row = logits.subarray((prompt.length - 1 + k) * V, (prompt.length + k) * V);
    const sorted = [...row].sort((a, b) => b - a);
    return (sorted[0] - sorted[1]) / maxAbs(row);
  });
}

/** A copy of checkpoint `name` in `dir` with its YaRN ramp truncated (what llama.cpp runs). */
async function truncatedYarn(name: string, dir: string): Promise<string> {
  const out = `${dir}/${name}-truncated`;
  await sys.mkdir(out);
  for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${modelDir(name)}/${f}`, `${out}/${f}`);
  const config = JSON.parse(await sys.readTextFile(`${modelDir(name)}/config.json`));
  config.rope_parameters.truncate = true;
  await sys.writeTextFile(`${out}/config.json`, JSON.stringify(config));
  return out;
}

// The MoE families too: llama.cpp's qwen3moe and gpt-oss (experts bf16 as stored, or MXFP4
// blocks; Q8_0/Q4_0 quantize the float experts too, MXFP4 stays; see `strict` below).
for (const name of [...MODEL_NAMES, ...HYBRID_MODEL_NAMES, ...MOE_MODEL_NAMES]) {
  test(`llama.cpp ${name}: greedy tokens from our GGUF files equal ours (f32/f16, Q8_0, Q4_0) up to near-ties`, async () => {
    const golden = await loadGolden(name);
    const window = name === "mistral-tiny" ? 16 : Infinity;
    const prompts = golden.cases.map((c) => c.prompt_ids).filter((p) => p.length + 4 <= window);
    assert(prompts.length > 0, "no prompt to compare");
    const hybrid = HYBRID.includes(name);
    await withTempDir(async (dir) => {
      const files = QUANTS.map((q) => `${dir}/${q}.gguf`);
      for (const [i, q] of QUANTS.entries()) await convertToGguf(modelDir(name), files[i], { quantization: q });
      // What llama.cpp's tokens are compared on: the files themselves, or for the hybrid an F32
      // file of each quantized file's dequantized weights (see the module doc).
      const refs = [...files];
      if (hybrid) {
        for (const [i, q] of QUANTS.entries()) {
          if (q === "none") continue;
          await writeRoundTripCheckpoint(modelDir(name), q, `${dir}/${q}-dequantized`);
          refs[i] = `${dir}/${q}-dequantized.gguf`;
          await convertToGguf(`${dir}/${q}-dequantized`, refs[i]);
        }
      }
      const theirs = await llamaCpp(refs, prompts);
      const quantized = hybrid ? await llamaCpp(files.slice(1), prompts) : [];
      const report: string[] = [];
      // gpt-oss: ours with llama.cpp's YaRN rounding, quantized at load time as the file is.
      const yarnAsLlamaCpp = name.startsWith("gpt-oss") ? await truncatedYarn(name, dir) : null;
      const moe = (MOE_MODEL_NAMES as readonly string[]).includes(name);
      for (const [i, q] of QUANTS.entries()) {
        const opts = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 2, numBlocks: 32 };
        const runner = yarnAsLlamaCpp ? await ModelRunner.load(yarnAsLlamaCpp, { ...opts, quantization: q }) : await ModelRunner.load(files[i], opts);
        const engine = Engine.start(runner);
        try {
          let equal = 0;
          const oursAll: number[][] = [];
          // MoE files with Q8_0/Q4_0 matrices (dense and experts): llama.cpp rounds the
          // activations of those matmuls to 8 bits, and a routing choice that flips in any layer
          // moves every later logit, so a parting there is reported, not held to the near-tie
          // rule (the f32/bf16 file is; the Q8_0 / Q4_0 blocks equal load-time quantization's,
          // gguf_reference_test.ts).
          const strict = q === "none" || !moe;
          for (const [p, prompt] of prompts.entries()) {
            // (llama.cpp stops early at an end-of-generation token: a shorter list parts there.)
            assert(theirs[i][p].length > 0, `${name} ${q}: llama.cpp generated nothing for prompt ${p}`);
            const ours = await greedyIds(engine, prompt, TOKENS);
            oursAll.push(ours);
            const compared = Math.min(TOKENS, window - prompt.length);
            const at = ours.slice(0, compared).findIndex((id, k) => id !== theirs[i][p][k]);
            if (at === -1) {
              equal++;
              continue;
            }
            const m = (await margins(runner, prompt, ours))[at];
            report.push(`${q} prompt ${p}: parts at step ${at} (our top-2 margin ${m.toExponential(2)})`);
            if (!strict) continue;
            assert(m < MARGIN, `${name} ${q} prompt ${p}: llama.cpp gives ${theirs[i][p][at]} at step ${at}, we give ${ours[at]} with a top-2 margin of ${m} of the largest logit\n ours ${ours}\n llama.cpp ${theirs[i][p]}`);
          }
          report.push(`${q}: ${equal}/${prompts.length} identical`);
          if (hybrid) {
            const seqs = prompts.map((prompt, p) => [...prompt, ...oursAll[p].slice(0, -1)]);
            const worst = await worstLogitError(runner, refs[i], seqs, prompts.map((p) => p.length));
            report.push(`${q}: logits vs llama.cpp ${worst.toExponential(2)}`);
            assert(worst <= LOGIT_TOL, `${name} ${q}: llama.cpp's logits differ from ours by ${worst} of the largest logit`);
            if (q !== "none") {
              // The real quantized file runs in llama.cpp; its tokens are reported, not held to the rule.
              const real = quantized[i - 1];
              assert(real.length === prompts.length && real.every((ids) => ids.length === TOKENS), `${q}: llama.cpp generated ${JSON.stringify(real)}`);
              const same = real.map((ids, p) => {
                const at = ids.findIndex((id, k) => id !== oursAll[p][k]);
                return at === -1 ? TOKENS : at;
              });
              report.push(`${q} file in llama.cpp: first ${same.join("/")} of ${TOKENS} tokens equal ours`);
            }
          }
        } finally {
          await engine.close();
          runner.gpu.device.destroy();
        }
      }
      console.log(`  ${name}: ${report.join("; ")}`);
    });
  });
}

// K-quant experts (Q4_K gate/up, Q6_K down; dense Q4_K / Q6_K v), on a synthetic qwen3moe
// whose widths are multiples of 256 (tests/helpers/kquant_moe.ts). llama.cpp runs the real
// file with its activations rounded to 8 bits (Q8_K) in every K-quant matmul, which parts
// greedy paths of this random-weight model where routing flips (measured: 1/4 prompts
// identical); so, as for qwen35's quantized files, the tokens and logits are held on an F32
// file of the same dequantized weights, and the real file must load and generate.
test("llama.cpp qwen3moe K-quant experts (Q4_K_M-like): greedy tokens and logits of the dequantized weights equal ours from the K-quant file; llama.cpp runs the K-quant file", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(`${dir}/ck`, KQUANT_QWEN3_MOE, { seed: 7 });
    const file = `${dir}/kq.gguf`;
    await convertToGguf(`${dir}/ck`, file, { quantization: "q4_k_m" });
    await writeDequantized(file, `${dir}/ck`, `${dir}/ref`);
    const ref = `${dir}/ref.gguf`;
    await convertToGguf(`${dir}/ref`, ref);
    const prompts = [[1, 5, 9, 44, 7, 100, 3, 250, 17, 8, 61, 2], [1, 42], [1, 300, 301, 302, 7], [1, 77, 88, 99, 111, 222]];
    const [theirs, real] = await llamaCpp([ref, file], prompts);
    const runner = await ModelRunner.load(file, { maxTokens: 128, maxLogitRows: 128, maxSeqs: 2, numBlocks: 32 });
    const engine = Engine.start(runner);
    const report: string[] = [];
    try {
      const seqs: number[][] = [];
      for (const [p, prompt] of prompts.entries()) {
        const ours = await greedyIds(engine, prompt, TOKENS);
        const at = ours.findIndex((id, k) => id !== theirs[p][k]);
        if (at !== -1) {
          const m = (await margins(runner, prompt, ours))[at];
          assert(m < MARGIN, `prompt ${p}: llama.cpp gives ${theirs[p][at]} at step ${at}, we give ${ours[at]} with a top-2 margin of ${m}\n ours ${ours}\n llama.cpp ${theirs[p]}`);
        }
        const same = real[p].findIndex((id, k) => id !== ours[k]);
        report.push(`prompt ${p}: dequantized ${at === -1 ? "identical" : `parts at ${at}`}, K-quant file first ${same === -1 ? TOKENS : same}/${TOKENS} equal`);
        assert(real[p].length === TOKENS, `llama.cpp generated ${real[p]} from the K-quant file`);
        seqs.push([...prompt, ...ours.slice(0, -1)]);
      }
      const worst = await worstLogitError(runner, ref, seqs, prompts.map((p) => p.length));
      report.push(`logits vs llama.cpp on the dequantized weights ${worst.toExponential(2)}`);
      assert(worst <= LOGIT_TOL, `llama.cpp's logits differ from ours by ${worst} of the largest logit`);
    } finally {
      await engine.close();
      runner.gpu.device.destroy();
    }
    console.log(`  qwen3moe K-quant: ${report.join("; ")}`);
  });
});

// Qwen3.5-MoE (llama.cpp's `qwen35moe`): the qwen35 checks (greedy tokens, and llama.cpp's
// logits within LOGIT_TOL at every generated step) on F32 files of the two test checkpoints
// (tests/helpers/qwen35_moe_checkpoint.ts): qwen35-tiny rewritten as a sparse model, and random
// weights with distinct experts, a shared expert of its own width and 16-wide tiled value heads.
for (const kind of ["from-dense", "random"] as const) {
  test(`llama.cpp qwen35moe (${kind}): greedy tokens and logits from our GGUF file equal ours`, async () => {
    await withTempDir(async (dir) => {
      const ck = `${dir}/ck`;
      if (kind === "from-dense") await writeQwen35MoeFromDense(ck, { experts: 4, topK: 2, layout: "fused" });
      else await writeRandomQwen35Moe(ck);
      // All F32: the from-dense checkpoint's bf16 experts would be BF16 stacks, whose matmuls
      // llama.cpp runs on bf16-rounded activations (measured: 6e-3 of the largest logit).
      const f32 = `${dir}/f32`;
      await writeDequantized(ck, ck, f32);
      const file = `${dir}/f.gguf`;
      await convertToGguf(f32, file);
      const prompts = kind === "from-dense" ? (await loadGolden("qwen35-tiny")).cases.map((c) => c.prompt_ids) : [[1, 5, 9, 44, 7, 100, 3, 250], [1, 42], [1, 300, 301, 302, 7]];
      const [theirs] = await llamaCpp([file], prompts);
      const runner = await ModelRunner.load(file, { maxTokens: 128, maxLogitRows: 128, maxSeqs: 2, numBlocks: 32 });
      const engine = Engine.start(runner);
      let worst = 0;
      let equal = 0;
      try {
        const seqs: number[][] = [];
        for (const [p, prompt] of prompts.entries()) {
          const ours = await greedyIds(engine, prompt, TOKENS);
          const at = ours.findIndex((id, k) => id !== theirs[p][k]);
          if (at === -1) equal++;
          else {
            const m = (await margins(runner, prompt, ours))[at];
            assert(m < MARGIN, `prompt ${p}: llama.cpp gives ${theirs[p][at]} at step ${at}, we give ${ours[at]} with a top-2 margin of ${m}\n ours ${ours}\n llama.cpp ${theirs[p]}`);
          }
          seqs.push([...prompt, ...ours.slice(0, -1)]);
        }
        worst = await worstLogitError(runner, file, seqs, prompts.map((p) => p.length));
      } finally {
        await engine.close();
        runner.gpu.device.destroy();
      }
      console.log(`  qwen35moe ${kind}: ${equal}/${prompts.length} identical, logits vs llama.cpp ${worst.toExponential(2)}`);
      assert(worst <= LOGIT_TOL, `qwen35moe ${kind}: llama.cpp's logits differ from ours by ${worst} of the largest logit`);
    });
  });
}
