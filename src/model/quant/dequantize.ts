/**
 * Raw ggml tensor bytes of any type we read -> f32 values: plain floats are decoded, block
 * types dequantized. Callers pass whole blocks (whole rows, in practice).
 * @module
 */
import { type GgmlTypeName, GGML_TYPES } from "./ggml_types.ts";
import { dequantizeQ8_0 } from "./q8_0.ts";
import { dequantizeQ4_0 } from "./q4_0.ts";
import { dequantizeQ4_K, dequantizeQ6_K } from "./k_quants.ts";

/** Decodes `bytes` of `type` (a whole number of blocks) into f32 values. */
export function dequantize(type: GgmlTypeName, bytes: Uint8Array): Float32Array<ArrayBuffer> {
  const info = GGML_TYPES[type];
  if (bytes.length % info.blockBytes !== 0) {
    throw new RangeError(`${type}: ${bytes.length} bytes is not a whole number of ${info.blockBytes}-byte blocks`);
  }
  const blocks = bytes.length / info.blockBytes;
  const out = new Float32Array(blocks * info.blockElems);
  switch (type) {
    case "F32":
      new Uint8Array(out.buffer).set(bytes);
      break;
    case "F16": {
      const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
      out.set(new Float16Array(aligned.buffer, aligned.byteOffset, blocks));
      break;
    }
    case "BF16": {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < blocks; i++) bits[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
      break;
    }
    case "Q8_0":
      dequantizeQ8_0(bytes, 0, blocks, out);
      break;
    case "Q4_0":
      dequantizeQ4_0(bytes, 0, blocks, out);
      break;
    case "Q4_K":
      dequantizeQ4_K(bytes, 0, blocks, out);
      break;
    case "Q6_K":
      dequantizeQ6_K(bytes, 0, blocks, out);
      break;
    case "MXFP4":
      dequantizeMxfp4(bytes, blocks, out);
      break;
  }
  return out;
}

/** E2M1 code -> value (sign bit 3). */
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** ggml's block_mxfp4: scale 2^(e - 127), then byte j holds value j (low nibble) and j + 16 (high). */
function dequantizeMxfp4(bytes: Uint8Array, blocks: number, out: Float32Array): void {
  for (let b = 0; b < blocks; b++) {
    const at = b * 17;
    const scale = 2 ** (bytes[at] - 127);
    for (let j = 0; j < 16; j++) {
      const q = bytes[at + 1 + j];
      out[b * 32 + j] = E2M1[q & 15] * scale;
      out[b * 32 + j + 16] = E2M1[q >> 4] * scale;
    }
  }
}
