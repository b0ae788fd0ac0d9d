/**
 * Reads back the header of a GGUF file (metadata and tensor infos), to check what
 * {@link ./gguf_writer.ts} wrote without loading llama.cpp.
 * @module
 */
import { GGML_TYPE, GGUF_TYPE } from "./gguf_writer.ts";

/** One tensor's info as stored in the header. */
export interface GgufTensorInfo {
  name: string;
  /** Innermost first. */
  dims: number[];
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
}

/** A parsed GGUF header. */
export interface GgufHeader {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the data section. */
  dataOffset: number;
}

/** Raised for a file that is not GGUF or is cut short. */
export class GgufFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GgufFormatError";
  }
}

/** Parses a GGUF header from the file's first bytes (the whole file also works). */
export function parseGgufHeader(bytes: Uint8Array): GgufHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number) => {
    if (at + n > bytes.length) throw new GgufFormatError(`truncated at byte ${at}`);
  };
  const u32 = () => (need(4), at += 4, view.getUint32(at - 4, true));
  const u64 = () => (need(8), at += 8, Number(view.getBigUint64(at - 8, true)));
  const str = () => {
    const n = u64();
    need(n);
    at += n;
    return new TextDecoder().decode(bytes.subarray(at - n, at));
  };
  const scalar = (type: number): unknown => {
    switch (type) {
      case GGUF_TYPE.u8:
        return (need(1), bytes[at++]);
      case GGUF_TYPE.i8:
        return (need(1), view.getInt8(at++));
      case GGUF_TYPE.u16:
        return (need(2), at += 2, view.getUint16(at - 2, true));
      case GGUF_TYPE.i16:
        return (need(2), at += 2, view.getInt16(at - 2, true));
      case GGUF_TYPE.u32:
        return u32();
      case GGUF_TYPE.i32:
        return (need(4), at += 4, view.getInt32(at - 4, true));
      case GGUF_TYPE.f32:
        return (need(4), at += 4, view.getFloat32(at - 4, true));
      case GGUF_TYPE.bool:
        return (need(1), bytes[at++] !== 0);
      case GGUF_TYPE.string:
        return str();
      case GGUF_TYPE.u64:
        return u64();
      case GGUF_TYPE.i64:
        return (need(8), at += 8, Number(view.getBigInt64(at - 8, true)));
      case GGUF_TYPE.f64:
        return (need(8), at += 8, view.getFloat64(at - 8, true));
      case GGUF_TYPE.array: {
        const itemType = u32();
        const n = u64();
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(scalar(itemType));
        return out;
      }
      default:
        throw new GgufFormatError(`unknown value type ${type} at byte ${at}`);
    }
  };
  if (u32() !== 0x46554747) throw new GgufFormatError("not a GGUF file (bad magic)");
  const version = u32();
  if (version < 2) throw new GgufFormatError(`GGUF version ${version} is not supported`);
  const tensorCount = u64();
  const kvCount = u64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    metadata.set(key, scalar(u32()));
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const nDims = u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const alignment = (metadata.get("general.alignment") as number | undefined) ?? 32;
  return { version, metadata, tensors, dataOffset: Math.ceil(at / alignment) * alignment };
}

/** Bytes of a tensor described by a parsed header (F32 and F16 only). */
export function tensorInfoBytes(t: GgufTensorInfo): number {
  const size = t.type === GGML_TYPE.F32 ? 4 : t.type === GGML_TYPE.F16 ? 2 : NaN;
  return t.dims.reduce((a, b) => a * b, 1) * size;
}
