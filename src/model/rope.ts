/**
 * RoPE inverse frequencies for each rope type, computed once on the CPU (as transformers
 * does) so the kernel only multiplies by the position.
 * @module
 */
import type { RopeSpec } from "./config.ts";

/** Inverse frequency per rotation pair (headDim / 2 values). */
export function ropeInverseFrequencies(rope: RopeSpec, headDim: number): Float32Array<ArrayBuffer> {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(rope.theta, (2 * i) / headDim);
  if (rope.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = inv[i] / rope.factor;
  } else if (rope.type === "llama3") {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, and the band
    // between is interpolated smoothly.
    const lowWavelen = rope.originalMaxPositionEmbeddings / rope.lowFreqFactor;
    const highWavelen = rope.originalMaxPositionEmbeddings / rope.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) {
        inv[i] = inv[i] / rope.factor;
      } else if (wavelen >= highWavelen) {
        const smooth = (rope.originalMaxPositionEmbeddings / wavelen - rope.lowFreqFactor) /
          (rope.highFreqFactor - rope.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / rope.factor) + smooth * inv[i];
      }
    }
  }
  if (rope.freqFactors) for (let i = 0; i < half; i++) inv[i] = inv[i] / rope.freqFactors[i];
  return inv;
}
