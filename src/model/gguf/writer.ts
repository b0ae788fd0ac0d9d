/**
 * A GGUF v3 writer: typed metadata, tensors of any type we read (plain floats or ggml
 * blocks), data aligned to 32 bytes. Tensors are produced one at a time by a callback, so
 * a file is written with one tensor in memory, never the model.
 *
 * Layout: see {@link ./reader.ts}.
 * @module
 */
import { createFile } from "../../runtime/runtime.ts";
import { GGUF_MAGIC, GGUF_VALUE_TYPE } from "./reader.ts";
import { ggmlBytes, type GgmlTypeName, GGML_TYPES, type QuantType } from "../quant/ggml_types.ts";

/** One metadata value. */
export type GgufValue =
  | { type: "u32" | "i32" | "f32"; value: number }
  | { type: "u64"; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: "u32" | "i32" | "f32"; value: ArrayLike<number> }
  | { type: "array"; itemType: "string"; value: readonly string[] };

/**
 * Matrices to store as other block types (K-quant files such as a Q4_K_M's: `convert
 * --quantization q4_k_m`, or tests' own blocks): `type` picks by HF tensor name and input
 * length `k` (the row length of the blocks), `encode` gets its f32 values in HF row order
 * and returns the blocks (the converter permutes q/k rows as usual). Experts (moe_layout.ts):
 * a stack's type is its first expert's tensor's (Qwen3-MoE `mlp.experts.0.gate_proj.weight`;
 * gpt-oss `mlp.experts.gate_up_proj`, gate and up alike), and `encode` gets each Linear
 * matrix of the stack (gpt-oss: the transposed rows of all experts' gate, then of their up,
 * then down).
 */
export interface BlockOverride {
  type: (name: string, k: number) => QuantType | null;
  encode: (name: string, values: Float32Array, k: number) => Uint8Array;
}

/** One tensor to write. `dims` are GGUF order: innermost (contiguous) first. */
export interface GgufTensor {
  name: string;
  dims: number[];
  type: GgmlTypeName;
  /** The tensor's bytes (produced lazily, so big files never sit in memory at once). */
  bytes: () => Uint8Array | Promise<Uint8Array>;
  /**
   * The data offset to write in the header instead of the next aligned one ({@link
   * encodeGgufHeader} only: tests build malformed files with it).
   */
  offset?: number;
}

/** What {@link writeGguf} writes. */
export interface GgufFile {
  metadata: [string, GgufValue][];
  tensors: GgufTensor[];
  /** Data alignment in bytes (default 32, GGUF's default). */
  alignment?: number;
}

/** Growable little-endian byte buffer. */
class ByteWriter {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #reserve(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  u32(v: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.#reserve(4);
    this.#view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.#reserve(4);
    this.#view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.#reserve(8);
    this.#view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.length++] = v;
  }
  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  result(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  w.u32(GGUF_VALUE_TYPE[v.type]);
  switch (v.type) {
    case "u32":
      return w.u32(v.value);
    case "i32":
      return w.i32(v.value);
    case "f32":
      return w.f32(v.value);
    case "u64":
      return w.u64(v.value);
    case "bool":
      return w.u8(v.value ? 1 : 0);
    case "string":
      return w.string(v.value);
    case "array": {
      w.u32(GGUF_VALUE_TYPE[v.itemType]);
      w.u64(v.value.length);
      if (v.itemType === "string") { for (const s of v.value) w.string(s); }
      else {
        const put = v.itemType === "u32" ? w.u32.bind(w) : v.itemType === "i32" ? w.i32.bind(w) : w.f32.bind(w);
        for (let i = 0; i < v.value.length; i++) put(v.value[i]);
      }
      return;
    }
  }
}

/** Bytes a tensor of this type and these dims occupies. */
export function ggmlTensorBytes(type: GgmlTypeName, dims: readonly number[]): number {
  return ggmlBytes(GGML_TYPES[type], dims.reduce((a, b) => a * b, 1));
}

/** Serialises the header (everything before the data section, padding included). */
export function encodeGgufHeader(file: GgufFile): { header: Uint8Array; offsets: number[] } {
  const alignment = file.alignment ?? 32;
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(file.tensors.length);
  w.u64(file.metadata.length);
  for (const [key, value] of file.metadata) {
    w.string(key);
    writeValue(w, value);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const t of file.tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPES[t.type].id);
    w.u64(t.offset ?? offset);
    offsets.push(t.offset ?? offset);
    offset += ggmlTensorBytes(t.type, t.dims);
    offset = Math.ceil(offset / alignment) * alignment;
  }
  w.pad(alignment);
  return { header: w.result(), offsets };
}

/** Writes a GGUF v3 file; returns its size in bytes. Checks each tensor's byte length. */
export async function writeGguf(path: string, gguf: GgufFile): Promise<number> {
  const alignment = gguf.alignment ?? 32;
  const metadata: [string, GgufValue][] = gguf.alignment && !gguf.metadata.some(([k]) => k === "general.alignment")
    ? [...gguf.metadata, ["general.alignment", { type: "u32", value: alignment }]]
    : gguf.metadata;
  const { header, offsets } = encodeGgufHeader({ ...gguf, metadata });
  const file = await createFile(path);
  try {
    await file.write(header);
    let written = 0;
    for (const [i, t] of gguf.tensors.entries()) {
      const bytes = await t.bytes();
      const expected = ggmlTensorBytes(t.type, t.dims);
      if (bytes.length !== expected) {
        throw new Error(`GGUF tensor ${t.name}: ${bytes.length} bytes, expected ${expected}`);
      }
      if (written < offsets[i]) await file.write(new Uint8Array(offsets[i] - written));
      await file.write(bytes);
      written = offsets[i] + bytes.length;
    }
    const end = Math.ceil(written / alignment) * alignment;
    if (end > written) await file.write(new Uint8Array(end - written));
    return header.length + end;
  } finally {
    await file.close();
  }
}
