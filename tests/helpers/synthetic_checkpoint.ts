/**
 * Builds safetensors files and whole random-init checkpoints in temp directories, for tests
 * of the loader (including deliberately broken files). Never writes into the repository.
 * @module
 */
import { Rng } from "../../bench/rng.ts";
import * as sys from "./platform.ts";
import { expectedTensors, parseModelSpec } from "../../src/model/config.ts";
import type { SafetensorsDType } from "../../src/model/safetensors.ts";
import { MODELS_DIR } from "./fixtures.ts";

/** One tensor to write; `data` holds f32 values that are rounded to `dtype`. */
export interface SyntheticTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array;
}

/** Ways to break a file written by {@link writeSafetensors}. */
export interface CorruptOptions {
  /** Edit the header object before it is serialised (e.g. set a bad dtype or offsets). */
  patchHeader?: (header: Record<string, any>) => void;
  /** Replace the serialised header text entirely (e.g. with invalid JSON). */
  headerText?: string;
  /** Write this value in the 8-byte header length field instead of the real one. */
  headerLength?: bigint | number;
  /** Drop this many bytes from the end of the file. */
  truncateBytes?: number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> IEEE half bits, round to nearest even (overflow -> inf, NaN kept quiet). */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m * 2^-24; below half the smallest subnormal rounds to 0.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, which is the correct rounding.
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1))) r++;
  return sign | r;
}

/** IEEE half bits -> number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** f32 -> bfloat16 bits, round to nearest even. */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> number. */
export function bf16BitsToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** Little-endian bytes of `data` stored as `dtype`. */
export function encodeTensor(data: Float32Array, dtype: SafetensorsDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.slice().buffer);
  const bits = new Uint16Array(data.length);
  const encode = dtype === "F16" ? f32ToF16Bits : f32ToBf16Bits;
  for (let i = 0; i < data.length; i++) bits[i] = encode(data[i]);
  return new Uint8Array(bits.buffer);
}

/** Decodes little-endian tensor bytes of `dtype` into f32 values. */
export function decodeTensor(bytes: Uint8Array, dtype: SafetensorsDType): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = dtype === "F32" ? 4 : 2;
  const out = new Float32Array(bytes.byteLength / size);
  for (let i = 0; i < out.length; i++) {
    out[i] = dtype === "F32"
      ? view.getFloat32(i * 4, true)
      : dtype === "F16"
      ? f16BitsToF32(view.getUint16(i * 2, true))
      : bf16BitsToF32(view.getUint16(i * 2, true));
  }
  return out;
}

/** A safetensors file image: 8-byte LE header length, header JSON, data. */
export function makeRawSafetensorsBytes(
  header: object,
  dataBytes: Uint8Array,
  opts: { headerText?: string; headerLength?: bigint | number } = {},
): Uint8Array {
  let text = opts.headerText ?? JSON.stringify(header);
  // Pad to 8 bytes as the reference writer does, so the data section stays aligned.
  if (opts.headerText === undefined) {
    while (new TextEncoder().encode(text).length % 8 !== 0) text += " ";
  }
  const headerBytes = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + headerBytes.length + dataBytes.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(opts.headerLength ?? headerBytes.length), true);
  out.set(headerBytes, 8);
  out.set(dataBytes, 8 + headerBytes.length);
  return out;
}

/** Writes tensors as a safetensors file (optionally corrupted). */
export async function writeSafetensors(
  path: string,
  tensors: SyntheticTensor[],
  opts: { corrupt?: CorruptOptions; metadata?: Record<string, string> } = {},
): Promise<void> {
  const header: Record<string, any> = { __metadata__: opts.metadata ?? { format: "pt" } };
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const bytes = encodeTensor(t.data, t.dtype);
    header[t.name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [offset, offset + bytes.length],
    };
    parts.push(bytes);
    offset += bytes.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  const corrupt = opts.corrupt ?? {};
  corrupt.patchHeader?.(header);
  let file = makeRawSafetensorsBytes(header, data, {
    headerText: corrupt.headerText,
    headerLength: corrupt.headerLength,
  });
  if (corrupt.truncateBytes) {
    file = file.subarray(0, Math.max(0, file.length - corrupt.truncateBytes));
  }
  await sys.writeFile(path, file);
}

/** The benchmark's seeded PRNG (mulberry32, Box-Muller normals), shared with the tests. */
export { Rng };

/** A small llama config (stories260K's tokenizer vocab) to start synthetic checkpoints from. */
export const TINY_LLAMA_CONFIG: Record<string, unknown> = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 512,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  rope_scaling: null,
  hidden_act: "silu",
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: "float32",
};

/** Options for {@link writeSyntheticCheckpoint}. */
export interface SyntheticCheckpointOptions {
  /** Storage dtype of every tensor (default F32). */
  dtype?: SafetensorsDType;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Split into this many shards with a model.safetensors.index.json (default: one file). */
  sharded?: number;
  /** Standard deviation of weights (default 0.05). */
  std?: number;
  /** Edit tensors (shapes, names) before writing, e.g. to plant a shape mismatch. */
  mutate?: (tensors: SyntheticTensor[]) => void;
}

/**
 * Writes config.json, random-init weights for every tensor the config needs and
 * stories260K's tokenizer files into `dir`. `config` is merged over {@link TINY_LLAMA_CONFIG}.
 * Returns the tensors written (values already rounded to the dtype).
 */
export async function writeSyntheticCheckpoint(
  dir: string,
  config: Record<string, unknown> = {},
  opts: SyntheticCheckpointOptions = {},
): Promise<SyntheticTensor[]> {
  const full = { ...TINY_LLAMA_CONFIG, ...config };
  const dtype = opts.dtype ?? "F32";
  full.torch_dtype = { F32: "float32", F16: "float16", BF16: "bfloat16", U8: "uint8" }[dtype];
  const spec = parseModelSpec(full);
  const rng = new Rng(opts.seed ?? 1);
  const std = opts.std ?? 0.05;
  const tensors: SyntheticTensor[] = expectedTensors(spec).map(({ name, shape }) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    // Norm weights near their identity value so activations stay tame.
    const isNorm = shape.length === 1 && !name.endsWith(".bias");
    const centre = isNorm ? 1 - spec.normOffset : 0;
    for (let i = 0; i < data.length; i++) data[i] = centre + std * rng.normal();
    return { name, dtype, shape, data: decodeTensor(encodeTensor(data, dtype), dtype) };
  });
  opts.mutate?.(tensors);
  await sys.mkdir(dir, { recursive: true });
  await sys.writeTextFile(`${dir}/config.json`, JSON.stringify(full, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await sys.copyFile(`${MODELS_DIR}stories260K/${f}`, `${dir}/${f}`);
  }
  const shards = opts.sharded ?? 0;
  if (shards <= 0) {
    await writeSafetensors(`${dir}/model.safetensors`, tensors);
    return tensors;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const name = `model-${String(s + 1).padStart(5, "0")}-of-${
      String(shards).padStart(5, "0")
    }.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const t of part) weightMap[t.name] = name;
    await writeSafetensors(`${dir}/${name}`, part);
  }
  await sys.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2),
  );
  return tensors;
}

/** Runs `fn` with a fresh temp directory that is removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await sys.makeTempDir({ prefix: "ckpt_test_" });
  try {
    return await fn(dir);
  } finally {
    await sys.remove(dir, { recursive: true });
  }
}
