/**
 * A safetensors reader that validates headers up front and streams tensor bytes from disk
 * in bounded chunks, so multi-gigabyte checkpoints never sit in memory at once.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the
 * data section; offsets are relative to the start of the data section (8 + N).
 * @module
 */
import { cwd, type FileStat, openFile, type ReadableFile, readTextFile, stat } from "../runtime/runtime.ts";
import { CheckpointError } from "./errors.ts";

/** Tensor element types this runtime can load. */
/** U8: raw bytes (MXFP4 blocks and scales), read as bytes, never decoded to values. */
export type SafetensorsDType = "F32" | "F16" | "BF16" | "U8";

/** Where one tensor lives on disk. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Absolute byte offset of the tensor's first byte in `file`. */
  byteOffset: number;
  byteLength: number;
}

/** One piece of a tensor read by {@link TensorIndex.readChunks}. */
export interface TensorChunk {
  /** Offset of `bytes` from the start of the tensor. */
  offset: number;
  bytes: Uint8Array<ArrayBuffer>;
}

/** A tensor's dtype as values; a U8 (raw bytes) tensor is a {@link CheckpointError} here. */
export function valueDType(info: { name: string; file: string; dtype: SafetensorsDType }): "F32" | "F16" | "BF16" {
  if (info.dtype === "U8") throw new CheckpointError(info.file, `tensor ${info.name} is U8 bytes where values were expected`);
  return info.dtype;
}

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

/** File names inside a checkpoint directory. */
export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

// A real header is a few hundred KB at most; anything larger is corruption, not a model.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Joins a directory and a file name, making the result absolute. */
function resolvePath(dir: string, name: string): string {
  const base = dir.startsWith("/") ? dir : `${cwd()}/${dir}`;
  const joined = `${base.replace(/\/+$/, "")}/${name}`;
  // Normalise "." and ".." so error messages show a clean path.
  const out: string[] = [];
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

async function statFile(path: string): Promise<FileStat | null> {
  try {
    return await stat(path);
  } catch (err) {
    throw new CheckpointError(path, `cannot stat: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads exactly `buf.length` bytes from byte `position`, or fails as truncated. */
async function readExactly(file: ReadableFile, buf: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(buf.subarray(done), position + done);
    if (n === 0) {
      throw new CheckpointError(path, `unexpected end of file (file truncated?)`);
    }
    done += n;
  }
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Parses and validates one safetensors header; returns the file's tensors. */
async function readHeader(path: string): Promise<Map<string, TensorInfo>> {
  const stat = await statFile(path);
  if (!stat) throw new CheckpointError(path, "file not found");
  if (!stat.isFile) throw new CheckpointError(path, "not a regular file");
  const size = stat.size;
  if (size < 8) {
    throw new CheckpointError(path, `file is ${size} bytes, shorter than the 8-byte header length`);
  }
  const file = await openFile(path);
  try {
    const lenBytes = new Uint8Array(8);
    await readExactly(file, lenBytes, 0, path);
    const headerLen64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (headerLen64 > BigInt(MAX_HEADER_BYTES)) {
      throw new CheckpointError(
        path,
        `header length ${headerLen64} is absurd (over ${MAX_HEADER_BYTES} bytes): not a safetensors file?`,
      );
    }
    const headerLen = Number(headerLen64);
    if (8 + headerLen > size) {
      throw new CheckpointError(
        path,
        `header length ${headerLen} runs past the end of the ${size}-byte file (file truncated?)`,
      );
    }
    const headerBytes = new Uint8Array(headerLen);
    await readExactly(file, headerBytes, 8, path);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
    } catch (err) {
      throw new CheckpointError(path, `header is not valid JSON: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw new CheckpointError(path, "header is not a JSON object");
    }
    const dataStart = 8 + headerLen;
    const dataSize = size - dataStart;
    const tensors = new Map<string, TensorInfo>();
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") continue;
      tensors.set(name, parseEntry(path, name, entry, dataStart, dataSize));
    }
    return tensors;
  } finally {
    await file.close();
  }
}

/** Validates one header entry against the dtype table and the data section size. */
function parseEntry(
  path: string,
  name: string,
  entry: unknown,
  dataStart: number,
  dataSize: number,
): TensorInfo {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new CheckpointError(path, `header entry for tensor ${name} is not an object`);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new CheckpointError(
      path,
      `unsupported dtype ${JSON.stringify(dtype)} for tensor ${name} (supported: F32, F16, BF16, U8)`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
    throw new CheckpointError(
      path,
      `tensor ${name} has invalid shape ${
        JSON.stringify(shape)
      }: expected an array of non-negative integers`,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) ||
    offsets[0] > offsets[1]
  ) {
    throw new CheckpointError(
      path,
      `tensor ${name} has invalid data_offsets ${
        JSON.stringify(offsets)
      }: expected [begin, end] with begin <= end`,
    );
  }
  const [begin, end] = offsets as number[];
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * DTYPE_BYTES[dtype as SafetensorsDType];
  if (end - begin !== expected) {
    throw new CheckpointError(
      path,
      `tensor ${name}: byte length ${end - begin} does not match shape [${shape.join(", ")}] ` +
        `of ${dtype} (${expected} bytes)`,
    );
  }
  if (end > dataSize) {
    throw new CheckpointError(
      path,
      `tensor ${name}: data_offsets [${begin}, ${end}] are out of range of the ${dataSize}-byte ` +
        `data section (file truncated?)`,
    );
  }
  return {
    name,
    dtype: dtype as SafetensorsDType,
    shape: shape as number[],
    file: path,
    byteOffset: dataStart + begin,
    byteLength: expected,
  };
}

/**
 * The tensors of a checkpoint (one file or several shards), by name. Reads open the file
 * per call, so concurrent readers never share a file position.
 */
export class TensorIndex {
  /** The checkpoint directory (absolute). */
  readonly dir: string;
  /** The file that lists the tensors: model.safetensors or the shard index. */
  readonly source: string;
  /** Tensors of a vision tower / MTP head that text serving leaves out (see languageModelTensors). */
  readonly skippedTensors: number;
  #tensors: Map<string, TensorInfo>;
  #closed = false;

  constructor(dir: string, source: string, tensors: Map<string, TensorInfo> & { skippedTensors?: number }) {
    this.dir = dir;
    this.source = source;
    this.#tensors = tensors;
    this.skippedTensors = tensors.skippedTensors ?? 0;
  }

  /** Whether the checkpoint has a tensor of this name. */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** All tensor names, in header order. */
  names(): string[] {
    return [...this.#tensors.keys()];
  }

  /** The tensor's location; throws a {@link CheckpointError} naming the checkpoint if absent. */
  get(name: string): TensorInfo {
    const info = this.#tensors.get(name);
    if (!info) throw new CheckpointError(this.source, `missing tensor ${name}`);
    return info;
  }

  /** Total bytes of all tensors. */
  get totalBytes(): number {
    let n = 0;
    for (const info of this.#tensors.values()) n += info.byteLength;
    return n;
  }

  /**
   * Streams a tensor's bytes from disk. Every chunk but the last is `maxChunkBytes` rounded
   * down to a multiple of 4 (so whole f32/f16 elements never straddle chunks); each chunk is
   * a fresh buffer, and only one is alive inside the reader at a time.
   */
  async *readChunks(info: TensorInfo, maxChunkBytes = 8 << 20): AsyncIterable<TensorChunk> {
    if (this.#closed) throw new CheckpointError(this.source, "tensor index is closed");
    const chunk = Math.max(4, Math.floor(maxChunkBytes / 4) * 4);
    const file = await this.#open(info.file);
    try {
      for (let offset = 0; offset < info.byteLength; offset += chunk) {
        const bytes = new Uint8Array(Math.min(chunk, info.byteLength - offset));
        await readExactly(file, bytes, info.byteOffset + offset, info.file);
        yield { offset, bytes };
      }
    } finally {
      await file.close();
    }
  }

  /** Reads a whole tensor into memory; meant for small tensors (norms, biases, tests). */
  async read(info: TensorInfo): Promise<Uint8Array<ArrayBuffer>> {
    const out = new Uint8Array(info.byteLength);
    for await (const { offset, bytes } of this.readChunks(info)) out.set(bytes, offset);
    return out;
  }

  /** Marks the index closed; later reads fail. Holds no file handles between reads. */
  close(): void {
    this.#closed = true;
  }

  async #open(path: string): Promise<ReadableFile> {
    try {
      return await openFile(path);
    } catch (err) {
      throw new CheckpointError(path, `cannot open: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Reads and validates `model.safetensors.index.json`; returns its weight_map. */
async function readShardIndex(path: string): Promise<Map<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readTextFile(path));
  } catch (err) {
    throw new CheckpointError(path, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const weightMap = (parsed as Record<string, unknown> | null)?.weight_map;
  if (typeof weightMap !== "object" || weightMap === null || Array.isArray(weightMap)) {
    throw new CheckpointError(path, "weight_map is missing or not an object");
  }
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "" || shard.includes("/")) {
      throw new CheckpointError(
        path,
        `weight_map entry for tensor ${name} is not a shard file name: ${JSON.stringify(shard)}`,
      );
    }
    out.set(name, shard);
  }
  return out;
}

/**
 * Opens the tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
 * `model.safetensors.index.json`. Every header is validated here, so later reads can trust
 * offsets; problems throw a {@link CheckpointError} naming the file and the reason.
 */
/** Prefix of the language model's tensors in a vision-language checkpoint (Qwen3.5 as the hub ships it). */
const LANGUAGE_MODEL_PREFIX = "model.language_model.";
/** Tensors text serving never reads: a vision tower, a multi-token-prediction head. */
const SKIPPED_PREFIXES = ["model.visual.", "mtp."];
/** A multi-token-prediction head's tensors (Qwen3.5; the same name in both layouts). */
export const MTP_PREFIX = "mtp.";

/** Options of {@link openCheckpointTensors}. */
export interface OpenTensorsOptions {
  /** Keep the `mtp.*` tensors (MTP speculative decoding reads them); default false: skipped. */
  keepMtp?: boolean;
}

/**
 * A vision-language checkpoint's language model under the plain causal-LM names
 * (`model.language_model.X` as `model.X`), without the vision tower and MTP head, which
 * text serving skips (`skippedTensors` counts them for the startup log); a causal-LM
 * checkpoint's MTP head (`mtp.*` next to `model.*`) is skipped the same way. Other
 * checkpoints pass through unchanged.
 */
export function languageModelTensors(tensors: Map<string, TensorInfo>, options: OpenTensorsOptions = {}): Map<string, TensorInfo> & { skippedTensors?: number } {
  const names = [...tensors.keys()];
  const skippedPrefixes = options.keepMtp ? SKIPPED_PREFIXES.filter((p) => p !== MTP_PREFIX) : SKIPPED_PREFIXES;
  if (!names.some((n) => n.startsWith(LANGUAGE_MODEL_PREFIX) || skippedPrefixes.some((p) => n.startsWith(p)))) return tensors;
  const out: Map<string, TensorInfo> & { skippedTensors?: number } = new Map();
  let skipped = 0;
  for (const [name, info] of tensors) {
    if (skippedPrefixes.some((p) => name.startsWith(p))) {
      skipped++;
      continue;
    }
    const plain = name.startsWith(LANGUAGE_MODEL_PREFIX) ? `model.${name.slice(LANGUAGE_MODEL_PREFIX.length)}` : name;
    out.set(plain, { ...info, name: plain });
  }
  out.skippedTensors = skipped;
  return out;
}

const FUSED_GATE_UP = /^(model\.layers\.\d+\.mlp)\.experts\.gate_up_proj$/;
const ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2, U8: 1 };

/**
 * Qwen-style experts stored fused, as transformers 5 holds them (Qwen3.5-MoE's hub
 * checkpoints ship them so): `mlp.experts.gate_up_proj [E, 2I, H]` (gate rows, then up rows)
 * and `mlp.experts.down_proj [E, H, I]`, seen as the per-expert Linear tensors
 * `mlp.experts.N.{gate,up,down}_proj.weight` (byte ranges of the fused ones, nothing copied).
 * Only beside a Qwen router (`mlp.gate.weight`): gpt-oss's fused experts (`x @ W` layout,
 * `mlp.router`) pass through unchanged.
 */
export function splitFusedExperts<M extends Map<string, TensorInfo>>(tensors: M): M {
  for (const [name, gu] of [...tensors]) {
    const m = FUSED_GATE_UP.exec(name);
    const down = m && tensors.get(`${m[1]}.experts.down_proj`);
    if (!m || !down || !tensors.has(`${m[1]}.gate.weight`)) continue;
    const [E, I2, H] = gu.shape;
    if (gu.shape.length !== 3 || down.shape.length !== 3 || down.shape[0] !== E || down.shape[1] !== H || 2 * down.shape[2] !== I2) {
      throw new CheckpointError(gu.file, `fused experts ${name} [${gu.shape}] and ${m[1]}.experts.down_proj [${down.shape}] are not [E, 2I, H] and [E, H, I]`);
    }
    const I = I2 / 2;
    const view = (info: TensorInfo, suffix: string, e: number, part: number, rows: number, cols: number): [string, TensorInfo] => {
      const bytes = rows * cols * ELEMENT_BYTES[info.dtype];
      const n = `${m[1]}.experts.${e}.${suffix}.weight`;
      return [n, { ...info, name: n, shape: [rows, cols], byteOffset: info.byteOffset + (e * (info.shape[1] / rows) + part) * bytes, byteLength: bytes }];
    };
    for (let e = 0; e < E; e++) {
      for (const [n, info] of [view(gu, "gate_proj", e, 0, I, H), view(gu, "up_proj", e, 1, I, H), view(down, "down_proj", e, 0, H, I)]) tensors.set(n, info);
    }
    tensors.delete(name);
    tensors.delete(`${m[1]}.experts.down_proj`);
  }
  return tensors;
}

export async function openCheckpointTensors(dir: string, options: OpenTensorsOptions = {}): Promise<TensorIndex> {
  const absDir = resolvePath(dir, ".");
  const single = resolvePath(absDir, SINGLE_FILE);
  const indexPath = resolvePath(absDir, INDEX_FILE);
  if (await statFile(single)) {
    return new TensorIndex(absDir, single, splitFusedExperts(languageModelTensors(await readHeader(single), options)));
  }
  if (!(await statFile(indexPath))) {
    throw new CheckpointError(single, `file not found (and no ${INDEX_FILE} in ${absDir})`);
  }
  const weightMap = await readShardIndex(indexPath);
  const shards = new Map<string, Map<string, TensorInfo>>();
  for (const shard of new Set(weightMap.values())) {
    const shardPath = resolvePath(absDir, shard);
    if (!(await statFile(shardPath))) {
      throw new CheckpointError(shardPath, `shard file not found (listed in ${INDEX_FILE})`);
    }
    shards.set(shard, await readHeader(shardPath));
  }
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shard] of weightMap) {
    const info = shards.get(shard)!.get(name);
    if (!info) {
      throw new CheckpointError(
        resolvePath(absDir, shard),
        `tensor ${name} is listed in ${INDEX_FILE} but missing from this shard`,
      );
    }
    tensors.set(name, info);
  }
  return new TensorIndex(absDir, indexPath, splitFusedExperts(languageModelTensors(tensors, options)));
}
