/**
 * How llama.cpp's `qwen35` GGUF files store Qwen3.5's tensors differently from Hugging Face
 * (convert_hf_to_gguf.py's Qwen3NextModel and _LinearAttentionVReorderBase):
 * - every decoder RMSNorm weight is stored as 1 + w (the Gated DeltaNet norm as w);
 * - `ssm_a` holds -exp(A_log);
 * - `ssm_conv1d` is the conv weight squeezed to [channels, kernel];
 * - with fewer key than value heads, the value heads of every value-indexed tensor are
 *   reordered from grouped by key head to tiled ([G0v0, G1v0, ..., G0v1, G1v1, ...]): the v
 *   rows of in_proj_qkv and of the conv, in_proj_z, in_proj_a / in_proj_b rows, A_log and
 *   dt_bias, and out_proj's columns. Our kernels read either order
 *   (`LinearAttentionSpec.valueHeadOrder`), so a reader keeps the file's order.
 * @module
 */
import { valueDType } from "../safetensors.ts";
import type { LinearAttentionSpec, ModelSpec } from "../config.ts";
import type { TensorChunk } from "../safetensors.ts";
import { collectChunks, type SourceTensor, type TensorSource } from "../tensor_source.ts";
import { dequantize } from "../quant/dequantize.ts";
import { writeF16 } from "../quant/f16.ts";

/** tiled[p] = grouped[perm[p]] for `heads` value heads over `numKeyHeads` key heads. */
export function tiledValueHeads(numKeyHeads: number, heads: number): Int32Array {
  const perK = heads / numKeyHeads;
  const perm = new Int32Array(heads);
  for (let j = 0; j < perK; j++) for (let g = 0; g < numKeyHeads; g++) perm[j * numKeyHeads + g] = g * perK + j;
  return perm;
}

/** Rows [from, from + heads * rowsPerHead) of a row-major [rows, cols] matrix, value heads tiled. */
function tileRows(values: Float32Array, cols: number, from: number, lin: LinearAttentionSpec, rowsPerHead: number): Float32Array {
  const perm = tiledValueHeads(lin.numKeyHeads, lin.numValueHeads);
  const out = values.slice();
  const headElems = rowsPerHead * cols;
  perm.forEach((src, dst) => out.set(values.subarray(from * cols + src * headElems, from * cols + (src + 1) * headElems), from * cols + dst * headElems));
  return out;
}

/** A matrix [rows, cols] with its columns' value heads tiled (out_proj). */
function tileColumns(values: Float32Array, rows: number, lin: LinearAttentionSpec): Float32Array {
  const perm = tiledValueHeads(lin.numKeyHeads, lin.numValueHeads);
  const dv = lin.valueHeadDim;
  const cols = lin.numValueHeads * dv;
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    perm.forEach((src, dst) => out.set(values.subarray(r * cols + src * dv, r * cols + (src + 1) * dv), r * cols + dst * dv));
  }
  return out;
}

/** Whether the HF tensor's values change on the way into a `qwen35` GGUF file. */
export function qwen35Transforms(name: string): boolean {
  return /norm\.weight$/.test(name) || /\.linear_attn\./.test(name);
}

/** A tensor's values (HF row-major, `shape`) as llama.cpp's `qwen35` files store them. */
export function qwen35GgufValues(spec: ModelSpec, name: string, values: Float32Array, shape: readonly number[]): Float32Array {
  const lin = spec.linearAttention!;
  if (/norm\.weight$/.test(name) && !name.endsWith("linear_attn.norm.weight")) return values.map((w) => Math.fround(1 + w));
  let v = name.endsWith(".A_log") ? values.map((a) => Math.fround(-Math.exp(a))) : values;
  if (lin.numKeyHeads === lin.numValueHeads || !name.includes(".linear_attn.")) return v;
  const keyDim = 2 * lin.numKeyHeads * lin.keyHeadDim;
  const cols = shape.length === 2 ? shape[1] : shape.length === 3 ? shape[1] * shape[2] : 1;
  if (name.endsWith("in_proj_qkv.weight") || name.endsWith("conv1d.weight")) v = tileRows(v, cols, keyDim, lin, lin.valueHeadDim);
  else if (name.endsWith("in_proj_z.weight")) v = tileRows(v, cols, 0, lin, lin.valueHeadDim);
  else if (/in_proj_[ab]\.weight$|\.A_log$|\.dt_bias$/.test(name)) v = tileRows(v, cols, 0, lin, 1);
  else if (name.endsWith("out_proj.weight")) v = tileColumns(v, shape[0], lin);
  return v;
}

/** The HF values of a `qwen35` GGUF tensor whose stored form differs beyond head order (ssm_a). */
export function qwen35HfValues(name: string, values: Float32Array): Float32Array {
  return name.endsWith(".A_log") ? values.map((a) => Math.fround(Math.log(-a))) : values;
}

/** Whether a transformed tensor keeps its f16 storage: a matrix whose values are only reordered. */
function keepsF16(info: SourceTensor): boolean {
  return info.dtype === "F16" && info.shape.length === 2;
}

/**
 * A checkpoint's tensors with the values a `qwen35` GGUF file stores (F32, f16 matrices F16), for the converter;
 * the rest pass through. Load-time quantization wraps this, so blocks quantize the file's values.
 */
export class Qwen35GgufSource implements TensorSource {
  readonly source: string;
  #inner: TensorSource;
  #spec: ModelSpec;

  constructor(inner: TensorSource, spec: ModelSpec) {
    this.#inner = inner;
    this.#spec = spec;
    this.source = inner.source;
  }

  has(name: string): boolean {
    return this.#inner.has(name);
  }

  names(): string[] {
    return this.#inner.names();
  }

  get(name: string): SourceTensor {
    const info = this.#inner.get(name);
    if (!qwen35Transforms(name)) return info;
    const n = info.shape.reduce((a, b) => a * b, 1);
    // An f16 matrix only changes row / column order (the in- and out-projections): it stays
    // f16, as llama.cpp's converter keeps it, rather than doubling the file and the matmuls.
    if (keepsF16(info)) return { ...info, byteLength: n * 2 };
    return { ...info, dtype: "F32", byteLength: n * 4 };
  }

  async *readChunks(info: SourceTensor, maxChunkBytes?: number): AsyncIterable<TensorChunk> {
    if (!qwen35Transforms(info.name)) {
      yield* this.#inner.readChunks(info, maxChunkBytes);
      return;
    }
    const inner = this.#inner.get(info.name);
    const values = dequantize(valueDType(inner), await this.#inner.read(inner));
    const out = qwen35GgufValues(this.#spec, info.name, values, info.shape);
    if (keepsF16(inner)) {
      const bytes = new Uint8Array(out.length * 2);
      for (let i = 0; i < out.length; i++) writeF16(bytes, 2 * i, out[i]);
      yield { offset: 0, bytes };
      return;
    }
    yield { offset: 0, bytes: new Uint8Array(out.buffer, out.byteOffset, out.byteLength) as Uint8Array<ArrayBuffer> };
  }

  read(info: SourceTensor): Promise<Uint8Array<ArrayBuffer>> {
    return collectChunks(info.byteLength, this.readChunks(info));
  }

  close(): void {
    this.#inner.close();
  }
}
