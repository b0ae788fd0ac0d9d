/**
 * Builds a random-init checkpoint with SmolLM2-135M's shapes (hidden 576, 30 layers, 9 heads,
 * 3 KV heads, intermediate 1536, vocab 49152, tied embeddings, f16) in a temp directory, so
 * the kernels and the peer comparison see a model whose matrices are big enough to be
 * bandwidth-bound. Weights come from a table of f16 normals indexed by a xorshift stream:
 * a few hundred MB in about a second. The tokenizer is stories260K's, padded to the vocab.
 * @module
 */
import { expectedTensors, parseModelSpec } from "../src/model/config.ts";
import { Rng } from "./rng.ts";
import { createFile, mkdir, readFile, readTextFile, writeFile } from "../src/runtime/runtime.ts";

/** SmolLM2-135M's config.json fields (llama architecture). */
export const SMOLLM2_135M_CONFIG: Record<string, unknown> = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  head_dim: 64,
  vocab_size: 49152,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  rope_scaling: null,
  hidden_act: "silu",
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "float16",
};

/** Options for {@link writeSyntheticModel}. */
export interface SyntheticModelOptions {
  /** Where the tokenizer files come from (stories260K's directory). */
  tokenizerDir: string;
  /** Config fields merged over {@link SMOLLM2_135M_CONFIG}. */
  config?: Record<string, unknown>;
  seed?: number;
  /** Standard deviation of matrix weights (default 0.02, SmolLM2's initializer_range). */
  std?: number;
}

/** f16 bit patterns of `count` normal samples with standard deviation `std` (plus a mean). */
function f16NormalTable(rng: Rng, count: number, mean: number, std: number): Uint16Array {
  const f = new Float16Array(count);
  for (let i = 0; i < count; i++) f[i] = mean + std * rng.normal();
  return new Uint16Array(f.buffer);
}

/** stories260K's tokenizer.json with its vocab padded to `vocabSize` pieces. */
export function padTokenizer(tokenizerJson: any, vocabSize: number): any {
  const out = structuredClone(tokenizerJson);
  const vocab = out.model.vocab as Record<string, number>;
  for (let id = Object.keys(vocab).length; id < vocabSize; id++) vocab[`\u2581w${id}`] = id;
  return out;
}

/** Writes config.json, model.safetensors (f16) and tokenizer files into `dir`; returns its bytes. */
export async function writeSyntheticModel(
  dir: string,
  options: SyntheticModelOptions,
): Promise<number> {
  const config = { ...SMOLLM2_135M_CONFIG, ...options.config };
  const spec = parseModelSpec(config);
  const rng = new Rng(options.seed ?? 135);
  const matrixTable = f16NormalTable(rng, 1 << 16, 0, options.std ?? 0.02);
  const normTable = f16NormalTable(rng, 1 << 10, 1, 0.02);
  const tensors = expectedTensors(spec);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 2;
    header[t.name] = { dtype: "F16", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let text = JSON.stringify(header);
  while (text.length % 8 !== 0) text += " ";
  const headerBytes = new TextEncoder().encode(text);
  await mkdir(dir);
  const file = await createFile(`${dir}/model.safetensors`);
  const write = (b: Uint8Array) => file.write(b);
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
    await write(len);
    await write(headerBytes);
    let s = (options.seed ?? 135) * 2654435761 >>> 0 || 1;
    for (const t of tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const table = t.shape.length === 1 ? normTable : matrixTable;
      const mask = table.length - 1;
      const data = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        data[i] = table[(s >>> 7) & mask];
      }
      await write(new Uint8Array(data.buffer));
    }
  } finally {
    await file.close();
  }
  await writeFile(`${dir}/config.json`, JSON.stringify(config, null, 2));
  const tok = JSON.parse(await readTextFile(`${options.tokenizerDir}/tokenizer.json`));
  await writeFile(`${dir}/tokenizer.json`, JSON.stringify(padTokenizer(tok, spec.vocabSize)));
  await writeFile(
    `${dir}/tokenizer_config.json`,
    await readFile(`${options.tokenizerDir}/tokenizer_config.json`),
  );
  return 8 + headerBytes.length + offset;
}
