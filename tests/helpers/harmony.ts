/**
 * A gpt-oss checkpoint with its real chat template: gpt-oss-tiny's files (no template, the
 * shared tokenizer) plus tests/fixtures/chat_templates/gpt_oss.jinja, openai/gpt-oss-120b's
 * chat_template.jinja (Apache-2.0) byte for byte as llama.cpp vendors it
 * (models/templates/openai-gpt-oss-120b.jinja, added by ggml-org/llama.cpp #15181 on
 * 2025-08-14, read from a fork's copy of that commit). gpt-oss-20b's template was not
 * compared here.
 * @module
 */
import * as sys from "./platform.ts";
import { MODELS_DIR, modelDir } from "./reference.ts";
import { bf16BitsToF32, f32ToBf16Bits } from "./synthetic_checkpoint.ts";

/** The vendored gpt-oss chat template. */
export function gptOssTemplate(): Promise<string> {
  return sys.readTextFile(`${MODELS_DIR}../chat_templates/gpt_oss.jinja`);
}

/** Writes gpt-oss-tiny with the gpt-oss chat template into `dir` (a new folder). */
export async function writeHarmonyCheckpoint(dir: string): Promise<string> {
  await sys.mkdir(dir);
  for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]) {
    await sys.copyFile(`${modelDir("gpt-oss-tiny")}/${f}`, `${dir}/${f}`);
  }
  const config = JSON.parse(await sys.readTextFile(`${modelDir("gpt-oss-tiny")}/tokenizer_config.json`));
  await sys.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ ...config, chat_template: await gptOssTemplate() }));
  return dir;
}

/**
 * harmony's special tokens, mapped onto gpt-oss-tiny's byte pieces `<0x00>`.. (ids 3..9), as
 * qwen3-think-tiny maps `<think>`: the model keeps its 512 logits and the markers are single
 * special tokens, as in gpt-oss's real tokenizer (o200k_harmony).
 */
export const HARMONY_TOKEN_IDS: Record<string, number> = {
  "<|start|>": 3,
  "<|channel|>": 4,
  "<|message|>": 5,
  "<|end|>": 6,
  "<|return|>": 7,
  "<|call|>": 8,
  "<|constrain|>": 9,
};

/**
 * {@link writeHarmonyCheckpoint} with harmony's markers as special tokens (see
 * {@link HARMONY_TOKEN_IDS}), so that `<|channel|>final<|message|>` has one id sequence.
 */
export async function writeHarmonyTokensCheckpoint(dir: string): Promise<string> {
  await writeHarmonyCheckpoint(dir);
  const json = JSON.parse(await sys.readTextFile(`${dir}/tokenizer.json`));
  const vocab: Record<string, number> = json.model.vocab;
  for (const [piece, id] of Object.entries(HARMONY_TOKEN_IDS)) {
    const byte = `<0x${(id - 3).toString(16).toUpperCase().padStart(2, "0")}>`;
    if (vocab[byte] !== id) throw new Error(`gpt-oss-tiny's id ${id} is not ${byte}`);
    delete vocab[byte];
    vocab[piece] = id;
    json.added_tokens.push({ id, content: piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  await sys.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
  return dir;
}

/** bf16 tensors of a safetensors file, rewritten in place: `edit` gets each one's floats and shape. */
async function editBf16Tensors(path: string, edit: (name: string, data: Float32Array, shape: number[]) => boolean): Promise<void> {
  const bytes = await sys.readFile(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  for (const [name, t] of Object.entries<any>(header)) {
    if (name === "__metadata__" || t.dtype !== "BF16") continue;
    const [begin, end] = t.data_offsets;
    const data = new Float32Array((end - begin) / 2);
    const at = 8 + n + begin;
    for (let i = 0; i < data.length; i++) data[i] = bf16BitsToF32(view.getUint16(at + 2 * i, true));
    if (!edit(name, data, t.shape)) continue;
    for (let i = 0; i < data.length; i++) view.setUint16(at + 2 * i, f32ToBf16Bits(data[i]), true);
  }
  await sys.writeFile(path, bytes);
}

/**
 * Makes the checkpoint's weights a bigram table (the next token's logits depend on the
 * current token only) in which each id of `next` is followed by its listed successors with
 * equal, overwhelming logits, and every other id by gpt-oss-tiny's random logits: attention
 * and expert outputs are zeroed (the residual stream is the token's embedding) and the listed
 * ids get one-hot embeddings on hidden dimensions of their own. A random-init model never
 * writes harmony by itself; this one writes a scripted run of tokens, sampled where an id
 * has several successors.
 */
export async function writeBigramWeights(dir: string, next: Map<number, number[]>): Promise<void> {
  const H = 128;
  const dims = new Map([...next.keys()].map((id, i) => [id, i]));
  if (dims.size > H) throw new RangeError("too many scripted ids");
  await editBf16Tensors(`${dir}/model.safetensors`, (name, data) => {
    if (/o_proj\.(weight|bias)$|experts\.down_proj(_bias)?$/.test(name)) {
      data.fill(0);
    } else if (name === "model.norm.weight") {
      data.fill(1);
    } else if (name === "model.embed_tokens.weight") {
      for (const [id, k] of dims) data.fill(0, id * H, (id + 1) * H).set([1], id * H + k);
    } else if (name === "lm_head.weight") {
      for (let row = 0; row < data.length / H; row++) for (const k of dims.values()) data[row * H + k] = 0;
      for (const [id, k] of dims) for (const to of next.get(id)!) data[to * H + k] = 4;
    } else {
      return false;
    }
    return true;
  });
}
