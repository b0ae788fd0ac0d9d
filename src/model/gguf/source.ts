/**
 * A GGUF file as a {@link TensorSource} in Hugging Face naming: F32/F16/BF16 tensors stream
 * as they are stored; block tensors (Q8_0, Q4_0, Q4_K, Q6_K) stream as dequantized f32
 * values through `readChunks` and as raw blocks through `readBlocks`. llama-family q/k rows
 * are put back into HF order on the way. Reads go by byte range, a few rows at a time.
 * @module
 */
import { valueDType } from "../safetensors.ts";
import { openFile, type ReadableFile } from "../../runtime/runtime.ts";
import { CheckpointError } from "../errors.ts";
import type { TensorChunk } from "../safetensors.ts";
import { collectChunks, type SourceTensor, type TensorSource } from "../tensor_source.ts";
import type { Architecture } from "../config.ts";
import { isQuantType } from "../quant/ggml_types.ts";
import { dequantize } from "../quant/dequantize.ts";
import { release } from "../release.ts";
import type { GgufHeader, GgufTensorInfo } from "./reader.ts";
import { hfName, permutedHeads, unpermuteQkRows } from "./names.ts";
import { qwen35HfValues } from "./qwen35_layout.ts";
import type { VirtualTensor } from "./moe_layout.ts";

const DEFAULT_CHUNK = 8 << 20;

interface Entry {
  info: SourceTensor;
  gguf: GgufTensorInfo;
  /** Heads whose rows to un-permute (0: none). */
  heads: number;
  /** Stored bytes of one row. */
  rowBytes: number;
}

/**
 * The tensors of a parsed GGUF file, under HF names. `virtual`: HF tensors rebuilt from parts
 * of the file's (the experts of a MoE file, moe_layout.ts), read whole (values and blocks).
 */
export class GgufTensorSource implements TensorSource {
  readonly source: string;
  readonly header: GgufHeader;
  #entries = new Map<string, Entry>();
  #virtual: Map<string, VirtualTensor>;
  #closed = false;

  constructor(header: GgufHeader, arch: Architecture, numHeads: number, numKvHeads: number, virtual = new Map<string, VirtualTensor>()) {
    this.header = header;
    this.source = header.path;
    this.#virtual = virtual;
    for (const t of header.tensors.values()) {
      const name = hfName(t.name, arch);
      if (name === null) continue;
      if (t.type.name === "MXFP4") throw new CheckpointError(header.path, `tensor ${t.name} is MXFP4: only gpt-oss expert tensors may be`);
      // llama.cpp's squeezed depthwise conv [kernel, channels] is HF's [channels, 1, kernel].
      const shape = name.endsWith(".conv1d.weight") && t.dims.length === 2 ? [t.dims[1], 1, t.dims[0]] : [...t.dims].reverse();
      const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
      const rowBytes = t.byteLength / rows;
      const elements = rows * t.dims[0];
      const quant = isQuantType(t.type.name);
      const info: SourceTensor = {
        name,
        // A_log comes back as f32 values (see readChunks).
        dtype: quant || name.endsWith(".A_log") ? "F32" : t.type.name as "F32" | "F16" | "BF16",
        shape,
        file: header.path,
        byteOffset: t.byteOffset,
        byteLength: quant || name.endsWith(".A_log") ? elements * 4 : t.byteLength,
      };
      if (quant) info.blocks = { type: t.type.name as "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K", rowBytes, byteLength: t.byteLength };
      const heads = permutedHeads(name, arch, numHeads, numKvHeads);
      if (heads && rows % heads !== 0) {
        throw new CheckpointError(header.path, `tensor ${t.name}: ${rows} rows do not split over ${heads} heads`);
      }
      // 1-D tensors (biases) are one "row" of elements: permute element-wise.
      const entry = t.dims.length === 1
        ? { info, gguf: t, heads, rowBytes: t.byteLength / t.dims[0] }
        : { info, gguf: t, heads, rowBytes };
      this.#entries.set(name, entry);
    }
  }

  has(name: string): boolean {
    return this.#entries.has(name) || this.#virtual.has(name);
  }

  names(): string[] {
    return [...this.#entries.keys(), ...this.#virtual.keys()];
  }

  get(name: string): SourceTensor {
    const v = this.#virtual.get(name);
    if (v) return v.info;
    const e = this.#entries.get(name);
    if (!e) throw new CheckpointError(this.source, `missing tensor ${name}`);
    return e.info;
  }

  /** The GGUF tensor behind an HF name. */
  ggufTensor(name: string): GgufTensorInfo {
    this.get(name);
    const e = this.#entries.get(name);
    // Rebuilt MoE tensors (moe_layout.ts) have no one GGUF tensor behind them.
    if (!e) throw new CheckpointError(this.source, `tensor ${name} is rebuilt from several GGUF tensors`);
    return e.gguf;
  }

  async *readChunks(info: SourceTensor, maxChunkBytes = DEFAULT_CHUNK): AsyncIterable<TensorChunk> {
    const v = this.#virtual.get(info.name);
    if (v) {
      if (this.#closed) throw new CheckpointError(this.source, "GGUF file is closed");
      yield { offset: 0, bytes: await v.read((t, offset, length) => this.#range(t, offset, length)) };
      return;
    }
    const e = this.#entry(info);
    if (info.name.endsWith(".A_log")) {
      // Stored as -exp(A_log) (a vector: one chunk).
      const values = qwen35HfValues(info.name, dequantize(valueDType(info), await collectChunks(e.gguf.byteLength, this.#raw(e, maxChunkBytes))));
      yield { offset: 0, bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) as Uint8Array<ArrayBuffer> };
      return;
    }
    if (!info.blocks) {
      yield* this.#raw(e, maxChunkBytes);
      return;
    }
    // Dequantized rows are larger than their blocks: size the raw reads to the f32 output.
    const expand = (info.byteLength / e.gguf.byteLength) || 1;
    for await (const { offset, bytes } of this.#raw(e, Math.max(1, Math.floor(maxChunkBytes / expand)))) {
      const values = dequantize(info.blocks.type, bytes);
      release(bytes);
      yield { offset: (offset / e.rowBytes) * e.gguf.dims[0] * 4, bytes: new Uint8Array(values.buffer) };
    }
  }

  readBlocks(info: SourceTensor, maxChunkBytes = DEFAULT_CHUNK): AsyncIterable<TensorChunk> {
    if (!info.blocks) throw new TypeError(`tensor ${info.name} is not quantized`);
    const v = this.#virtual.get(info.name);
    if (v?.readBlocks) return this.#virtualBlocks(v.readBlocks);
    return this.#raw(this.#entry(info), maxChunkBytes);
  }

  /** A rebuilt tensor's blocks, in one chunk. */
  async *#virtualBlocks(read: NonNullable<VirtualTensor["readBlocks"]>): AsyncIterable<TensorChunk> {
    if (this.#closed) throw new CheckpointError(this.source, "GGUF file is closed");
    yield { offset: 0, bytes: await read((t, offset, length) => this.#range(t, offset, length)) };
  }

  read(info: SourceTensor): Promise<Uint8Array<ArrayBuffer>> {
    return collectChunks(info.byteLength, this.readChunks(info));
  }

  close(): void {
    this.#closed = true;
  }

  #entry(info: SourceTensor): Entry {
    if (this.#closed) throw new CheckpointError(this.source, "GGUF file is closed");
    const e = this.#entries.get(info.name);
    if (!e) throw new CheckpointError(this.source, `missing tensor ${info.name}`);
    return e;
  }

  /** `length` bytes at `offset` of tensor `t`'s data. */
  async #range(t: GgufTensorInfo, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = new Uint8Array(length);
    const file = await openFile(this.source).catch((err) => {
      throw new CheckpointError(this.source, `cannot open: ${(err as Error).message}`, { cause: err });
    });
    try {
      let done = 0;
      while (done < length) {
        const n = await file.read(bytes.subarray(done), t.byteOffset + offset + done);
        if (n === 0) throw new CheckpointError(this.source, `tensor ${t.name}: unexpected end of file (file truncated?)`);
        done += n;
      }
    } finally {
      await file.close();
    }
    return bytes;
  }

  /** Stored bytes in chunks of whole rows (whole heads when un-permuting), in HF row order. */
  async *#raw(e: Entry, maxChunkBytes: number): AsyncIterable<TensorChunk> {
    const total = e.gguf.byteLength;
    const rows = total / e.rowBytes;
    const unit = e.heads ? rows / e.heads : 1;
    const rowsPerChunk = Math.max(1, Math.floor(maxChunkBytes / (e.rowBytes * unit))) * unit;
    const chunk = rowsPerChunk * e.rowBytes;
    let file: ReadableFile;
    try {
      file = await openFile(this.source);
    } catch (err) {
      throw new CheckpointError(this.source, `cannot open: ${(err as Error).message}`, { cause: err });
    }
    try {
      for (let offset = 0; offset < total; offset += chunk) {
        const bytes = new Uint8Array(Math.min(chunk, total - offset));
        let done = 0;
        while (done < bytes.length) {
          const n = await file.read(bytes.subarray(done), e.gguf.byteOffset + offset + done);
          if (n === 0) throw new CheckpointError(this.source, `tensor ${e.gguf.name}: unexpected end of file (file truncated?)`);
          done += n;
        }
        if (!e.heads) {
          yield { offset, bytes };
          continue;
        }
        const rows = unpermuteQkRows(bytes, bytes.length / (e.rowBytes * unit), e.rowBytes);
        release(bytes);
        yield { offset, bytes: rows };
      }
    } finally {
      await file.close();
    }
  }
}
