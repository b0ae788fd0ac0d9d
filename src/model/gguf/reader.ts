/**
 * A GGUF reader: header, metadata and tensor infos, validated up front so that later reads
 * can trust every offset. The file is never read whole: the header is parsed from a prefix
 * that grows until it holds the header, and tensor data is read by range
 * ({@link ./source.ts}). Every problem is a {@link CheckpointError} naming the file and the
 * reason (bad magic, unsupported version, truncated header or data, unknown tensor type,
 * inconsistent shapes, overlapping tensors), never a crash or a hang: counts and lengths are
 * checked against the file size before anything is allocated.
 *
 * Layout (little-endian): "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata
 * count, the metadata (u64-length string key, u32 value type, value), the tensor infos
 * (name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset into the data
 * section), padding to `general.alignment` (default 32), then the data section.
 * @module
 */
import { type FileStat, openFile, type ReadableFile, stat } from "../../runtime/runtime.ts";
import { CheckpointError } from "../errors.ts";
import { type GgmlTypeInfo, ggmlBytes, ggmlTypeById, ggmlTypeLabel } from "../quant/ggml_types.ts";

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;

/** GGUF metadata value types. */
export const GGUF_VALUE_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** A metadata value: numbers, booleans, strings, and arrays of them. */
export type GgufMetaValue = number | boolean | string | GgufMetaValue[];

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  name: string;
  /** GGUF order: innermost (contiguous) first. */
  dims: number[];
  type: GgmlTypeInfo;
  /** Absolute byte offset of the tensor's data in the file. */
  byteOffset: number;
  byteLength: number;
}

/** A parsed, validated GGUF header. */
export interface GgufHeader {
  /** Absolute path of the file. */
  path: string;
  version: number;
  metadata: Map<string, GgufMetaValue>;
  tensors: Map<string, GgufTensorInfo>;
  /** Absolute offset of the data section. */
  dataOffset: number;
  fileSize: number;
}

// Larger headers are corruption (a 256k-token vocabulary with merges is ~20 MB).
const MAX_HEADER_BYTES = 1 << 30;
const FIRST_READ = 1 << 20;
const MAX_DIMS = 4;

/** Thrown inside the parser when the prefix read so far ends before the header does. */
class NeedMore {}

/** Byte sizes of scalar value types (strings and arrays are variable). */
const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** A cursor over the file's prefix; `need` tells a short prefix from a short file. */
class Cursor {
  at = 0;
  #view: DataView;
  #decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(readonly bytes: Uint8Array, readonly fileSize: number, readonly path: string) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(reason: string): never {
    throw new CheckpointError(this.path, reason);
  }

  need(n: number, what: string): void {
    if (this.at + n > this.fileSize) {
      this.fail(`truncated header: ${what} at byte ${this.at} needs ${n} bytes, the file has ${this.fileSize} (file truncated?)`);
    }
    if (this.at + n > this.bytes.length) throw new NeedMore();
  }

  u8(): number {
    this.need(1, "a u8");
    return this.bytes[this.at++];
  }
  u32(what = "a u32"): number {
    this.need(4, what);
    this.at += 4;
    return this.#view.getUint32(this.at - 4, true);
  }
  u64(what = "a u64"): number {
    this.need(8, what);
    this.at += 8;
    const v = this.#view.getBigUint64(this.at - 8, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} at byte ${this.at - 8} is ${v}, beyond any real file`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`the length of ${what}`);
    this.need(n, what);
    this.at += n;
    try {
      return this.#decoder.decode(this.bytes.subarray(this.at - n, this.at));
    } catch {
      return this.fail(`${what} at byte ${this.at - n} is not valid UTF-8`);
    }
  }

  value(type: number, key: string, depth = 0): GgufMetaValue {
    const v = this.#view;
    const T = GGUF_VALUE_TYPE;
    switch (type) {
      case T.u8:
        return this.u8();
      case T.i8:
        return (this.need(1, key), v.getInt8(this.at++));
      case T.u16:
        return (this.need(2, key), this.at += 2, v.getUint16(this.at - 2, true));
      case T.i16:
        return (this.need(2, key), this.at += 2, v.getInt16(this.at - 2, true));
      case T.u32:
        return this.u32(key);
      case T.i32:
        return (this.need(4, key), this.at += 4, v.getInt32(this.at - 4, true));
      case T.f32:
        return (this.need(4, key), this.at += 4, v.getFloat32(this.at - 4, true));
      case T.bool:
        return this.u8() !== 0;
      case T.string:
        return this.string(`the value of ${key}`);
      case T.u64:
        return this.u64(key);
      case T.i64:
        return (this.need(8, key), this.at += 8, Number(v.getBigInt64(this.at - 8, true)));
      case T.f64:
        return (this.need(8, key), this.at += 8, v.getFloat64(this.at - 8, true));
      case T.array: {
        if (depth > 4) this.fail(`metadata ${key}: arrays nested too deep`);
        const itemType = this.u32(`the item type of ${key}`);
        const n = this.u64(`the length of ${key}`);
        // Every item takes at least this many bytes: refuse counts the file cannot hold
        // before allocating anything.
        const min = SCALAR_BYTES[itemType] ?? (itemType === T.string ? 8 : itemType === T.array ? 12 : 1);
        if (n * min > this.fileSize - this.at) {
          this.fail(`truncated header: metadata ${key} claims ${n} items, more than the rest of the file holds (file truncated?)`);
        }
        const out: GgufMetaValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(itemType, key, depth + 1);
        return out;
      }
      default:
        return this.fail(`metadata ${key} has unknown value type ${type}`);
    }
  }
}

function parse(c: Cursor): GgufHeader {
  const magic = c.u32("the magic");
  if (magic !== GGUF_MAGIC) {
    c.fail(`not a GGUF file (bad magic ${JSON.stringify(new TextDecoder().decode(c.bytes.subarray(0, 4)))}, expected "GGUF")`);
  }
  const version = c.u32("the version");
  if (version !== 2 && version !== 3) {
    c.fail(`unsupported GGUF version ${version} (supported: 2, 3${version > 0xffff ? "; a big-endian file?" : ""})`);
  }
  const tensorCount = c.u64("the tensor count");
  const kvCount = c.u64("the metadata count");
  // A key takes at least 12 bytes, a tensor info at least 28.
  if (kvCount * 12 + tensorCount * 28 > c.fileSize) {
    c.fail(`truncated header: ${kvCount} metadata entries and ${tensorCount} tensors cannot fit in ${c.fileSize} bytes (file truncated?)`);
  }
  const metadata = new Map<string, GgufMetaValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`);
    const type = c.u32(`the value type of ${key}`);
    metadata.set(key, c.value(type, key));
  }
  const alignment = metadata.get("general.alignment") ?? 32;
  if (typeof alignment !== "number" || alignment < 1 || (alignment & (alignment - 1)) !== 0) {
    c.fail(`general.alignment must be a power of two, got ${JSON.stringify(alignment)}`);
  }
  const raw: { name: string; dims: number[]; typeId: number; offset: number }[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`tensor name ${i}`);
    const nDims = c.u32(`the dimension count of tensor ${name}`);
    if (nDims < 1 || nDims > MAX_DIMS) c.fail(`tensor ${name} has ${nDims} dimensions (supported: 1 to ${MAX_DIMS})`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.u64(`dimension ${d} of tensor ${name}`));
    const typeId = c.u32(`the type of tensor ${name}`);
    const offset = c.u64(`the offset of tensor ${name}`);
    raw.push({ name, dims, typeId, offset });
  }
  const dataOffset = Math.ceil(c.at / alignment) * alignment;
  const dataSize = c.fileSize - dataOffset;
  const tensors = new Map<string, GgufTensorInfo>();
  for (const { name, dims, typeId, offset } of raw) {
    const where = `tensor ${name}`;
    if (tensors.has(name)) c.fail(`${where} appears twice`);
    const type = ggmlTypeById(typeId);
    if (!type) {
      c.fail(`${where} has unsupported tensor type ${ggmlTypeLabel(typeId)} (id ${typeId}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, and MXFP4 for gpt-oss experts)`);
    }
    const elements = dims.reduce((a, b) => a * b, 1);
    if (dims.some((d) => d < 1) || !Number.isSafeInteger(elements)) {
      c.fail(`${where} has invalid dimensions [${dims.join(", ")}]`);
    }
    if (dims[0] % type.blockElems !== 0) {
      c.fail(`${where}: row length ${dims[0]} is not a multiple of the ${type.name} block of ${type.blockElems}`);
    }
    if (offset % alignment !== 0) c.fail(`${where}: data offset ${offset} is not a multiple of the alignment ${alignment}`);
    const byteLength = ggmlBytes(type, elements);
    if (offset + byteLength > dataSize) {
      c.fail(
        `${where}: data [${offset}, ${offset + byteLength}) runs past the ${Math.max(0, dataSize)}-byte data section (truncated tensor data)`,
      );
    }
    tensors.set(name, { name, dims, type, byteOffset: dataOffset + offset, byteLength });
  }
  // No two tensors share bytes: a file whose offsets all say 0 is corrupt, not a model.
  const byOffset = [...tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < byOffset.length; i++) {
    const [a, b] = [byOffset[i - 1], byOffset[i]];
    if (a.byteOffset + a.byteLength > b.byteOffset) {
      c.fail(`tensors ${a.name} and ${b.name} overlap: their data starts at ${a.byteOffset - dataOffset} and ${b.byteOffset - dataOffset} of the data section, and ${a.name} is ${a.byteLength} bytes`);
    }
  }
  return { path: c.path, version, metadata, tensors, dataOffset, fileSize: c.fileSize };
}

/** Parses a header held in memory (the whole file, or a prefix of a file of `fileSize`). */
export function parseGgufHeader(bytes: Uint8Array, path = "model.gguf", fileSize = bytes.length): GgufHeader {
  try {
    return parse(new Cursor(bytes, fileSize, path));
  } catch (e) {
    if (e instanceof NeedMore) {
      throw new CheckpointError(path, `header does not end within the first ${bytes.length} bytes`);
    }
    throw e;
  }
}

async function readAt(file: ReadableFile, buf: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(buf.subarray(done), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Reads and validates the header of the GGUF file at `path`. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  let info: FileStat | null;
  try {
    info = await stat(path);
  } catch (err) {
    throw new CheckpointError(path, `cannot stat: ${(err as Error).message}`, { cause: err });
  }
  if (!info) throw new CheckpointError(path, "file not found");
  if (!info.isFile) throw new CheckpointError(path, "not a regular file");
  let file: ReadableFile;
  try {
    file = await openFile(path);
  } catch (err) {
    throw new CheckpointError(path, `cannot open: ${(err as Error).message}`, { cause: err });
  }
  try {
    // Parse from a prefix; when the header runs past it, read a prefix twice as long.
    for (let want = Math.min(FIRST_READ, info.size);; want = Math.min(want * 2, info.size)) {
      const buf = new Uint8Array(want);
      const got = await readAt(file, buf, 0);
      if (got < want) throw new CheckpointError(path, `file shrank while reading (${got} of ${want} bytes)`);
      try {
        return parse(new Cursor(buf, info.size, path));
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (want >= MAX_HEADER_BYTES) throw new CheckpointError(path, `header is larger than ${MAX_HEADER_BYTES} bytes: not a model file?`);
      }
    }
  } finally {
    await file.close();
  }
}

/** Whether `path` names a GGUF file (by extension: a checkpoint directory never ends so). */
export function isGgufPath(path: string): boolean {
  return /\.gguf$/i.test(path);
}
