/**
 * One sparse feed-forward as the forward pass dispatches it, five dispatches:
 *   1. `moe_route`: per token, the post-attention RMSNorm (to `xn`), the router logits and
 *      the top-k experts with their weights;
 *   2. `moe_group`: one workgroup groups the step's assignments by expert (count, scan,
 *      scatter) into tiles and writes the indirect grids of 3 and 4 (no readback);
 *   3. `moe_gate_up` (indirect): per tile, the expert's gate|up rows and SwiGLU;
 *   4. `moe_down` (indirect): per tile, the expert's down rows times the routing weight;
 *   5. `moe_combine`: each token's K outputs summed in slot order into the residual.
 * A shared expert (Qwen3.5-MoE) is the caller's dense SwiGLU on `xn` between 4 and 5 (the
 * forward pass's matmuls, into {@link MoeScratch.shared}); the router computes its sigmoid
 * gate per token from an extra router row and `moe_combine` adds gate * shared after the K.
 * Only experts with tokens get tiles, so a decode step of one sequence reads K of the E
 * experts' weights. Both kernel families run these kernels; column-block experts (f16, f32,
 * Q8_0, Q4_0, MXFP4) take an invocation (cpu) or a workgroup (gpu) per block of 8 columns.
 * @module
 */
import type { KernelFamily } from "../types/api.ts";
import type { MoeSpec } from "../model/moe_config.ts";
import type { ExpertPart, MoeLayerWeights } from "../model/moe_weights.ts";
import type { BindingResource, CompiledKernel, PipelineCache } from "../kernels/registry.ts";
import {
  MOE_COMBINE,
  MOE_DOWN,
  MOE_DOWN_C8,
  MOE_DOWN_WG,
  MOE_GATE_UP,
  MOE_GATE_UP_C8,
  MOE_GATE_UP_WG,
  MOE_GROUP,
  MOE_ROUTE,
  MOE_TILE_ROWS,
  MOE_WG,
} from "../kernels/moe_descriptors.ts";
import { type Grid, rowsGrid } from "./matmul_op.ts";
import type { StepShape } from "./step_meta.ts";

/** Activation buffers of the sparse layers (shared: layers run in order). */
export interface MoeScratch {
  /** Normed rows [T, H]. */
  xn: GPUBuffer;
  /** Expert id and weight per assignment [T * K]. */
  ids: GPUBuffer;
  wts: GPUBuffer;
  /** Assignment indices grouped by expert [T * K]. */
  sorted: GPUBuffer;
  /** (expert, start, count) per tile. */
  tiles: GPUBuffer;
  /** Indirect grids: gate|up then down (6 words; INDIRECT usage). */
  args: GPUBuffer;
  /** SwiGLU activations per assignment [T * K, I]. */
  h: GPUBuffer;
  /** Weighted expert outputs per assignment [T * K, H]. */
  y: GPUBuffer;
  /**
   * The shared expert: its SwiGLU activations [T, S], its output rows [T, H] (what the caller's
   * gate|up and down matmuls write) and its sigmoid gate per token [T]; null without one.
   */
  shared: { act: GPUBuffer; y: GPUBuffer; gate: GPUBuffer } | null;
}

/** Most tiles a step of `maxTokens` can make: every expert's run rounded up to whole tiles. */
export function maxMoeTiles(moe: MoeSpec, maxTokens: number): number {
  return Math.ceil((maxTokens * moe.topK) / MOE_TILE_ROWS) + moe.numExperts;
}

/** Creates the scratch buffers through `buffer(label, words, extraUsage)`. */
export function createMoeScratch(
  moe: MoeSpec,
  hiddenSize: number,
  maxTokens: number,
  buffer: (label: string, words: number, extraUsage?: number) => GPUBuffer,
): MoeScratch {
  const A = maxTokens * moe.topK;
  const S = moe.sharedExpertIntermediateSize ?? 0;
  const tiles = maxMoeTiles(moe, maxTokens);
  if (tiles > 65535) throw new RangeError(`maxTokens ${maxTokens} makes up to ${tiles} expert tiles, over 65535`);
  return {
    xn: buffer("moe.xn", maxTokens * hiddenSize),
    ids: buffer("moe.ids", A, GPUBufferUsage.COPY_SRC),
    wts: buffer("moe.wts", A),
    sorted: buffer("moe.sorted", A),
    tiles: buffer("moe.tiles", 3 * tiles, GPUBufferUsage.COPY_SRC),
    args: buffer("moe.args", 6, GPUBufferUsage.INDIRECT | GPUBufferUsage.COPY_SRC),
    h: buffer("moe.h", A * moe.expertIntermediateSize),
    y: buffer("moe.y", A * hiddenSize),
    shared: S > 0
      ? { act: buffer("moe.shared_act", maxTokens * S), y: buffer("moe.shared_y", maxTokens * hiddenSize), gate: buffer("moe.shared_gate", maxTokens) }
      : null,
  };
}

/** A dispatch of a sparse layer; `indirect` takes its grid from a buffer at that offset. */
export interface MoeDispatch {
  label: string;
  kernel: CompiledKernel;
  resources: Record<string, BindingResource>;
  grid: (shape: StepShape) => Grid;
  indirect?: { buffer: GPUBuffer; offset: number };
}

/** What one sparse layer reads and writes. */
export interface MoeLayerUse {
  /** The residual stream [T, H]: read, and the experts' sum added into it. */
  x: GPUBuffer;
  /** The post-attention norm (offset + w). */
  gamma: GPUBuffer;
  eps: number;
  hiddenSize: number;
  /** The kernel family (picks the column-block expert kernels). */
  family: KernelFamily;
}

function need(b: GPUBuffer | null, what: string): GPUBuffer {
  if (!b) throw new RangeError(`sparse layer: no ${what} buffer`);
  return b;
}

/**
 * The dispatches of one sparse layer: routing, grouping and the experts, then `combine` (a
 * shared expert's matmuls go between them), with the uniform buffers it created (the caller
 * owns them).
 */
export function moeLayerOps(
  pipelines: PipelineCache,
  moe: MoeSpec,
  w: MoeLayerWeights,
  s: MoeScratch,
  use: MoeLayerUse,
  label: string,
): { dispatches: MoeDispatch[]; combine: MoeDispatch; uniforms: GPUBuffer[] } {
  const H = use.hiddenSize;
  const I = moe.expertIntermediateSize;
  const E = moe.numExperts;
  const K = moe.topK;
  const gptOss = moe.experts === "gpt_oss";
  const expert = { W_F32: w.dtype === "f32", GPTOSS: gptOss };
  const topkSoftmax = moe.router === "topk_softmax";
  const shared = s.shared;
  if (!!shared !== (moe.sharedExpertIntermediateSize ?? 0) > 0) throw new RangeError("sparse layer: scratch and spec disagree on the shared expert");
  if (shared && topkSoftmax) throw new RangeError("sparse layer: a shared expert needs softmax-then-top-k routing");
  const route = pipelines.get(MOE_ROUTE, { E, TOPK: K, NORM_TOPK: moe.normTopkProb, TOPK_SOFTMAX: topkSoftmax, SHARED: !!shared });
  const group = pipelines.get(MOE_GROUP, { E });
  const blocks = w.layout === "column_blocks";
  // Column blocks: cpu, an invocation per block; gpu, a workgroup per block (lanes split K).
  const wg = blocks && use.family === "gpu";
  // gate|up and down each take their own block type (a K-quant file's Q4_K gate/up, Q6_K down).
  const c8 = (dtype: MoeLayerWeights["dtype"]) => {
    const d = { W_F32: dtype === "f32", W_Q8_0: dtype === "q8_0", W_Q4_0: dtype === "q4_0", W_Q8X: dtype === "q8x", W_Q4X: dtype === "q4x", W_MXFP4: dtype === "mxfp4", GPTOSS: gptOss };
    if (!blocks && (d.W_Q8_0 || d.W_Q4_0 || d.W_Q8X || d.W_Q4X || d.W_MXFP4)) throw new RangeError(`${label}: ${dtype} experts need the column-block layout`);
    return d;
  };
  const gateUp = !blocks ? pipelines.get(MOE_GATE_UP, expert) : pipelines.get(wg ? MOE_GATE_UP_WG : MOE_GATE_UP_C8, c8(w.dtype));
  const down = !blocks ? pipelines.get(MOE_DOWN, expert) : pipelines.get(wg ? MOE_DOWN_WG : MOE_DOWN_C8, c8(w.downDtype ?? w.dtype));
  // Workgroups per tile: rows, an invocation per output; c8, per 4 SwiGLU / 8 down outputs;
  // wg, a workgroup per block.
  const gxGateUp = wg ? I / 4 : Math.ceil((blocks ? I / 4 : I) / MOE_WG);
  const gxDown = wg ? H / 8 : Math.ceil((blocks ? H / 8 : H) / MOE_WG);
  const extra = (bias: GPUBuffer | null): Record<string, GPUBuffer> => gptOss ? { w_bias: need(bias, "expert bias") } : {};
  const combine = pipelines.get(MOE_COMBINE, { SHARED: !!shared });
  const uniforms = [
    route.uniform({ dim: H, eps: use.eps }, `${label}.route.params`),
    group.uniform({ topk: K, tm: MOE_TILE_ROWS, gx_gate_up: gxGateUp, gx_down: gxDown }, `${label}.group.params`),
    combine.uniform({ hidden: H, topk: K }, `${label}.combine.params`),
  ];
  const none: Grid = [0, 0, 0];
  // One dispatch per part of the experts; each takes the step's tile count from `args`.
  const expertOps = (kind: "gate_up" | "down", kernel: CompiledKernel, parts: ExpertPart[], bias: GPUBuffer | null): MoeDispatch[] =>
    parts.map((part) => {
      const p = kernel.uniform({ hidden: H, inter: I, topk: K, first: part.first, count: part.count }, `${label}.${kind}[${part.first}].params`);
      uniforms.push(p);
      const io: Record<string, GPUBuffer> = kind === "gate_up" ? { xn: s.xn, h: s.h } : { h: s.h, wts: s.wts, y: s.y };
      return {
        label: `${label}.${kind}[${part.first}]`,
        kernel,
        resources: { p, w: part.buffer, sorted: s.sorted, tiles: s.tiles, ...io, ...extra(bias) },
        grid: (shape: StepShape): Grid => shape.tokens ? [kind === "gate_up" ? gxGateUp : gxDown, 1, 1] : none,
        indirect: { buffer: s.args, offset: kind === "gate_up" ? 0 : 12 },
      };
    });
  const dispatches: MoeDispatch[] = [
    {
      label: `${label}.route`,
      kernel: route,
      resources: {
        p: uniforms[0],
        x: use.x,
        gamma: use.gamma,
        router: w.router,
        xn: s.xn,
        ids: s.ids,
        wts: s.wts,
        ...(topkSoftmax ? { router_bias: need(w.routerBias, "router bias") } : {}),
        ...(shared ? { sgate: shared.gate } : {}),
      },
      grid: (shape) => [Math.min(shape.tokens, 65535), Math.ceil(shape.tokens / 65535), 1],
    },
    {
      label: `${label}.group`,
      kernel: group,
      resources: { p: uniforms[1], ids: s.ids, sorted: s.sorted, tiles: s.tiles, args: s.args },
      grid: (shape) => shape.tokens ? [1, 1, 1] : none,
    },
    ...expertOps("gate_up", gateUp, w.gateUp, w.gateUpBias),
    ...expertOps("down", down, w.down, w.downBias),
  ];
  return {
    dispatches,
    combine: {
      label: `${label}.combine`,
      kernel: combine,
      resources: { p: uniforms[2], y: s.y, out: use.x, ...(shared ? { shared_y: shared.y, sgate: shared.gate } : {}) },
      grid: (shape) => shape.tokens ? rowsGrid(Math.ceil(H / MOE_WG), shape.tokens) : none,
    },
    uniforms,
  };
}
