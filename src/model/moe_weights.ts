/**
 * A sparse layer's weights on the GPU: the router as f32 `[E, H]`, and every expert's
 * matrices stacked in one buffer per kind, in the hub's Linear layout (row-major, one row per
 * output): `gate_up` `[E][2I][H]` and `down` `[E][H][I]`, as f16 bits or f32 values. The
 * expert kernels (`kernels/moe_*.wgsl`) index an expert's rows at `e * rows * K`, so a step
 * reads only the experts its tokens were routed to. Experts are split over buffers of whole
 * experts ({@link ExpertPart}) so each stays within the binding limit (a Qwen3-30B-A3B layer's
 * gate|up is 805 MB in f16); the matmuls run once per part, on the tiles of its experts.
 *
 * Qwen3-MoE: gate rows then up rows per expert. gpt-oss: transformers' `x @ W` tensors
 * (`gate_up_proj [E, H, 2I]`, `down_proj [E, I, H]`) transposed at load, so gate/up rows stay
 * interleaved (row 2j gate j, 2j+1 up j) as the hub's MXFP4 blocks have them; MXFP4 experts
 * keep their codes and scales, repacked per expert as column-block tiles (`quant/mxfp4_c8.ts`,
 * the hub's 4.25 bits a weight where K is a multiple of 64), and are dequantized in the kernels.
 *
 * Load-time quantization (`--quantization q8_0|q4_0`) turns f16/bf16/f32 experts (Qwen3-MoE,
 * bf16 gpt-oss) into llama.cpp's Q8_0 / Q4_0 blocks along each expert's input (K), packed as
 * the dense quantized matmul's column blocks (`pack_c8.ts`) expert by expert, and dequantized
 * in registers by the expert kernels; MXFP4 experts stay MXFP4 (they are already 4.25 bits a
 * weight). Packing starts from llama.cpp's block bytes ({@link packQuantExpert}): a GGUF
 * file's Q8_0 / Q4_0 expert tensors (`convert --quantization`, llama.cpp's quantizer) are
 * packed unchanged, never requantized ({@link MoeUploadIo.blockType}). K-quant expert tensors
 * (Q4_K / Q6_K, a Q4_K_M file's) are transcoded exactly as the dense matrices are
 * (`quant/quant_matrix.ts`): Q4_K to Q4X, Q6_K and stacks mixing types to Q8X, so gate|up and
 * down may differ in type ({@link MoeLayerWeights.downDtype}).
 * @module
 */
import type { MoeSpec } from "./moe_config.ts";
import { CheckpointError } from "./errors.ts";
import { release } from "./release.ts";
import { type ColumnMap, gluColumns, packColumnBlocks } from "./weight_layout.ts";
import { c8TileWords, type MatmulQuantType, packQuantColumnBlocks, type QuantMatrix } from "./quant/pack_c8.ts";
import { stackedQuantType, toMatmulBlocks } from "./quant/quant_matrix.ts";
import { mxfp4ColumnBlockBytes, packMxfp4ColumnBlocks } from "./quant/mxfp4_c8.ts";
import { quantizeRows } from "./quant/quantized_source.ts";
import type { UploadData } from "./upload_queue.ts";
import type { QuantType } from "./quant/ggml_types.ts";

/** Block types load-time quantization gives experts. */
export type ExpertQuantType = "Q8_0" | "Q4_0";

/** How an expert matrix is stored on the GPU. */
export type ExpertDType = "f16" | "f32" | "mxfp4" | "q8_0" | "q4_0" | "q8x" | "q4x";

/** The expert dtype of a quantized matrix type. */
function quantDType(t: MatmulQuantType): ExpertDType {
  return ({ Q8_0: "q8_0", Q4_0: "q4_0", Q8X: "q8x", Q4X: "q4x" } as const)[t];
}

/** Whole experts `first .. first + count - 1` of one stacked matrix, in one buffer. */
export interface ExpertPart {
  buffer: GPUBuffer;
  first: number;
  count: number;
}

/** The GPU weights of one sparse feed-forward. */
export interface MoeLayerWeights {
  /**
   * f32 `[E, H]`; with a shared expert `[E + 1, H]`, its gate (`shared_expert_gate`) the last
   * row, so the router computes that logit beside the experts'. (The shared expert's matrices
   * are the layer's dense gate|up and down, `LayerWeights.gateUp` / `down`.)
   */
  router: GPUBuffer;
  /** `[E][2I][H]`, split by experts. */
  gateUp: ExpertPart[];
  /** `[E][H][I]`, split by experts. */
  down: ExpertPart[];
  dtype: ExpertDType;
  /**
   * The down matrices' type where it differs from the gate|up's `dtype` (a Q4_K_M file: Q4_K
   * gate/up as q4x, Q6_K down as q8x); absent: `dtype`.
   */
  downDtype?: ExpertDType;
  /**
   * "rows": each expert's matrices in Linear layout (f16/f32 shapes the blocks do not fit);
   * "column_blocks": each expert packed as gemv_c8's blocks of 8 output columns, gate|up in GLU
   * order (4 gate then 4 up per block), read 8 weights per 16-byte load (Q8_0 / Q4_0:
   * qgemv_c8's quantized tiles per block; MXFP4: `quant/mxfp4_c8.ts`'s tiles).
   */
  layout: "rows" | "column_blocks";
  /** Bytes of one expert's matrices on the GPU (gate, up and down; MXFP4 and Q8_0 / Q4_0 tile scales included). */
  expertBytes: number;
  /** gpt-oss: the router's bias [E] and the experts' biases, gate|up [E][2I] (interleaved) and down [E][H]. */
  routerBias: GPUBuffer | null;
  gateUpBias: GPUBuffer | null;
  downBias: GPUBuffer | null;
}

/** Every buffer of a sparse layer. */
export function moeBuffers(w: MoeLayerWeights): GPUBuffer[] {
  const parts = [...w.gateUp, ...w.down].map((p) => p.buffer);
  return [w.router, w.routerBias, w.gateUpBias, w.downBias, ...parts].filter((b): b is GPUBuffer => b !== null);
}

/** How {@link uploadMoeLayer} reads and writes: callbacks into the weight uploader. */
export interface MoeUploadIo {
  device: GPUDevice;
  /** A tensor's values as f32 (HF layout). */
  read(name: string): Promise<Float32Array<ArrayBuffer>>;
  /** A tensor's raw bytes (the hub's MXFP4 blocks and scales). */
  readBytes(name: string): Promise<Uint8Array<ArrayBuffer>>;
  /** Writes all of `data` at `byteOffset` of `buffer` (queued, bounded). */
  write(buffer: GPUBuffer, byteOffset: number, data: UploadData): Promise<void>;
  maxBindingBytes: number;
  /**
   * The block type the source holds a tensor as, when the expert kernels may compute on its
   * blocks (null: read its values). Experts of a quantized GGUF file (Q8_0, Q4_0, Q4_K,
   * Q6_K): each Linear row's blocks (gpt-oss's `x @ W` stacks: of the transposed rows,
   * moe_layout.ts).
   */
  blockType?(name: string): QuantType | null;
  /** A tensor's blocks (only where {@link blockType} gives a type). */
  readBlocks?(name: string): Promise<Uint8Array<ArrayBuffer>>;
}

function buffer(device: GPUDevice, label: string, bytes: number): GPUBuffer {
  return device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
}

/** Parts of whole experts of `bytes` each within the binding limit. */
function expertParts(io: MoeUploadIo, E: number, bytes: number, label: string): ExpertPart[] {
  const per = Math.floor(io.maxBindingBytes / bytes);
  if (per < 1) throw new CheckpointError(label, `one expert's ${bytes} bytes exceed the binding limit ${io.maxBindingBytes}`);
  const parts: ExpertPart[] = [];
  for (let first = 0; first < E; first += per) {
    const count = Math.min(per, E - first);
    parts.push({ buffer: buffer(io.device, `${label}[${first}]`, count * bytes), first, count });
  }
  return parts;
}

/** The part holding expert `e` and the byte offset of its slot of `bytes` there. */
function slot(parts: ExpertPart[], e: number, bytes: number): { part: ExpertPart; offset: number } {
  const part = parts.find((p) => e >= p.first && e < p.first + p.count)!;
  return { part, offset: (e - part.first) * bytes };
}

/**
 * Uploads layer `prefix`'s router and experts (`mlp.gate`, `mlp.experts.N.*`). `quant`: the
 * load-time block type of float experts (applied where hidden and expert widths are multiples
 * of 32, as for dense matrices; the router stays f32). Experts the source holds as blocks
 * ({@link MoeUploadIo.blockType}) are packed from those blocks (K-quants transcoded), whatever
 * `quant` says.
 */
export async function uploadMoeLayer(
  io: MoeUploadIo,
  moe: MoeSpec,
  prefix: string,
  hiddenSize: number,
  dtype: "f16" | "f32",
  label: string,
  quant: ExpertQuantType | null = null,
): Promise<MoeLayerWeights> {
  const E = moe.numExperts;
  const H = hiddenSize;
  const I = moe.expertIntermediateSize;
  // The expert kernels read weights two at a time.
  if (H % 2 !== 0 || I % 2 !== 0) {
    throw new CheckpointError(prefix, `experts need even hidden (${H}) and expert (${I}) sizes`);
  }
  // Experts the source holds as blocks (a quantized GGUF) run as those blocks.
  const first = moe.experts === "gpt_oss" ? `${prefix}.mlp.experts.gate_up_proj` : `${prefix}.mlp.experts.0.gate_proj.weight`;
  const stored = moe.mxfp4 ? null : io.blockType?.(first) ?? null;
  const fromFile = stored !== null;
  // Source block types of gate, up and down (a file's stacks share one per layer and kind).
  const e0 = (kind: string) => moe.experts === "gpt_oss" ? `${prefix}.mlp.experts.${kind}_proj` : `${prefix}.mlp.experts.0.${kind}_proj.weight`;
  const fileTypes = (): ExpertTypes => {
    const t = (name: string) => {
      const b = io.blockType!(name);
      if (b === null) throw new CheckpointError(name, `expert tensors mix blocks (${first}: ${stored}) with plain floats`);
      return b;
    };
    const [gate, up, down] = moe.experts === "gpt_oss" ? [t(e0("gate_up")), t(e0("gate_up")), t(e0("down"))] : [t(e0("gate")), t(e0("up")), t(e0("down"))];
    return { gate, up, down, gateUp: stackedQuantType([gate, up]), downTo: stackedQuantType([down]) };
  };
  const loadTime = quant && quantFits(H, I) ? quant : null;
  const types: ExpertTypes | null = fromFile
    ? fileTypes()
    : loadTime
    ? { gate: loadTime, up: loadTime, down: loadTime, gateUp: loadTime, downTo: loadTime }
    : null;
  if (moe.experts === "gpt_oss") return await uploadGptOssLayer(io, moe, prefix, hiddenSize, dtype, label, types, fromFile);
  const elem = dtype === "f16" ? 2 : 4;
  const blocks = columnBlocksFit(H, I);
  const convert = (v: Float32Array<ArrayBuffer>) => dtype === "f16" ? new Uint16Array(Float16Array.from(v).buffer) : v;
  const shared = (moe.sharedExpertIntermediateSize ?? 0) > 0;
  const router = buffer(io.device, `${label}.router`, (E + (shared ? 1 : 0)) * H * 4);
  await io.write(router, 0, await io.read(`${prefix}.mlp.gate.weight`));
  if (shared) await io.write(router, E * H * 4, await io.read(`${prefix}.mlp.shared_expert_gate.weight`));
  if (types) return await uploadQuantQwenExperts(io, moe, prefix, H, label, types, router, fromFile);
  const matrix = I * H * elem;
  const gateUp = expertParts(io, E, 2 * matrix, `${label}.experts_gate_up`);
  const down = expertParts(io, E, matrix, `${label}.experts_down`);
  for (let e = 0; e < E; e++) {
    const p = `${prefix}.mlp.experts.${e}`;
    const gu = slot(gateUp, e, 2 * matrix);
    const d = slot(down, e, matrix);
    if (blocks) {
      const gateRows = await io.read(`${p}.gate_proj.weight`);
      const stacked = new Float32Array(2 * I * H);
      stacked.set(gateRows);
      stacked.set(await io.read(`${p}.up_proj.weight`), I * H);
      await io.write(gu.part.buffer, gu.offset, packExpert(stacked, 2 * I, H, dtype, gluColumns(I)));
      await io.write(d.part.buffer, d.offset, packExpert(await io.read(`${p}.down_proj.weight`), H, I, dtype));
      continue;
    }
    const writes: [GPUBuffer, number, string][] = [
      [gu.part.buffer, gu.offset, "gate_proj"],
      [gu.part.buffer, gu.offset + matrix, "up_proj"],
      [d.part.buffer, d.offset, "down_proj"],
    ];
    for (const [dst, offset, name] of writes) {
      const f32 = await io.read(`${p}.${name}.weight`);
      const data = convert(f32);
      await io.write(dst, offset, data);
      if (data !== f32) release(f32);
    }
  }
  return {
    router,
    gateUp,
    down,
    dtype,
    layout: blocks ? "column_blocks" : "rows",
    expertBytes: 3 * matrix,
    routerBias: null,
    gateUpBias: null,
    downBias: null,
  };
}

/** Whether experts of hidden `H` and width `I` quantize (K a multiple of 32 in gate|up and down). */
export function quantFits(H: number, I: number): boolean {
  return H % 32 === 0 && I % 32 === 0;
}

/** Bytes of one expert's `[rows, K]` matrix as quantized column blocks. */
export function quantExpertBytes(type: MatmulQuantType, rows: number, K: number): number {
  return (rows / 8) * (K / 32) * 16 * c8TileWords(type);
}

/**
 * One expert's matrix of llama.cpp blocks (`[rows][K / 32]` blocks, a row per output) as the
 * expert kernels' quantized column blocks (`columns`: output order).
 */
export function packQuantExpert(m: QuantMatrix, columns?: ColumnMap): Uint32Array<ArrayBuffer> {
  return packQuantColumnBlocks(m, columns).data;
}

/** One expert's `[rows, K]` Linear matrix quantized to `type` along K and packed. */
export function quantizeExpert(values: Float32Array, rows: number, K: number, type: ExpertQuantType, columns?: ColumnMap): Uint32Array<ArrayBuffer> {
  return packQuantExpert({ type, rows, k: K, data: quantizeRows(type, values) }, columns);
}

/**
 * The source block types of a layer's experts (`gate`, `up`, `down`) and the types the
 * kernels run them as (`gateUp`: the stack's, {@link stackedQuantType}; `downTo`).
 */
interface ExpertTypes {
  gate: QuantType;
  up: QuantType;
  down: QuantType;
  gateUp: MatmulQuantType;
  downTo: MatmulQuantType;
}

/**
 * A `[rows, K]` tensor's blocks as the kernels' type `to`: the source's (`fromFile`, stored
 * as `from`; K-quants transcoded), or its values quantized along their rows.
 */
async function expertBlocks(io: MoeUploadIo, name: string, from: QuantType, to: MatmulQuantType, rows: number, K: number, fromFile: boolean): Promise<Uint8Array> {
  if (fromFile) {
    const raw = await io.readBlocks!(name);
    const out = toMatmulBlocks(from, to, raw, rows, K);
    if (out !== raw) release(raw);
    return out;
  }
  const type = from as ExpertQuantType;
  const values = await io.read(name);
  const blocks = quantizeRows(type, values);
  release(values);
  return blocks;
}

/**
 * Qwen3-MoE experts as quantized column blocks: gate|up (GLU order) and down per expert,
 * from the source's blocks (`fromFile`) or quantized at load.
 */
async function uploadQuantQwenExperts(
  io: MoeUploadIo,
  moe: MoeSpec,
  prefix: string,
  H: number,
  label: string,
  types: ExpertTypes,
  router: GPUBuffer,
  fromFile: boolean,
): Promise<MoeLayerWeights> {
  const E = moe.numExperts;
  const I = moe.expertIntermediateSize;
  const type = types.gateUp;
  const guBytes = quantExpertBytes(type, 2 * I, H);
  const dBytes = quantExpertBytes(types.downTo, H, I);
  const gateUp = expertParts(io, E, guBytes, `${label}.experts_gate_up`);
  const down = expertParts(io, E, dBytes, `${label}.experts_down`);
  for (let e = 0; e < E; e++) {
    const p = `${prefix}.mlp.experts.${e}`;
    // Rows are quantized one by one: gate's blocks then up's are the stacked matrix's.
    const gate = await expertBlocks(io, `${p}.gate_proj.weight`, types.gate, type, I, H, fromFile);
    const stacked = new Uint8Array(2 * gate.length);
    stacked.set(gate);
    stacked.set(await expertBlocks(io, `${p}.up_proj.weight`, types.up, type, I, H, fromFile), gate.length);
    const gu = slot(gateUp, e, guBytes);
    await io.write(gu.part.buffer, gu.offset, packQuantExpert({ type, rows: 2 * I, k: H, data: stacked }, gluColumns(I)));
    const d = slot(down, e, dBytes);
    const downBlocks = await expertBlocks(io, `${p}.down_proj.weight`, types.down, types.downTo, H, I, fromFile);
    await io.write(d.part.buffer, d.offset, packQuantExpert({ type: types.downTo, rows: H, k: I, data: downBlocks }));
  }
  return {
    router,
    gateUp,
    down,
    dtype: quantDType(type),
    ...(types.downTo !== type ? { downDtype: quantDType(types.downTo) } : {}),
    layout: "column_blocks",
    expertBytes: guBytes + dBytes,
    routerBias: null,
    gateUpBias: null,
    downBias: null,
  };
}

/** Whether experts of hidden `H` and width `I` pack as column blocks (whole blocks, no padding). */
export function columnBlocksFit(H: number, I: number): boolean {
  return H % 8 === 0 && I % 8 === 0;
}

/** One expert's `[rows, K]` Linear matrix as column blocks (`columns`: output order), f16 bits or f32. */
export function packExpert(
  m: Float32Array<ArrayBuffer>,
  rows: number,
  K: number,
  dtype: "f16" | "f32",
  columns?: ColumnMap,
): Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> {
  const data = dtype === "f16" ? new Uint16Array(Float16Array.from(m).buffer) : m;
  return packColumnBlocks({ data, rows, cols: K }, columns).data;
}

/** gpt-oss's gate|up rows are interleaved (2j gate j, 2j+1 up j): GLU order over them. */
function interleavedGluColumns(I: number): ColumnMap {
  const map = new Int32Array(2 * I);
  for (let b = 0; b < I / 4; b++) {
    for (let q = 0; q < 4; q++) {
      map[8 * b + q] = 2 * (4 * b + q);
      map[8 * b + 4 + q] = 2 * (4 * b + q) + 1;
    }
  }
  return map;
}

/** [E][R][C] -> [E][C][R] (x @ W tensors to Linear rows). */
function transposeExperts(v: Float32Array, E: number, R: number, C: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(v.length);
  for (let e = 0; e < E; e++) {
    const base = e * R * C;
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[base + c * R + r] = v[base + r * C + c];
  }
  return out;
}

async function uploadGptOssLayer(
  io: MoeUploadIo,
  moe: MoeSpec,
  prefix: string,
  H: number,
  dtype: "f16" | "f32",
  label: string,
  types: ExpertTypes | null,
  fromFile: boolean,
): Promise<MoeLayerWeights> {
  const E = moe.numExperts;
  const I = moe.expertIntermediateSize;
  const m = `${prefix}.mlp`;
  const vector = async (name: string, tag: string) => {
    const v = await io.read(name);
    const b = buffer(io.device, `${label}.${tag}`, v.byteLength);
    await io.write(b, 0, v);
    return b;
  };
  const common = {
    router: await vector(`${m}.router.weight`, "router"),
    routerBias: await vector(`${m}.router.bias`, "router_bias"),
    gateUpBias: await vector(`${m}.experts.gate_up_proj_bias`, "experts_gate_up_bias"),
    downBias: await vector(`${m}.experts.down_proj_bias`, "experts_down_bias"),
  };
  if (moe.mxfp4) {
    // The hub's blocks and scales (expert e's bytes contiguous: E leads), each expert repacked
    // as column-block tiles (gate|up in GLU order over its interleaved rows).
    if (H % 32 !== 0 || I % 32 !== 0) throw new CheckpointError(prefix, `MXFP4 experts need hidden (${H}) and expert (${I}) sizes that are multiples of 32`);
    const mx = async (name: string, rows: number, k: number, tag: string, columns?: ColumnMap) => {
      const bytes = mxfp4ColumnBlockBytes(rows, k);
      const parts = expertParts(io, E, bytes, `${label}.${tag}`);
      const codes = await io.readBytes(`${m}.experts.${name}_blocks`);
      const scales = await io.readBytes(`${m}.experts.${name}_scales`);
      const [per, perScales] = [(rows * k) / 2, (rows * k) / 32];
      for (let e = 0; e < E; e++) {
        const at = slot(parts, e, bytes);
        const one = { rows, k, blocks: codes.subarray(e * per, (e + 1) * per), scales: scales.subarray(e * perScales, (e + 1) * perScales) };
        await io.write(at.part.buffer, at.offset, packMxfp4ColumnBlocks(one, columns));
      }
      return parts;
    };
    return {
      ...common,
      gateUp: await mx("gate_up_proj", 2 * I, H, "experts_gate_up", interleavedGluColumns(I)),
      down: await mx("down_proj", H, I, "experts_down"),
      dtype: "mxfp4",
      layout: "column_blocks",
      expertBytes: mxfp4ColumnBlockBytes(2 * I, H) + mxfp4ColumnBlockBytes(H, I),
    };
  }
  if (types) {
    // Linear rows per expert, quantized along their K (R) and packed; a file's blocks are
    // already those rows' (moe_layout.ts; gate and up of one type), packed as they are or
    // transcoded (K-quants).
    const qmatrix = async (name: string, R: number, C: number, tag: string, from: QuantType, to: MatmulQuantType, columns?: ColumnMap) => {
      const rows = fromFile ? null : transposeExperts(await io.read(name), E, R, C);
      const blocks = fromFile ? toMatmulBlocks(from, to, await io.readBlocks!(name), E * C, R) : null;
      const per = blocks ? blocks.length / E : 0;
      const bytes = quantExpertBytes(to, C, R);
      const parts = expertParts(io, E, bytes, `${label}.${tag}`);
      for (let e = 0; e < E; e++) {
        const at = slot(parts, e, bytes);
        const packed = blocks
          ? packQuantExpert({ type: to, rows: C, k: R, data: blocks.subarray(e * per, (e + 1) * per) }, columns)
          : quantizeExpert(rows!.subarray(e * R * C, (e + 1) * R * C), C, R, to as ExpertQuantType, columns);
        await io.write(at.part.buffer, at.offset, packed);
      }
      return parts;
    };
    return {
      ...common,
      gateUp: await qmatrix(`${m}.experts.gate_up_proj`, H, 2 * I, "experts_gate_up", types.gate, types.gateUp, interleavedGluColumns(I)),
      down: await qmatrix(`${m}.experts.down_proj`, I, H, "experts_down", types.down, types.downTo),
      dtype: quantDType(types.gateUp),
      ...(types.downTo !== types.gateUp ? { downDtype: quantDType(types.downTo) } : {}),
      layout: "column_blocks",
      expertBytes: quantExpertBytes(types.gateUp, 2 * I, H) + quantExpertBytes(types.downTo, H, I),
    };
  }
  const elem = dtype === "f16" ? 2 : 4;
  const blocks = columnBlocksFit(H, I);
  // x @ W [E][R][C] -> Linear rows [E][C][R], then (column blocks) each expert packed.
  const matrix = async (name: string, R: number, C: number, tag: string, columns?: ColumnMap) => {
    const rows = transposeExperts(await io.read(name), E, R, C);
    const parts = expertParts(io, E, R * C * elem, `${label}.${tag}`);
    for (const part of parts) {
      for (let e = part.first; e < part.first + part.count; e++) {
        const one = rows.slice(e * R * C, (e + 1) * R * C);
        const data = blocks ? packExpert(one, C, R, dtype, columns) : dtype === "f16" ? new Uint16Array(Float16Array.from(one).buffer) : one;
        await io.write(part.buffer, (e - part.first) * R * C * elem, data);
      }
    }
    return parts;
  };
  return {
    ...common,
    gateUp: await matrix(`${m}.experts.gate_up_proj`, H, 2 * I, "experts_gate_up", interleavedGluColumns(I)),
    down: await matrix(`${m}.experts.down_proj`, I, H, "experts_down"),
    dtype,
    layout: blocks ? "column_blocks" : "rows",
    expertBytes: 3 * H * I * elem,
  };
}
