/**
 * llama.cpp Q4_K / Q6_K super-blocks for tests: random valid blocks (every field random in its
 * range), and the quantizer from floats `convert --quantization q4_k_m` uses
 * (src/model/quant/k_quantize.ts).
 * @module
 */
import { writeF16 } from "../../src/model/quant/f16.ts";
import { setScaleMin } from "../../src/model/quant/k_quantize.ts";
import { Q4_K_BYTES, Q6_K_BYTES, QK_K } from "../../src/model/quant/k_quants.ts";
import type { Rng } from "../../bench/rng.ts";

const int = (rng: Rng, n: number) => Math.floor(rng.next() * n);

/** `blocks` random Q4_K super-blocks: f16 d, dmin around 1e-2, random scales, mins, nibbles. */
export function randomQ4K(rng: Rng, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * Q4_K_BYTES);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q4_K_BYTES;
    writeF16(out, at, (0.5 + rng.next()) * 1e-2);
    writeF16(out, at + 2, (0.5 + rng.next()) * 5e-3);
    for (let j = 0; j < 8; j++) setScaleMin(out, at + 4, j, int(rng, 64), int(rng, 64));
    for (let i = 0; i < 128; i++) out[at + 16 + i] = int(rng, 256);
  }
  return out;
}

/** `blocks` random Q6_K super-blocks: random 6-bit values, int8 scales, f16 d around 1e-3. */
export function randomQ6K(rng: Rng, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * Q6_K_BYTES);
  for (let b = 0; b < blocks; b++) {
    const at = b * Q6_K_BYTES;
    for (let i = 0; i < 192; i++) out[at + i] = int(rng, 256);
    for (let i = 0; i < 16; i++) out[at + 192 + i] = int(rng, 256);
    writeF16(out, at + 208, (0.5 + rng.next()) * 1e-3);
  }
  return out;
}

export { quantizeQ4K, quantizeQ6K, setScaleMin } from "../../src/model/quant/k_quantize.ts";
