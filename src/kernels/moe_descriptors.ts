/**
 * Typed descriptors of the mixture-of-experts kernels (`kernels/moe_*.wgsl`): the router,
 * the GPU-side grouping of a step's tokens by expert, the grouped expert matmuls and the
 * weighted sum into the residual. See `src/runner/moe_op.ts` for how a layer chains them.
 * @module
 */
import { kernel, type KernelDescriptor } from "./registry.ts";

/** Assignments per expert tile (rows one expert-matmul workgroup computes). */
export const MOE_TILE_ROWS = 8;
/** Invocations per expert-matmul workgroup (output columns per workgroup). */
export const MOE_WG = 64;

/** gpt-oss's clamp on the gate and up values of its SwiGLU. */
export const GPT_OSS_SWIGLU_LIMIT = 7;
/** gpt-oss's sigmoid slope in its SwiGLU. */
export const GPT_OSS_SWIGLU_ALPHA = 1.702;

/** How the Linear-layout expert kernels read weights and what they compute around the product. */
export type MoeExpertDefines = {
  /** f32 weights (else f16). */
  W_F32: boolean;
  /** gpt-oss: interleaved gate/up rows, biases (binding `w_bias`), clamped SwiGLU. */
  GPTOSS: boolean;
};

/**
 * Router: post-attention RMSNorm, expert logits, top-k and routing weights; with SHARED the
 * shared expert's sigmoid gate per token (`sgate`) from the router's extra row.
 */
export const MOE_ROUTE: KernelDescriptor<
  { E: number; TOPK: number; NORM_TOPK: boolean; TOPK_SOFTMAX: boolean; SHARED: boolean },
  "x" | "gamma" | "router" | "xn" | "ids" | "wts" | "router_bias" | "sgate"
> = kernel("moe_route", ["x", "gamma", "router", "xn", "ids", "wts", "router_bias", "sgate"]);

/** Count, scan and scatter of assignments by expert; tiles and indirect grids. */
export const MOE_GROUP: KernelDescriptor<{ E: number }, "ids" | "sorted" | "tiles" | "args"> = kernel(
  "moe_group",
  ["ids", "sorted", "tiles", "args"],
);

/** Expert gate|up with SwiGLU over one tile (Linear layout: f16/f32 shapes that do not fit column blocks). */
export const MOE_GATE_UP: KernelDescriptor<MoeExpertDefines, "xn" | "w" | "sorted" | "tiles" | "h" | "w_bias"> = kernel(
  "moe_gate_up",
  ["xn", "w", "sorted", "tiles", "h", "w_bias"],
  () => ({ LIMIT: GPT_OSS_SWIGLU_LIMIT, ALPHA: GPT_OSS_SWIGLU_ALPHA }),
);

/** Expert down projection over one tile, scaled by the routing weight (Linear layout). */
export const MOE_DOWN: KernelDescriptor<MoeExpertDefines, "h" | "w" | "sorted" | "tiles" | "wts" | "y" | "w_bias"> = kernel(
  "moe_down",
  ["h", "w", "sorted", "tiles", "wts", "y", "w_bias"],
);

/**
 * How the column-block expert kernels read weights: f16 (the default), f32, llama.cpp's
 * Q8_0 / Q4_0 blocks or the K-quants' load-time Q8X / Q4X blocks in qgemv_c8's quantized
 * column-block tiles, or MXFP4 tiles (`src/model/quant/mxfp4_c8.ts`) (at most one of them).
 */
export type MoeBlockDefines = {
  W_F32: boolean;
  W_Q8_0: boolean;
  W_Q4_0: boolean;
  W_Q8X: boolean;
  W_Q4X: boolean;
  W_MXFP4: boolean;
  GPTOSS: boolean;
};

// The block-quantized variants share one branch of each kernel (W_QUANT: moe_c8_common's
// qdot_row); the gate|up kernels also take gpt-oss's SwiGLU constants.
const quantDefine = (d: MoeBlockDefines) => ({ W_QUANT: d.W_Q8_0 || d.W_Q4_0 || d.W_Q8X || d.W_Q4X || d.W_MXFP4 });
const gateUpDefines = (d: MoeBlockDefines) => ({ ...quantDefine(d), LIMIT: GPT_OSS_SWIGLU_LIMIT, ALPHA: GPT_OSS_SWIGLU_ALPHA });

/** Column-block experts: one invocation per block of 8 columns (4 SwiGLU outputs). */
export const MOE_GATE_UP_C8: KernelDescriptor<MoeBlockDefines, "xn" | "w" | "sorted" | "tiles" | "h" | "w_bias"> = kernel(
  "moe_gate_up_c8",
  ["xn", "w", "sorted", "tiles", "h", "w_bias"],
  gateUpDefines,
);

/** Column-block experts' down projection: one invocation per block of 8 output columns. */
export const MOE_DOWN_C8: KernelDescriptor<MoeBlockDefines, "h" | "w" | "sorted" | "tiles" | "wts" | "y" | "w_bias"> = kernel(
  "moe_down_c8",
  ["h", "w", "sorted", "tiles", "wts", "y", "w_bias"],
  quantDefine,
);

/** GPU-family column-block experts: a workgroup per block of 8 columns, lanes split K (`moe_gate_up_c8.wgsl` with LANES). */
export const MOE_GATE_UP_WG: KernelDescriptor<MoeBlockDefines, "xn" | "w" | "sorted" | "tiles" | "h" | "w_bias"> = kernel(
  "moe_gate_up_c8",
  ["xn", "w", "sorted", "tiles", "h", "w_bias"],
  (d) => ({ ...gateUpDefines(d), LANES: true }),
);

/** GPU-family column-block experts' down projection: a workgroup per block of 8 output columns (`moe_down_c8.wgsl` with LANES). */
export const MOE_DOWN_WG: KernelDescriptor<MoeBlockDefines, "h" | "w" | "sorted" | "tiles" | "wts" | "y" | "w_bias"> = kernel(
  "moe_down_c8",
  ["h", "w", "sorted", "tiles", "wts", "y", "w_bias"],
  (d) => ({ ...quantDefine(d), LANES: true }),
);

/** Sum of a token's K expert outputs (and with SHARED its gated shared expert's) into the residual. */
export const MOE_COMBINE: KernelDescriptor<{ SHARED: boolean }, "y" | "out" | "shared_y" | "sgate"> = kernel(
  "moe_combine",
  ["y", "out", "shared_y", "sgate"],
);

/** Every MoE kernel file. */
export const MOE_KERNEL_FILES: readonly string[] = [
  ...new Set([MOE_ROUTE, MOE_GROUP, MOE_GATE_UP, MOE_DOWN, MOE_GATE_UP_C8, MOE_DOWN_C8, MOE_GATE_UP_WG, MOE_DOWN_WG, MOE_COMBINE].map((k) => k.file)),
];
