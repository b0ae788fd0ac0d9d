/**
 * Real Qwen3.5 checkpoints carry more than the language model: the hub's
 * `Qwen3_5ForConditionalGeneration` files hold a vision tower (`model.visual.*`) and a
 * multi-token-prediction head (`mtp.*`) next to `model.language_model.*`, and a causal-LM
 * export may keep `mtp.*` next to `model.*`. Text serving skips both, says so at load, never
 * converts them to GGUF, and gives the same logits as without them.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { decodeTensor, type SyntheticTensor, withTempDir, writeSafetensors } from "./helpers/synthetic_checkpoint.ts";
import { loadGolden, maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import { openModel } from "../src/model/model_source.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { readGgufHeader } from "../src/model/gguf/reader.ts";
import type { SafetensorsDType } from "../src/model/safetensors.ts";

const SRC = modelDir("qwen35-tiny");
const OPTS = { maxTokens: 128, maxLogitRows: 128, maxSeqs: 1, blockSize: 16, numBlocks: 16, weightDType: "f32", kvDtype: "f32" } as const;

/** qwen35-tiny's tensors as stored (vision tower included), decoded. */
async function fixtureTensors(): Promise<SyntheticTensor[]> {
  const bytes = await sys.readFile(`${SRC}/model.safetensors`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return Object.entries(header).filter(([k]) => k !== "__metadata__").map(([name, v]) => {
    const { dtype, shape, data_offsets: [a, b] } = v as { dtype: SafetensorsDType; shape: number[]; data_offsets: [number, number] };
    return { name, dtype, shape, data: decodeTensor(bytes.slice(8 + n + a, 8 + n + b), dtype) };
  });
}

/** An MTP head shaped like Qwen3.5's (one full-attention block, fc over [embedding, hidden]). */
function mtpHead(hidden: number): SyntheticTensor[] {
  const t = (name: string, shape: number[]): SyntheticTensor => ({ name, dtype: "BF16", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) });
  return [
    t("mtp.fc.weight", [hidden, 2 * hidden]),
    t("mtp.pre_fc_norm_embedding.weight", [hidden]),
    t("mtp.pre_fc_norm_hidden.weight", [hidden]),
    t("mtp.layers.0.self_attn.q_proj.weight", [512, hidden]),
    t("mtp.layers.0.mlp.down_proj.weight", [hidden, 320]),
    t("mtp.norm.weight", [hidden]),
  ];
}

/** Copies qwen35-tiny's config and tokenizer into `dir`, the config edited by `edit`. */
async function copyFiles(dir: string, edit: (c: Record<string, unknown>) => Record<string, unknown> = (c) => c) {
  await sys.mkdir(dir, { recursive: true });
  for (const f of ["generation_config.json", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${SRC}/${f}`, `${dir}/${f}`);
  await sys.writeTextFile(`${dir}/config.json`, JSON.stringify(edit(JSON.parse(await sys.readTextFile(`${SRC}/config.json`)))));
}

/** Runs `fn` with console.error captured. */
async function capturingErrors<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
  try {
    return { value: await fn(), lines };
  } finally {
    console.error = original;
  }
}

test("qwen35 checkpoints: the vision tower and an mtp.* head are skipped with a load log line, as hub VL files and as causal-LM exports, and change nothing", async () => {
  const fixture = await fixtureTensors();
  const vision = fixture.filter((t) => t.name.startsWith("model.visual.")).length;
  assertEquals(vision, 21);
  const mtp = mtpHead(128);
  const prompt = (await loadGolden("qwen35-tiny")).cases[0].prompt_ids;
  await withTempDir(async (dir) => {
    // As the hub ships it: model.language_model.*, model.visual.*, mtp.*.
    const vl = `${dir}/vl`;
    await copyFiles(vl);
    await writeSafetensors(`${vl}/model.safetensors`, [...fixture, ...mtp]);
    // A causal-LM export: model.* and mtp.*, text config at the top level.
    const lm = `${dir}/lm`;
    await copyFiles(lm, (c) => ({ ...(c.text_config as Record<string, unknown>), architectures: ["Qwen3_5ForCausalLM"] }));
    const plain = fixture.filter((t) => t.name.startsWith("model.language_model."))
      .map((t) => ({ ...t, name: t.name.replace("model.language_model.", "model.") }));
    await writeSafetensors(`${lm}/model.safetensors`, [...plain, ...mtp]);

    for (const [path, skipped] of [[vl, vision + mtp.length], [lm, mtp.length]] as const) {
      const index = await openCheckpointTensors(path);
      try {
        assertEquals(index.skippedTensors, skipped, path);
        assert(index.names().every((n) => n.startsWith("model.") && !n.startsWith("model.visual.") && !n.startsWith("model.language_model.")), path);
      } finally {
        index.close();
      }
      const { lines } = await capturingErrors(async () => (await openModel(path)).tensors.close());
      assert(lines.some((l) => l.includes(`skipping ${skipped} vision-tower / MTP tensors`)), lines.join("\n"));
      await convertToGguf(path, `${dir}/out.gguf`);
      const names = [...(await readGgufHeader(`${dir}/out.gguf`)).tensors.keys()];
      assert(!names.some((n) => n.includes("mtp") || n.includes("visual") || n.includes("nextn")), names.join(" "));
    }

    // The same logits as the fixture itself (which has no MTP head).
    const ref = await ModelRunner.load(SRC, OPTS);
    try {
      const want = await promptLogits(ref, prompt);
      for (const path of [vl, lm]) {
        const r = await ModelRunner.load(path, { ...OPTS, gpu: ref.gpu });
        try {
          assertEquals(maxAbsDiff(await promptLogits(r, prompt), want) / maxAbs(want), 0, path);
        } finally {
          r.close();
        }
      }
    } finally {
      ref.close();
      ref.gpu.device.destroy();
    }
  });
});
