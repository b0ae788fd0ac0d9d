/**
 * How llama.cpp's `qwen3moe` and `gpt-oss` GGUF files store the experts (convert_hf_to_gguf.py's
 * Qwen2MoeModel and GptOssModel), both ways:
 * - every block's experts are stacked: `ffn_gate_exps` / `ffn_up_exps` [H, I, E] and
 *   `ffn_down_exps` [I, H, E] (GGUF order; expert e's Linear `[rows, K]` matrix is slice e);
 * - Qwen3-MoE: HF's `mlp.experts.N.{gate,up,down}_proj.weight`, one slice each;
 * - gpt-oss: HF's `x @ W` tensors `gate_up_proj [E, H, 2I]` (gate/up columns interleaved) and
 *   `down_proj [E, I, H]` are transposed to Linear rows and gate/up split apart (even rows
 *   gate, odd rows up), biases likewise (`ffn_{gate,up,down}_exps.bias`);
 * - gpt-oss MXFP4: the hub's `*_blocks [E, rows, K/32, 16]` and `*_scales [E, rows, K/32]`
 *   become GGML MXFP4 blocks of 17 bytes, the scale byte then 16 bytes of E2M1 codes, gate/up
 *   rows split the same way. The codes are the same; only their order within a block
 *   differs: the hub's byte j holds values 2j (low nibble) and 2j+1, ggml's byte j values j
 *   (low) and j + 16 (ggml-quants.c dequantize_row_mxfp4). No value is requantized.
 * - Q8_0 / Q4_0 experts (`convert --quantization`, llama.cpp's quantizer): the same stacks of
 *   Linear rows, each row quantized along its K (gpt-oss: after the transpose, so gate/up
 *   rows split as above), exactly the blocks load-time quantization makes (moe_weights.ts).
 *   A reader serves them as HF tensors whose `blocks` are those Linear rows' blocks (for
 *   gpt-oss's `x @ W` tensors: of the transposed rows, gate/up interleaved again), so the
 *   expert uploader packs the file's blocks unchanged; their f32 values are the blocks'
 *   dequantized values in HF layout.
 * A reader rebuilds the HF tensors (what moe_weights.ts uploads) from these.
 * @module
 */
import type { ModelSpec } from "../config.ts";
import { CheckpointError } from "../errors.ts";
import { dequantize } from "../quant/dequantize.ts";
import { quantizeRows } from "../quant/quantized_source.ts";
import { type ExpertQuantType, quantFits } from "../moe_weights.ts";
import type { QuantType } from "../quant/ggml_types.ts";
import type { SafetensorsDType } from "../safetensors.ts";
import type { SourceTensor, TensorSource } from "../tensor_source.ts";
import type { GgufHeader, GgufTensorInfo } from "./reader.ts";
import type { BlockOverride, GgufTensor } from "./writer.ts";

/** Bytes of the MXFP4 codes of one block of 32 values (the scale is one more byte). */
const CODE_BYTES = 16;
const BLOCK = 32;

/** Reads `length` bytes at `offset` of a GGUF tensor's data. */
export type RangeReader = (t: GgufTensorInfo, offset: number, length: number) => Promise<Uint8Array<ArrayBuffer>>;

/** An HF tensor a GGUF file holds only as part of (or spread over) its own tensors. */
export interface VirtualTensor {
  info: SourceTensor;
  /** The tensor's values as `info.dtype` (dequantized f32 when `info.blocks`). */
  read(range: RangeReader): Promise<Uint8Array<ArrayBuffer>>;
  /** With `info.blocks`: the blocks (see the module's note on gpt-oss). */
  readBlocks?(range: RangeReader): Promise<Uint8Array<ArrayBuffer>>;
}

/** Per expert, the rows of `parts` (each [E][rows] of `rowBytes`) interleaved: part 0 row 0, part 1 row 0, ... */
function interleaveRows(parts: Uint8Array[], E: number, rows: number, rowBytes: number): Uint8Array<ArrayBuffer> {
  const n = parts.length;
  const out = new Uint8Array(E * rows * n * rowBytes);
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < rows; r++) {
      for (let p = 0; p < n; p++) {
        const s = (e * rows + r) * rowBytes;
        out.set(parts[p].subarray(s, s + rowBytes), ((e * rows + r) * n + p) * rowBytes);
      }
    }
  }
  return out;
}

/** One ggml MXFP4 block's codes (16 bytes at `src`) in the hub's order, written at `dst`. */
function hubCodes(ggml: Uint8Array, src: number, out: Uint8Array, dst: number): void {
  const value = (n: number) => (n < CODE_BYTES ? ggml[src + n] & 15 : ggml[src + n - CODE_BYTES] >> 4);
  for (let j = 0; j < CODE_BYTES; j++) out[dst + j] = value(2 * j) | (value(2 * j + 1) << 4);
}

/** One hub block's codes (16 bytes at `src`) in ggml's order, written at `dst`. */
function ggmlCodes(hub: Uint8Array, src: number, out: Uint8Array, dst: number): void {
  const value = (n: number) => (hub[src + (n >> 1)] >> (4 * (n & 1))) & 15;
  for (let j = 0; j < CODE_BYTES; j++) out[dst + j] = value(j) | (value(j + CODE_BYTES) << 4);
}

/**
 * Hub MXFP4 rows -> ggml MXFP4 rows: output row r of every expert is input row `pick(r)`.
 * `blocks` [E][rows][K/32][16], `scales` [E][rows][K/32]; returns [E][outRows][K/32][17].
 */
export function ggmlMxfp4(blocks: Uint8Array, scales: Uint8Array, E: number, rows: number, K: number, outRows: number, pick: (r: number) => number): Uint8Array<ArrayBuffer> {
  const nb = K / BLOCK;
  const out = new Uint8Array(E * outRows * nb * (CODE_BYTES + 1));
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < outRows; r++) {
      const src = e * rows + pick(r);
      const dst = e * outRows + r;
      for (let b = 0; b < nb; b++) {
        const o = (dst * nb + b) * (CODE_BYTES + 1);
        out[o] = scales[src * nb + b];
        ggmlCodes(blocks, (src * nb + b) * CODE_BYTES, out, o + 1);
      }
    }
  }
  return out;
}

/**
 * ggml MXFP4 rows -> the hub's blocks and scales, rows interleaved from `parts` (row r of
 * the output is row r / parts.length of part r % parts.length; one part: as stored).
 */
export function hubMxfp4(parts: Uint8Array[], E: number, partRows: number, K: number): { blocks: Uint8Array<ArrayBuffer>; scales: Uint8Array<ArrayBuffer> } {
  const nb = K / BLOCK;
  const n = parts.length;
  const rows = partRows * n;
  const blocks = new Uint8Array(E * rows * nb * CODE_BYTES);
  const scales = new Uint8Array(E * rows * nb);
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < rows; r++) {
      const part = parts[r % n];
      const src = e * partRows + Math.floor(r / n);
      const dst = e * rows + r;
      for (let b = 0; b < nb; b++) {
        const i = (src * nb + b) * (CODE_BYTES + 1);
        scales[dst * nb + b] = part[i];
        hubCodes(part, i + 1, blocks, (dst * nb + b) * CODE_BYTES);
      }
    }
  }
  return { blocks, scales };
}

/**
 * Per expert, a [R][C] matrix of `size`-byte elements transposed to [C][R], keeping the
 * columns `c` with c % step === phase (gate: step 2 phase 0, up: phase 1; all: step 1).
 */
function transposeColumns(src: Uint8Array, E: number, R: number, C: number, size: number, step: number, phase: number): Uint8Array<ArrayBuffer> {
  const cols = C / step;
  const out = new Uint8Array(E * R * C * size / step);
  for (let e = 0; e < E; e++) {
    for (let c = 0; c < cols; c++) {
      for (let r = 0; r < R; r++) {
        const s = ((e * R + r) * C + c * step + phase) * size;
        const d = ((e * cols + c) * R + r) * size;
        for (let b = 0; b < size; b++) out[d + b] = src[s + b];
      }
    }
  }
  return out;
}

/**
 * The inverse of {@link transposeColumns} over all parts: per expert, [C][R] Linear rows
 * of `parts.length` parts, interleaved by row (gate 0, up 0, gate 1, ...), back to [R][C·n].
 */
function interleaveTransposed(parts: Uint8Array[], E: number, R: number, C: number, size: number): Uint8Array<ArrayBuffer> {
  const n = parts.length;
  const out = new Uint8Array(E * R * C * n * size);
  for (let e = 0; e < E; e++) {
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < R; r++) {
        for (let p = 0; p < n; p++) {
          const s = ((e * C + c) * R + r) * size;
          const d = ((e * R + r) * C * n + c * n + p) * size;
          for (let b = 0; b < size; b++) out[d + b] = parts[p][s + b];
        }
      }
    }
  }
  return out;
}

function valueType(t: GgufTensorInfo, file: string): "F32" | "F16" | "BF16" {
  const name = t.type.name;
  if (name !== "F32" && name !== "F16" && name !== "BF16") throw new CheckpointError(file, `tensor ${t.name} is ${name} where plain floats were expected`);
  return name;
}

/** The expert block type of `t` (Q8_0, Q4_0, Q4_K, Q6_K), or null for plain floats (and MXFP4). */
function blockType(t: GgufTensorInfo): QuantType | null {
  const name = t.type.name;
  return name === "Q8_0" || name === "Q4_0" || name === "Q4_K" || name === "Q6_K" ? name : null;
}

/** f32 values as their bytes. */
function f32Bytes(v: Float32Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
}

/**
 * The HF tensors of every sparse layer of a qwen3moe / gpt-oss file (the shapes checked by
 * validate.ts's checkGgufExperts), read from the stacked expert tensors.
 */
export function moeHfTensors(header: GgufHeader, spec: ModelSpec): Map<string, VirtualTensor> {
  const out = new Map<string, VirtualTensor>();
  const moe = spec.moe;
  if (!moe) return out;
  const file = header.path;
  const E = moe.numExperts;
  const I = moe.expertIntermediateSize;
  const H = spec.hiddenSize;
  const tensor = (name: string) => {
    const t = header.tensors.get(name);
    if (!t) throw new CheckpointError(file, `missing tensor ${name}`);
    return t;
  };
  const whole = (t: GgufTensorInfo, range: RangeReader) => range(t, 0, t.byteLength);
  const add = (name: string, dtype: SafetensorsDType, shape: number[], byteLength: number, read: VirtualTensor["read"], at?: GgufTensorInfo) => {
    out.set(name, { info: { name, dtype, shape, file, byteOffset: at?.byteOffset ?? 0, byteLength }, read });
  };
  for (let i = 0; i < spec.numLayers; i++) {
    if (!moe.sparseLayers[i]) continue;
    const b = `blk.${i}`;
    const p = `model.layers.${i}.mlp.experts`;
    const gate = tensor(`${b}.ffn_gate_exps.weight`);
    const up = tensor(`${b}.ffn_up_exps.weight`);
    const down = tensor(`${b}.ffn_down_exps.weight`);
    if (moe.experts === "qwen") {
      // Expert e's matrix is the e-th slice of the stack: read in place.
      for (const [t, hf, shape] of [[gate, "gate_proj", [I, H]], [up, "up_proj", [I, H]], [down, "down_proj", [H, I]]] as const) {
        const per = t.byteLength / E;
        const q = blockType(t);
        for (let e = 0; e < E; e++) {
          const at = { ...t, byteOffset: t.byteOffset + e * per };
          const slice = (range: RangeReader) => range(t, e * per, per);
          if (q) {
            const name = `${p}.${e}.${hf}.weight`;
            out.set(name, {
              info: { name, dtype: "F32", shape: [...shape], file, byteOffset: at.byteOffset, byteLength: shape[0] * shape[1] * 4, blocks: { type: q, rowBytes: per / shape[0], byteLength: per } },
              read: async (range) => f32Bytes(dequantize(q, await slice(range))),
              readBlocks: slice,
            });
          } else add(`${p}.${e}.${hf}.weight`, valueType(t, file), [...shape], per, slice, at);
        }
      }
      continue;
    }
    if (moe.mxfp4) {
      const blocks = async (range: RangeReader, parts: GgufTensorInfo[], rows: number, K: number) =>
        hubMxfp4(await Promise.all(parts.map((t) => whole(t, range))), E, rows, K);
      const gu = [gate, up];
      add(`${p}.gate_up_proj_blocks`, "U8", [E, 2 * I, H / BLOCK, CODE_BYTES], E * 2 * I * H / 2, async (r) => (await blocks(r, gu, I, H)).blocks);
      add(`${p}.gate_up_proj_scales`, "U8", [E, 2 * I, H / BLOCK], E * 2 * I * H / BLOCK, async (r) => (await blocks(r, gu, I, H)).scales);
      add(`${p}.down_proj_blocks`, "U8", [E, H, I / BLOCK, CODE_BYTES], E * H * I / 2, async (r) => (await blocks(r, [down], H, I)).blocks);
      add(`${p}.down_proj_scales`, "U8", [E, H, I / BLOCK], E * H * I / BLOCK, async (r) => (await blocks(r, [down], H, I)).scales);
    } else if (blockType(gate) || blockType(up) || blockType(down)) {
      // Linear-row blocks (gate/up interleaved again by row); values dequantized, then as HF's x @ W.
      // gate and up rows are interleaved again, so they share a type; down may differ.
      const q = blockType(gate)!;
      const qd = blockType(down);
      if (blockType(up) !== q || qd === null) throw new CheckpointError(file, `tensors ${gate.name} and ${up.name} must share one block type, and ${down.name} be blocks too`);
      const f32 = async (t: GgufTensorInfo, r: RangeReader) => f32Bytes(dequantize(t.type.name, await whole(t, r)));
      const guInfo = { name: `${p}.gate_up_proj`, dtype: "F32" as const, shape: [E, H, 2 * I], file, byteOffset: 0, byteLength: E * H * 2 * I * 4 };
      out.set(guInfo.name, {
        info: { ...guInfo, blocks: { type: q, rowBytes: gate.byteLength / (E * I), byteLength: 2 * gate.byteLength } },
        read: async (r) => interleaveTransposed([await f32(gate, r), await f32(up, r)], E, H, I, 4),
        readBlocks: async (r) => interleaveRows([await whole(gate, r), await whole(up, r)], E, I, gate.byteLength / (E * I)),
      });
      const dInfo = { name: `${p}.down_proj`, dtype: "F32" as const, shape: [E, I, H], file, byteOffset: 0, byteLength: E * I * H * 4 };
      out.set(dInfo.name, {
        info: { ...dInfo, blocks: { type: qd, rowBytes: down.byteLength / (E * H), byteLength: down.byteLength } },
        read: async (r) => interleaveTransposed([await f32(down, r)], E, I, H, 4),
        readBlocks: (r) => whole(down, r),
      });
    } else {
      const dtype = valueType(gate, file);
      if (valueType(up, file) !== dtype) throw new CheckpointError(file, `tensors ${gate.name} (${dtype}) and ${up.name} (${up.type.name}) differ in type`);
      const size = gate.type.blockBytes;
      add(`${p}.gate_up_proj`, dtype, [E, H, 2 * I], E * H * 2 * I * size, async (r) => interleaveTransposed([await whole(gate, r), await whole(up, r)], E, H, I, size));
      const downType = valueType(down, file);
      const downSize = down.type.blockBytes;
      // ffn_down_exps holds [E][H][I] Linear rows; HF's down_proj is [E][I][H].
      add(`${p}.down_proj`, downType, [E, I, H], E * I * H * downSize, async (r) => interleaveTransposed([await whole(down, r)], E, I, H, downSize));
    }
    const gateBias = tensor(`${b}.ffn_gate_exps.bias`);
    const upBias = tensor(`${b}.ffn_up_exps.bias`);
    const downBias = tensor(`${b}.ffn_down_exps.bias`);
    // Biases come back as f32 values whatever their stored type: gate/up interleaved again.
    const f32 = async (t: GgufTensorInfo, r: RangeReader) => new Uint8Array(dequantize(valueType(t, file), await whole(t, r)).buffer);
    add(`${p}.gate_up_proj_bias`, "F32", [E, 2 * I], E * 2 * I * 4, async (r) => interleaveTransposed([await f32(gateBias, r), await f32(upBias, r)], E, 1, I, 4));
    add(`${p}.down_proj_bias`, "F32", [E, H], E * H * 4, (r) => f32(downBias, r));
  }
  return out;
}

/**
 * GGUF expert tensors of `spec`'s sparse layers, from the checkpoint's HF tensors. `quant`:
 * float experts become Q8_0 / Q4_0 blocks of their Linear rows where hidden and expert widths
 * are multiples of 32 (as load-time quantization does; else they keep their stored type).
 * `blocks`: stacks stored as other block types (K-quants), see {@link BlockOverride}; it
 * takes precedence over `quant`.
 */
export function moeGgufTensors(source: TensorSource, spec: ModelSpec, quant: ExpertQuantType | null = null, blocks?: BlockOverride): GgufTensor[] {
  const moe = spec.moe;
  if (!moe) return [];
  const E = moe.numExperts;
  const I = moe.expertIntermediateSize;
  const H = spec.hiddenSize;
  const q = quant && quantFits(H, I) ? quant : null;
  const out: GgufTensor[] = [];
  const read = (name: string) => source.read(source.get(name));
  const valueDtype = (name: string): "F32" | "F16" | "BF16" => {
    const info = source.get(name);
    if (info.dtype === "U8" || info.blocks) throw new CheckpointError(info.file, `tensor ${name}: expert weights must be F32, F16 or BF16 (or the MXFP4 blocks of gpt-oss)`);
    return info.dtype;
  };
  const size = (dtype: "F32" | "F16" | "BF16") => (dtype === "F32" ? 4 : 2);
  for (let i = 0; i < spec.numLayers; i++) {
    if (!moe.sparseLayers[i]) continue;
    const b = `blk.${i}`;
    const p = `model.layers.${i}.mlp.experts`;
    if (moe.experts === "qwen") {
      for (const [hf, gg, dims] of [["gate_proj", "gate", [H, I, E]], ["up_proj", "up", [H, I, E]], ["down_proj", "down", [I, H, E]]] as const) {
        const names = Array.from({ length: E }, (_, e) => `${p}.${e}.${hf}.weight`);
        const dtype = valueDtype(names[0]);
        const other = names.find((n) => valueDtype(n) !== dtype);
        if (other) throw new CheckpointError(source.get(other).file, `tensor ${other} is ${source.get(other).dtype}, but ${names[0]} is ${dtype}: experts of one kind must share a dtype`);
        const k = hf === "down_proj" ? I : H;
        const override = blocks?.type(names[0], k) ?? null;
        if (override) {
          out.push({
            name: `${b}.ffn_${gg}_exps.weight`,
            dims: [...dims],
            type: override,
            bytes: async () => {
              const parts = [];
              for (const n of names) parts.push(blocks!.encode(n, dequantize(dtype, await read(n)), k));
              const all = new Uint8Array(parts.reduce((s, x) => s + x.length, 0));
              let at = 0;
              for (const x of parts) (all.set(x, at), at += x.length);
              return all;
            },
          });
          continue;
        }
        out.push({
          name: `${b}.ffn_${gg}_exps.weight`,
          dims: [...dims],
          type: q ?? dtype,
          bytes: async () => {
            const all = new Uint8Array(E * I * H * size(dtype));
            for (const [e, n] of names.entries()) all.set(await read(n), e * I * H * size(dtype));
            // Rows of whole blocks: quantizing the stack is quantizing each expert's rows.
            return q ? quantizeRows(q, dequantize(dtype, all)) : all;
          },
        });
      }
      continue;
    }
    if (moe.mxfp4) {
      const gu = async () => [await read(`${p}.gate_up_proj_blocks`), await read(`${p}.gate_up_proj_scales`)];
      out.push(
        { name: `${b}.ffn_gate_exps.weight`, dims: [H, I, E], type: "MXFP4", bytes: async () => ggmlMxfp4(...(await gu()) as [Uint8Array, Uint8Array], E, 2 * I, H, I, (r) => 2 * r) },
        { name: `${b}.ffn_up_exps.weight`, dims: [H, I, E], type: "MXFP4", bytes: async () => ggmlMxfp4(...(await gu()) as [Uint8Array, Uint8Array], E, 2 * I, H, I, (r) => 2 * r + 1) },
        {
          name: `${b}.ffn_down_exps.weight`,
          dims: [I, H, E],
          type: "MXFP4",
          bytes: async () => ggmlMxfp4(await read(`${p}.down_proj_blocks`), await read(`${p}.down_proj_scales`), E, H, I, H, (r) => r),
        },
      );
    } else if (blocks?.type(`${p}.gate_up_proj`, H) || blocks?.type(`${p}.down_proj`, I)) {
      // As below on the Linear rows (all experts' at once), encoded by `blocks`.
      const gt = blocks.type(`${p}.gate_up_proj`, H);
      const dt = blocks.type(`${p}.down_proj`, I);
      if (!gt || !dt) throw new CheckpointError(source.get(`${p}.down_proj`).file, `${p}: gate_up_proj and down_proj must both be stored as blocks`);
      const rows = async (name: string, R: number, C: number, step: number, phase: number) => {
        const values = f32Bytes(dequantize(valueDtype(name), await read(name)));
        return blocks.encode(name, new Float32Array(transposeColumns(values, E, R, C, 4, step, phase).buffer), R);
      };
      out.push(
        { name: `${b}.ffn_gate_exps.weight`, dims: [H, I, E], type: gt, bytes: () => rows(`${p}.gate_up_proj`, H, 2 * I, 2, 0) },
        { name: `${b}.ffn_up_exps.weight`, dims: [H, I, E], type: gt, bytes: () => rows(`${p}.gate_up_proj`, H, 2 * I, 2, 1) },
        { name: `${b}.ffn_down_exps.weight`, dims: [I, H, E], type: dt, bytes: () => rows(`${p}.down_proj`, I, H, 1, 0) },
      );
    } else if (q) {
      // As below, on f32 values, then each Linear row quantized along its K.
      const rows = async (name: string, R: number, C: number, step: number, phase: number) => {
        const values = f32Bytes(dequantize(valueDtype(name), await read(name)));
        return quantizeRows(q, new Float32Array(transposeColumns(values, E, R, C, 4, step, phase).buffer));
      };
      out.push(
        { name: `${b}.ffn_gate_exps.weight`, dims: [H, I, E], type: q, bytes: () => rows(`${p}.gate_up_proj`, H, 2 * I, 2, 0) },
        { name: `${b}.ffn_up_exps.weight`, dims: [H, I, E], type: q, bytes: () => rows(`${p}.gate_up_proj`, H, 2 * I, 2, 1) },
        { name: `${b}.ffn_down_exps.weight`, dims: [I, H, E], type: q, bytes: () => rows(`${p}.down_proj`, I, H, 1, 0) },
      );
    } else {
      // x @ W [E][H][2I] -> Linear rows [E][I][H], even columns gate, odd up; [E][I][H] -> [E][H][I].
      const gt = valueDtype(`${p}.gate_up_proj`);
      const dt = valueDtype(`${p}.down_proj`);
      out.push(
        { name: `${b}.ffn_gate_exps.weight`, dims: [H, I, E], type: gt, bytes: async () => transposeColumns(await read(`${p}.gate_up_proj`), E, H, 2 * I, size(gt), 2, 0) },
        { name: `${b}.ffn_up_exps.weight`, dims: [H, I, E], type: gt, bytes: async () => transposeColumns(await read(`${p}.gate_up_proj`), E, H, 2 * I, size(gt), 2, 1) },
        { name: `${b}.ffn_down_exps.weight`, dims: [I, H, E], type: dt, bytes: async () => transposeColumns(await read(`${p}.down_proj`), E, I, H, size(dt), 1, 0) },
      );
    }
    const f32 = async (name: string) => new Uint8Array(dequantize(valueDtype(name), await read(name)).buffer);
    out.push(
      { name: `${b}.ffn_gate_exps.bias`, dims: [I, E], type: "F32", bytes: async () => transposeColumns(await f32(`${p}.gate_up_proj_bias`), E, 1, 2 * I, 4, 2, 0) },
      { name: `${b}.ffn_up_exps.bias`, dims: [I, E], type: "F32", bytes: async () => transposeColumns(await f32(`${p}.gate_up_proj_bias`), E, 1, 2 * I, 4, 2, 1) },
      { name: `${b}.ffn_down_exps.bias`, dims: [H, E], type: "F32", bytes: () => f32(`${p}.down_proj_bias`) },
    );
  }
  return out;
}
