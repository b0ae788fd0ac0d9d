/**
 * The ggml tensor types this runtime reads, with their block geometry (llama.cpp's
 * ggml-common.h): a row of K values is K / blockElems blocks of blockBytes bytes each.
 * @module
 */
import type { Quantization } from "../../types/api.ts";

/** Type names as llama.cpp spells them. */
export type GgmlTypeName = "F32" | "F16" | "BF16" | "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K" | "MXFP4";

/** Block types produced or read as raw blocks (the quantized ones). */
export type QuantType = "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K";

/** What `--quantization` / `quantization` accepts: the types we quantize to at load time. */
export type LoadQuantization = Quantization;

/** One type's geometry and id. */
export interface GgmlTypeInfo {
  name: GgmlTypeName;
  /** ggml's enum value, as stored in GGUF tensor infos. */
  id: number;
  /** Values per block (1 for plain floats). */
  blockElems: number;
  /** Bytes per block. */
  blockBytes: number;
}

const TYPES: readonly GgmlTypeInfo[] = [
  { name: "F32", id: 0, blockElems: 1, blockBytes: 4 },
  { name: "F16", id: 1, blockElems: 1, blockBytes: 2 },
  // f16 d + 16 bytes of nibbles.
  { name: "Q4_0", id: 2, blockElems: 32, blockBytes: 18 },
  // f16 d + 32 int8.
  { name: "Q8_0", id: 8, blockElems: 32, blockBytes: 34 },
  // f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles.
  { name: "Q4_K", id: 12, blockElems: 256, blockBytes: 144 },
  // 128 bytes low nibbles, 64 bytes high bit pairs, 16 int8 scales, f16 d.
  { name: "Q6_K", id: 14, blockElems: 256, blockBytes: 210 },
  { name: "BF16", id: 30, blockElems: 1, blockBytes: 2 },
  // E8M0 scale byte + 16 bytes of E2M1 codes (byte j: value j low, value j + 16 high).
  // Read only as gpt-oss expert blocks (gguf/moe_layout.ts), never as a QuantType.
  { name: "MXFP4", id: 39, blockElems: 32, blockBytes: 17 },
];

/** Type info by name. */
export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlTypeInfo>> = Object.fromEntries(
  TYPES.map((t) => [t.name, t]),
) as Record<GgmlTypeName, GgmlTypeInfo>;

const BY_ID = new Map(TYPES.map((t) => [t.id, t]));

/** ggml's names for the ids we do not read, so an error can say what a file holds. */
const OTHER_NAMES: Record<number, string> = {
  3: "Q4_1",
  6: "Q5_0",
  7: "Q5_1",
  9: "Q8_1",
  10: "Q2_K",
  11: "Q3_K",
  13: "Q5_K",
  15: "Q8_K",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  20: "IQ4_NL",
  21: "IQ3_S",
  22: "IQ2_S",
  23: "IQ4_XS",
  24: "I8",
  25: "I16",
  26: "I32",
  27: "I64",
  28: "F64",
  29: "IQ1_M",
  34: "TQ1_0",
  35: "TQ2_0",
};

/** The type with ggml id `id`, or undefined for one this runtime does not read. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** A readable name for any ggml id ("Q5_K", or "type 99" when unknown to us too). */
export function ggmlTypeLabel(id: number): string {
  return BY_ID.get(id)?.name ?? OTHER_NAMES[id] ?? `type ${id}`;
}

/** Whether `name` is stored as blocks rather than plain floats. */
export function isQuantType(name: GgmlTypeName): name is QuantType {
  return GGML_TYPES[name].blockElems > 1 && name !== "MXFP4";
}

/** Bytes of `elements` values of a type; elements must fill whole blocks. */
export function ggmlBytes(type: GgmlTypeInfo, elements: number): number {
  return (elements / type.blockElems) * type.blockBytes;
}

/** The block type of a load-time quantization, or null for "none". */
export function loadQuantType(q: LoadQuantization): "Q8_0" | "Q4_0" | null {
  return q === "q8_0" ? "Q8_0" : q === "q4_0" ? "Q4_0" : null;
}
