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
  if (rope.type === "yarn" && rope.yarn) {
    // transformers' _compute_yarn_parameters: interpolated (divided by factor) below the
    // ramp, extrapolated (kept) above it, blended linearly between the correction dims.
    const { betaFast, betaSlow, truncate } = rope.yarn;
    const orig = rope.originalMaxPositionEmbeddings;
    const correction = (rot: number) => (headDim * Math.log(orig / (rot * 2 * Math.PI))) / (2 * Math.log(rope.theta));
    let low = correction(betaFast);
    let high = correction(betaSlow);
    if (truncate) {
      low = Math.floor(low);
      high = Math.ceil(high);
    }
    low = Math.max(low, 0);
    high = Math.min(high, headDim - 1);
    if (low === high) high += 0.001;
    for (let i = 0; i < half; i++) {
      const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
      const extrapolation = 1 - ramp;
      inv[i] = (inv[i] / rope.factor) * (1 - extrapolation) + inv[i] * extrapolation;
    }
  }
  if (rope.freqFactors) for (let i = 0; i < half; i++) inv[i] = inv[i] / rope.freqFactors[i];
  return inv;
}

