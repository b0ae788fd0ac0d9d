/**
 * Parameter counts of a model from the tensors its spec expects: the total, and the active
 * count a token uses (every dense tensor, plus k of the E experts of each sparse layer).
 * MXFP4 expert blocks count two parameters per byte; their scales count none.
 * @module
 */
import { expectedTensors, type ModelSpec } from "./config.ts";

/** Total and per-token parameters. */
export interface ParameterCount {
  total: number;
  active: number;
}

/** Counts `spec`'s parameters (a tied LM head counts once). */
export function parameterCount(spec: ModelSpec): ParameterCount {
  let dense = 0;
  let experts = 0;
  for (const { name, shape } of expectedTensors(spec)) {
    const elements = shape.reduce((a, b) => a * b, 1);
    const params = name.endsWith("_scales") ? 0 : name.endsWith("_blocks") ? elements * 2 : elements;
    if (name.includes(".experts.")) experts += params;
    else dense += params;
  }
  const moe = spec.moe;
  return { total: dense + experts, active: dense + (moe ? (experts * moe.topK) / moe.numExperts : 0) };
}
