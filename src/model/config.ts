/**
 * Normalises a Hugging Face `config.json` (legacy and transformers-5 layouts) into one
 * {@link ModelSpec} that the rest of the runtime reads, and checks a checkpoint's tensors
 * against it before anything is uploaded.
 * @module
 */
import { isNotFound, readTextFile } from "../runtime/runtime.ts";
import { CheckpointError, UnsupportedArchitectureError } from "./errors.ts";
import type { TensorSource } from "./tensor_source.ts";
import { type MoeSpec, moeTensors, parseGptOssMoeSpec, parseQwen35MoeSpec, parseQwen3MoeSpec } from "./moe_config.ts";

/** Decoder families this runtime implements. */
export type Architecture =
  | "llama"
  | "mistral"
  | "qwen2"
  | "qwen3"
  | "qwen3_moe"
  | "gpt_oss"
  | "gemma2"
  | "gemma3"
  | "qwen35"
  | "qwen35_moe";

/**
 * Qwen3.5's Gated DeltaNet (linear attention) layers: which layers they are and their shapes.
 * A linear layer keeps a recurrent state per sequence instead of KV-cache entries.
 */
export interface LinearAttentionSpec {
  /** Per layer: true for a Gated DeltaNet layer, false for (gated) full attention. */
  layers: boolean[];
  numKeyHeads: number;
  numValueHeads: number;
  keyHeadDim: number;
  valueHeadDim: number;
  /** Causal depthwise conv1d kernel length over the q|k|v channels. */
  convKernel: number;
  /**
   * Order of the value heads in every value-indexed tensor: "grouped" by key head as Hugging
   * Face stores them (value head h uses key head h / (nv / nk)), or "tiled" as llama.cpp's
   * GGUF files do (h uses key head h % nk).
   */
  valueHeadOrder: "grouped" | "tiled";
}

/** Rotary embedding parameters (see rope.ts for how each type scales frequencies). */
export interface RopeSpec {
  theta: number;
  type: "default" | "linear" | "llama3" | "yarn";
  /** linear / llama3 scaling factor (1 for default). */
  factor: number;
  /** llama3 only (1 otherwise). */
  lowFreqFactor: number;
  /** llama3 only (1 otherwise). */
  highFreqFactor: number;
  /** llama3 only (maxPositionEmbeddings otherwise). */
  originalMaxPositionEmbeddings: number;
  /** YaRN only: the ramp's rotation bounds, whether they are rounded, and the attention factor. */
  yarn?: { betaFast: number; betaSlow: number; truncate: boolean; attentionFactor: number };
  /** Per-pair divisors of the frequencies (a GGUF file's `rope_freqs.weight`), applied last. */
  freqFactors?: number[];
}

/** Everything the forward pass needs to know about a model, whatever its config layout. */
export interface ModelSpec {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Explicit head_dim, or hidden / heads. */
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  rope: RopeSpec;
  /**
   * RoPE of the sliding-window layers where it differs from {@link rope} (Gemma-3's local
   * base, unscaled); absent: every layer uses `rope`.
   */
  localRope?: RopeSpec;
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections (qwen2 always; llama/qwen3/gemma2 via attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (attention_bias for llama/qwen3/gemma2; never for qwen2/mistral). */
  oProjBias: boolean;
  /** Biases on gate/up/down (llama mlp_bias). */
  mlpBias: boolean;
  /** Per-head RMSNorm on q and k before RoPE (qwen3, gemma3). */
  qkNorm: boolean;
  hiddenAct: "silu" | "gelu_tanh";
  /** RMSNorm weight applied as (normOffset + w): 1 for gemma2/gemma3, else 0. */
  normOffset: number;
  /** Gemma-2/3 norms around both attention and MLP outputs. */
  sandwichNorm: boolean;
  /** Multiplier on embeddings: sqrt(hidden) for gemma2/gemma3, else 1. */
  embeddingScale: number;
  /** Multiplier on q·k. */
  attnScale: number;
  /** cap * tanh(x / cap) on attention logits, or null. */
  attnLogitSoftcap: number | null;
  /** cap * tanh(x / cap) on output logits, or null. */
  finalLogitSoftcap: number | null;
  /** Per layer: sliding window size in tokens, or null for full attention. */
  layerWindows: (number | null)[];
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The dtype the checkpoint was saved in. */
  dtype: "float32" | "float16" | "bfloat16";
  /** Mixture-of-experts feed-forwards (moe_config.ts), or null for a dense model. */
  moe?: MoeSpec | null;
  /** A learned per-head sink logit in every attention softmax (gpt-oss `self_attn.sinks`). */
  attnSinks?: boolean;
  /** Gated DeltaNet layers (Qwen3.5), or null for a pure-attention model. */
  linearAttention: LinearAttentionSpec | null;
  /** q_proj also yields a per-head sigmoid gate on the attention output (Qwen3.5). */
  attnOutputGate: boolean;
  /** Leading dims of each head that RoPE rotates (partial_rotary_factor * head_dim). */
  rotaryDim: number;
  /**
   * Qwen3.5's interleaved M-RoPE sections (`rope_parameters.mrope_section`, transformers'
   * default [11, 11, 10] where absent). Text positions make them plain RoPE, so the forward
   * pass ignores them; `convert` writes them as llama.cpp's `rope.dimension_sections`, which
   * its IMROPE needs to rotate every pair by the text position.
   */
  mropeSection?: number[];
}

/** Whether layer `l` is a Gated DeltaNet layer. */
export function isLinearLayer(spec: ModelSpec, l: number): boolean {
  return spec.linearAttention?.layers[l] ?? false;
}

/** Layers that hold KV-cache entries (every layer but the linear-attention ones), in order. */
export function attentionLayers(spec: ModelSpec): number[] {
  return Array.from({ length: spec.numLayers }, (_, l) => l).filter((l) => !isLinearLayer(spec, l));
}

const ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: "llama",
  MistralForCausalLM: "mistral",
  Qwen2ForCausalLM: "qwen2",
  Qwen3ForCausalLM: "qwen3",
  Qwen3MoeForCausalLM: "qwen3_moe",
  GptOssForCausalLM: "gpt_oss",
  Gemma2ForCausalLM: "gemma2",
  Gemma3ForCausalLM: "gemma3",
  // The hub ships Qwen3.5 as the vision-language class; text serving runs its language model.
  Qwen3_5ForConditionalGeneration: "qwen35",
  Qwen3_5ForCausalLM: "qwen35",
  // Qwen3.5-MoE: the same hybrid layers with sparse feed-forwards and a shared expert.
  Qwen3_5MoeForConditionalGeneration: "qwen35_moe",
  Qwen3_5MoeForCausalLM: "qwen35_moe",
};
/** config.json `model_type` of each architecture (used when `architectures` is absent). */
const MODEL_TYPES: Readonly<Record<string, Architecture>> = {
  llama: "llama",
  mistral: "mistral",
  qwen2: "qwen2",
  qwen3: "qwen3",
  qwen3_moe: "qwen3_moe",
  gpt_oss: "gpt_oss",
  gemma2: "gemma2",
  qwen3_5: "qwen35",
  qwen3_5_text: "qwen35",
  qwen3_5_moe: "qwen35_moe",
  qwen3_5_moe_text: "qwen35_moe",
  gemma3_text: "gemma3",
};

// transformers' config-class defaults for fields a config.json may omit.
const DEFAULTS: Record<
  Architecture,
  { maxPos: number; tie: boolean; slidingWindow: number | null }
> = {
  llama: { maxPos: 2048, tie: false, slidingWindow: null },
  mistral: { maxPos: 4096 * 32, tie: false, slidingWindow: 4096 },
  qwen2: { maxPos: 32768, tie: false, slidingWindow: 4096 },
  qwen3: { maxPos: 32768, tie: false, slidingWindow: 4096 },
  qwen3_moe: { maxPos: 32768, tie: false, slidingWindow: 4096 },
  gpt_oss: { maxPos: 131072, tie: false, slidingWindow: 128 },
  gemma2: { maxPos: 8192, tie: true, slidingWindow: 4096 },
  qwen35: { maxPos: 32768, tie: false, slidingWindow: null },
  qwen35_moe: { maxPos: 32768, tie: false, slidingWindow: null },
  gemma3: { maxPos: 131072, tie: true, slidingWindow: 4096 },
};

/** Gemma-3 without `layer_types`: every `sliding_window_pattern`-th layer is global. */
const GEMMA3_PATTERN = 6;

/** Typed field access that names config.json and the field on every failure. */
class Fields {
  #c: Record<string, unknown>;
  #file: string;

  constructor(config: Record<string, unknown>, file: string) {
    this.#c = config;
    this.#file = file;
  }

  fail(field: string, expected: string, value: unknown): never {
    throw new CheckpointError(
      this.#file,
      `field "${field}" must be ${expected}, got ${JSON.stringify(value) ?? "undefined"}`,
    );
  }

  error(reason: string): never {
    throw new CheckpointError(this.#file, reason);
  }

  /** Whether the field is present and not null. */
  has(field: string): boolean {
    return this.#c[field] !== undefined && this.#c[field] !== null;
  }

  raw(field: string): unknown {
    return this.#c[field];
  }

  /** A required positive integer. */
  int(field: string): number {
    const v = this.#c[field];
    if (v === undefined || v === null) {
      throw new CheckpointError(this.#file, `missing required field "${field}"`);
    }
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      this.fail(field, "a positive integer", v);
    }
    return v;
  }

  /** An optional positive integer (absent or null gives `fallback`). */
  optInt<T>(field: string, fallback: T): number | T {
    return this.has(field) ? this.int(field) : fallback;
  }

  /** An optional finite number. */
  num<T>(field: string, fallback: T): number | T {
    const v = this.#c[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(field, "a finite number", v);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.#c[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") this.fail(field, "true or false", v);
    return v;
  }

  str(field: string): string | undefined {
    const v = this.#c[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") this.fail(field, "a string", v);
    return v;
  }

  /** A token id or list of token ids (eos_token_id may be either). */
  ids(field: string): number[] {
    const v = this.#c[field];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
      this.fail(field, "a token id or a list of token ids", v);
    }
    return list as number[];
  }
}

function architectureOf(f: Fields, file: string): Architecture {
  const archs = f.raw("architectures");
  const supported = [...Object.keys(ARCHITECTURES)];
  if (Array.isArray(archs) && archs.length > 0) {
    const name = archs[0];
    if (typeof name === "string" && Object.hasOwn(ARCHITECTURES, name)) return ARCHITECTURES[name];
    throw new UnsupportedArchitectureError(file, String(name), supported);
  }
  const modelType = f.str("model_type");
  if (modelType && Object.hasOwn(MODEL_TYPES, modelType)) return MODEL_TYPES[modelType];
  throw new UnsupportedArchitectureError(
    file,
    modelType ?? "(no architectures or model_type)",
    supported,
  );
}

function ropeOf(f: Fields, arch: Architecture, maxPos: number): { rope: RopeSpec; localRope?: RopeSpec } {
  // transformers 5 folds rope_theta and rope_scaling into rope_parameters.
  const params = f.raw("rope_parameters");
  const scaling = f.raw("rope_scaling");
  const source = params ?? scaling;
  const field = params != null ? "rope_parameters" : "rope_scaling";
  const object = (name: string, v: unknown) => {
    if (v != null && (typeof v !== "object" || Array.isArray(v))) f.fail(name, "an object or null", v);
    return v as Record<string, unknown> | null;
  };
  const src = object(field, source);
  if (arch !== "gemma3") return { rope: ropeFrom(f, src, field, f.num("rope_theta", 10000), maxPos) };
  // Gemma-3: global layers use rope_theta (1M) with the scaling, local (sliding) layers
  // their own base without it. transformers 5 gives one rope_parameters per layer type.
  if (params != null && src && ("full_attention" in src || "sliding_attention" in src)) {
    const sub = (type: string) => {
      const name = `rope_parameters.${type}`;
      if (src[type] == null) f.error(`missing required field "${name}"`);
      return ropeFrom(f, object(name, src[type]), name, 10000, maxPos);
    };
    return { rope: sub("full_attention"), localRope: sub("sliding_attention") };
  }
  const local = f.num("rope_local_base_freq", 10000);
  if (local <= 0) f.fail("rope_local_base_freq", "a positive number", local);
  return {
    rope: ropeFrom(f, src, field, f.num("rope_theta", 1_000_000), maxPos),
    localRope: ropeFrom(f, null, field, local, maxPos),
  };
}

/** One rope parameter set (`src`, read as `field`), with `thetaFallback` where it has no rope_theta. */
function ropeFrom(
  f: Fields,
  src: Record<string, unknown> | null,
  field: string,
  thetaFallback: number,
  maxPos: number,
): RopeSpec {
  const sub = (name: string) => `${field}.${name}`;
  const num = (name: string, fallback: number): number => {
    const v = src?.[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      f.fail(sub(name), "a positive number", v);
    }
    return v;
  };
  const required = (name: string): number => {
    if (src?.[name] == null) f.error(`missing required field "${sub(name)}"`);
    return num(name, 0);
  };
  if (thetaFallback <= 0) f.fail("rope_theta", "a positive number", thetaFallback);
  const theta = num("rope_theta", thetaFallback);
  const rawType = src?.rope_type ?? src?.type ?? "default";
  if (rawType !== "default" && rawType !== "linear" && rawType !== "llama3" && rawType !== "yarn") {
    f.error(
      `unsupported rope_type ${JSON.stringify(rawType)} (supported: default, linear, llama3, yarn)`,
    );
  }
  const base: RopeSpec = {
    theta,
    type: rawType,
    factor: 1,
    lowFreqFactor: 1,
    highFreqFactor: 1,
    originalMaxPositionEmbeddings: maxPos,
  };
  if (rawType === "linear") return { ...base, factor: required("factor") };
  if (rawType === "yarn") {
    // transformers' _compute_yarn_parameters: defaults, and the attention factor (mscale).
    const factor = required("factor");
    const mscale = yarnAttentionFactor;
    const m = src?.mscale, mAll = src?.mscale_all_dim;
    const attentionFactor = src?.attention_factor != null
      ? num("attention_factor", 1)
      : typeof m === "number" && typeof mAll === "number" && m && mAll
      ? mscale(factor, m) / mscale(factor, mAll)
      : mscale(factor, 1);
    const truncate = src?.truncate ?? true;
    if (typeof truncate !== "boolean") f.fail(sub("truncate"), "true or false", truncate);
    return {
      ...base,
      factor,
      originalMaxPositionEmbeddings: num("original_max_position_embeddings", maxPos),
      yarn: { betaFast: num("beta_fast", 32), betaSlow: num("beta_slow", 1), truncate, attentionFactor },
    };
  }
  if (rawType === "llama3") {
    const rope = {
      ...base,
      factor: required("factor"),
      lowFreqFactor: required("low_freq_factor"),
      highFreqFactor: required("high_freq_factor"),
      originalMaxPositionEmbeddings: required("original_max_position_embeddings"),
    };
    // The llama3 blend divides by (high - low).
    if (rope.highFreqFactor <= rope.lowFreqFactor) {
      f.error(`${sub("high_freq_factor")} must exceed ${sub("low_freq_factor")}`);
    }
    return rope;
  }
  return base;
}

function activationOf(f: Fields, arch: Architecture): ModelSpec["hiddenAct"] {
  // Gemma reads hidden_activation; its plain "gelu" always meant the tanh approximation.
  const gemma = isGemma(arch);
  const field = gemma && f.has("hidden_activation") ? "hidden_activation" : "hidden_act";
  const name = f.str(field) ?? (gemma ? "gelu_pytorch_tanh" : "silu");
  if (name === "silu" || name === "swish") return "silu";
  if (["gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu_fast"].includes(name)) {
    return "gelu_tanh";
  }
  if (name === "gelu" && gemma) return "gelu_tanh";
  return f.error(
    `unsupported ${field} ${JSON.stringify(name)} (supported: silu, gelu_pytorch_tanh)`,
  );
}

function layerWindowsOf(f: Fields, arch: Architecture, numLayers: number): (number | null)[] {
  // Qwen3.5's layer_types name linear / full attention (linearAttentionOf), never a window.
  if (isQwen35(arch)) return Array.from({ length: numLayers }, () => null);
  let window: number | null = f.has("sliding_window")
    ? f.int("sliding_window")
    : f.raw("sliding_window") === null
    ? null
    : DEFAULTS[arch].slidingWindow;
  // Qwen only slides when use_sliding_window is set, whatever sliding_window says.
  if ((arch === "qwen2" || arch === "qwen3" || arch === "qwen3_moe") && !f.bool("use_sliding_window", false)) window = null;
  const layerTypes = f.raw("layer_types");
  if (layerTypes !== undefined && layerTypes !== null) {
    if (
      !Array.isArray(layerTypes) || layerTypes.length !== numLayers ||
      !layerTypes.every((t) => t === "sliding_attention" || t === "full_attention")
    ) {
      f.fail(
        "layer_types",
        `a list of ${numLayers} "sliding_attention" / "full_attention" entries`,
        layerTypes,
      );
    }
    return layerTypes.map((t) => (t === "sliding_attention" ? window : null));
  }
  const layers = Array.from({ length: numLayers }, (_, i) => i);
  switch (arch) {
    case "mistral":
      return layers.map(() => window);
    case "qwen2":
    case "qwen3":
    case "qwen3_moe": {
      // 0 is legal here (slide on every layer), so this is not optInt's positive integer.
      const from = f.num("max_window_layers", 28);
      if (!Number.isSafeInteger(from) || from < 0) {
        f.fail("max_window_layers", "a non-negative integer", from);
      }
      return layers.map((i) => (i >= from ? window : null));
    }
    case "gemma2":
      return layers.map((i) => (i % 2 === 0 ? window : null));
    case "gemma3": {
      const pattern = f.optInt("sliding_window_pattern", f.optInt("_sliding_window_pattern", GEMMA3_PATTERN));
      return layers.map((i) => ((i + 1) % pattern !== 0 ? window : null));
    }
    default:
      return layers.map(() => null);
  }
}

/** Qwen3.5's layer_types and DeltaNet shapes; an unknown layer type names its field. */
function linearAttentionOf(f: Fields, arch: Architecture, numLayers: number): LinearAttentionSpec | null {
  if (!isQwen35(arch)) return null;
  const types = f.raw("layer_types");
  let layers: boolean[];
  if (types === undefined || types === null) {
    // transformers' default: every full_attention_interval-th layer is full attention.
    const interval = f.optInt("full_attention_interval", 4);
    layers = Array.from({ length: numLayers }, (_, i) => (i + 1) % interval !== 0);
  } else {
    if (!Array.isArray(types) || types.length !== numLayers) {
      f.fail("layer_types", `a list of ${numLayers} layer types`, types);
    }
    layers = types.map((t, i) => {
      if (t === "linear_attention") return true;
      if (t === "full_attention") return false;
      return f.fail(`layer_types[${i}]`, `"linear_attention" or "full_attention" (the layer types this engine runs)`, t);
    });
  }
  const numKeyHeads = f.int("linear_num_key_heads");
  const numValueHeads = f.int("linear_num_value_heads");
  if (numValueHeads % numKeyHeads !== 0) {
    f.error(`linear_num_value_heads (${numValueHeads}) is not divisible by linear_num_key_heads (${numKeyHeads})`);
  }
  const keyHeadDim = f.int("linear_key_head_dim");
  const valueHeadDim = f.int("linear_value_head_dim");
  // The delta-rule kernel keeps a state column per invocation and a head per workgroup.
  if (keyHeadDim > 256 || valueHeadDim > 256) {
    f.error(`linear_key_head_dim / linear_value_head_dim above 256 are not supported (got ${keyHeadDim}, ${valueHeadDim})`);
  }
  const convKernel = f.optInt("linear_conv_kernel_dim", 4);
  if (convKernel !== 4) f.fail("linear_conv_kernel_dim", "4 (the conv kernel length this engine runs)", convKernel);
  return { layers, numKeyHeads, numValueHeads, keyHeadDim, valueHeadDim, convKernel, valueHeadOrder: "grouped" };
}

/** Rotated dims per head: partial_rotary_factor (top level or in rope_parameters) * head_dim. */
function rotaryDimOf(f: Fields, headDim: number): number {
  const params = f.raw("rope_parameters");
  const nested = params && typeof params === "object" ? (params as Record<string, unknown>).partial_rotary_factor : undefined;
  const field = nested != null ? "rope_parameters.partial_rotary_factor" : "partial_rotary_factor";
  const factor = nested ?? f.num("partial_rotary_factor", 1);
  if (typeof factor !== "number" || !(factor > 0 && factor <= 1)) f.fail(field, "a number in (0, 1]", factor);
  const dim = Math.floor(headDim * factor);
  if (dim % 2 !== 0 || dim === 0) f.fail(field, `a factor giving an even number of rotary dims of head_dim ${headDim}`, factor);
  return dim;
}

/** Qwen3.5 and Qwen3.5-MoE share the hybrid layers, (1 + w) norms and the gated attention. */
function isQwen35(arch: Architecture): boolean {
  return arch === "qwen35" || arch === "qwen35_moe";
}

/** transformers' Qwen3.5 `mrope_section` where a config has none. */
export const QWEN35_DEFAULT_MROPE_SECTION: readonly number[] = [11, 11, 10];

/** Qwen3.5's `rope_parameters.mrope_section` ({@link QWEN35_DEFAULT_MROPE_SECTION} where absent). */
function mropeSectionOf(f: Fields): number[] {
  const params = f.raw("rope_parameters");
  const v = params && typeof params === "object" ? (params as Record<string, unknown>).mrope_section : undefined;
  if (v === undefined || v === null) return [...QWEN35_DEFAULT_MROPE_SECTION];
  if (!Array.isArray(v) || v.length > 4 || !v.every((x) => Number.isInteger(x) && x >= 0)) {
    f.fail("rope_parameters.mrope_section", "at most 4 non-negative integers", v);
  }
  return v as number[];
}

/** Gemma-2 and Gemma-3 share (1 + w) norms, sandwich norms, scaled embeddings and gelu_tanh. */
function isGemma(arch: Architecture): boolean {
  return arch === "gemma2" || arch === "gemma3";
}

function dtypeOf(f: Fields): ModelSpec["dtype"] {
  const field = f.has("dtype") ? "dtype" : "torch_dtype";
  const v = f.str(field) ?? "float32";
  if (v === "float32" || v === "float16" || v === "bfloat16") return v;
  return f.error(
    `unsupported ${field} ${JSON.stringify(v)} (supported: float32, float16, bfloat16)`,
  );
}

/**
 * Turns a parsed config.json into a {@link ModelSpec}. Pure: `file` only labels errors.
 * Throws {@link UnsupportedArchitectureError} for other architectures and
 * {@link CheckpointError} for missing or mistyped fields.
 */
export function parseModelSpec(config: Record<string, unknown>, file = "config.json"): ModelSpec {
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new CheckpointError(file, "not a JSON object");
  }
  let f = new Fields(config, file);
  const architecture = architectureOf(f, file);
  // Vision-language checkpoints nest the language model's config under text_config.
  const text = config.text_config;
  let merged = config;
  if (text !== undefined && text !== null) {
    if (typeof text !== "object" || Array.isArray(text)) f.fail("text_config", "an object", text);
    merged = { ...config, ...(text as Record<string, unknown>) };
    f = new Fields(merged, file);
  }
  const hiddenSize = f.int("hidden_size");
  // Qwen3.5-MoE has no dense MLP (its config drops intermediate_size): the one dense
  // SwiGLU of a layer is the shared expert.
  const intermediateSize = architecture === "qwen35_moe"
    ? f.optInt("intermediate_size", f.int("shared_expert_intermediate_size"))
    : f.int("intermediate_size");
  const numLayers = f.int("num_hidden_layers");
  const numHeads = f.int("num_attention_heads");
  const numKvHeads = f.optInt("num_key_value_heads", numHeads);
  const vocabSize = f.int("vocab_size");
  if (numHeads % numKvHeads !== 0) {
    f.error(
      `num_attention_heads (${numHeads}) is not divisible by num_key_value_heads (${numKvHeads})`,
    );
  }
  if (!f.has("head_dim") && hiddenSize % numHeads !== 0) {
    f.error(
      `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and no head_dim is given`,
    );
  }
  const headDim = f.optInt("head_dim", hiddenSize / numHeads);
  const maxPositionEmbeddings = f.optInt("max_position_embeddings", DEFAULTS[architecture].maxPos);
  const rmsNormEps = f.num("rms_norm_eps", 1e-6);
  if (rmsNormEps <= 0) f.fail("rms_norm_eps", "a positive number", rmsNormEps);
  const attentionBias = f.bool("attention_bias", false);
  const gemma = isGemma(architecture);
  const qwen35 = isQwen35(architecture);

  const softcap = (field: string, fallback: number | null): number | null => {
    // Absent means transformers' default; an explicit null turns the cap off.
    if (f.raw(field) === null) return null;
    const v = f.num(field, fallback);
    if (v !== null && v <= 0) f.fail(field, "a positive number or null", v);
    return v;
  };
  // Gemma-3 has no soft-capping unless its config asks for it.
  const caps = architecture === "gemma2" ? { attn: 50, final: 30 } : { attn: null, final: null };
  const queryPreAttnScalar = gemma ? f.num("query_pre_attn_scalar", 256) : headDim;
  const { rope, localRope } = ropeOf(f, architecture, maxPositionEmbeddings);
  if (queryPreAttnScalar <= 0) {
    f.fail("query_pre_attn_scalar", "a positive number", queryPreAttnScalar);
  }
  const eosTokenIds = f.ids("eos_token_id");
  const bos = f.ids("bos_token_id");

  return {
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    rmsNormEps,
    rope,
    ...(localRope ? { localRope } : {}),
    tieWordEmbeddings: f.bool("tie_word_embeddings", DEFAULTS[architecture].tie),
    qkvBias: architecture === "qwen2" || (architecture !== "mistral" && attentionBias),
    oProjBias: architecture !== "qwen2" && architecture !== "mistral" && attentionBias,
    mlpBias: architecture === "llama" && f.bool("mlp_bias", false),
    qkNorm: architecture === "qwen3" || architecture === "qwen3_moe" || architecture === "gemma3" || qwen35,
    hiddenAct: activationOf(f, architecture),
    // Qwen3.5 stores its decoder norms around 0 and applies (1 + w), as Gemma.
    normOffset: gemma || qwen35 ? 1 : 0,
    sandwichNorm: gemma,
    embeddingScale: gemma ? Math.sqrt(hiddenSize) : 1,
    // YaRN scales cos and sin, so both q and k: the scores by the factor squared.
    attnScale: queryPreAttnScalar ** -0.5 * (rope.yarn?.attentionFactor ?? 1) ** 2,
    attnLogitSoftcap: gemma ? softcap("attn_logit_softcapping", caps.attn) : null,
    finalLogitSoftcap: gemma ? softcap("final_logit_softcapping", caps.final) : null,
    layerWindows: layerWindowsOf(f, architecture, numLayers),
    bosTokenId: bos.length ? bos[0] : null,
    eosTokenIds,
    dtype: dtypeOf(f),
    linearAttention: linearAttentionOf(f, architecture, numLayers),
    attnOutputGate: qwen35,
    rotaryDim: rotaryDimOf(f, headDim),
    ...(qwen35 ? { mropeSection: mropeSectionOf(f) } : {}),
    // Set only for the families that have them (a dense spec, e.g. from GGUF, omits both).
    ...(architecture === "qwen3_moe" ? { moe: parseQwen3MoeSpec(config, numLayers, file) } : {}),
    // Its fields sit in text_config (the multimodal hub layout).
    ...(architecture === "qwen35_moe" ? { moe: parseQwen35MoeSpec(merged, numLayers, file) } : {}),
    ...(architecture === "gpt_oss" ? { moe: parseGptOssMoeSpec(config, numLayers, file), attnSinks: true } : {}),
  };
}

/**
 * transformers' YaRN attention factor when the config sets no mscale or attention_factor:
 * 0.1 ln(factor) + 1 (1 at factor <= 1). It scales cos and sin.
 */
export function yarnAttentionFactor(factor: number, mscale = 1): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (err) {
    if (isNotFound(err)) throw new CheckpointError(path, "file not found");
    throw new CheckpointError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CheckpointError(path, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Reads `dir/config.json` into a {@link ModelSpec}. EOS ids listed in an optional
 * `generation_config.json` are added after config.json's, since generation stops on those
 * (e.g. Llama-3 instruct lists its end-of-turn token only there).
 */
export async function loadModelSpec(dir: string): Promise<ModelSpec> {
  const base = dir.replace(/\/+$/, "");
  const file = `${base}/config.json`;
  const spec = parseModelSpec((await readJson(file)) as Record<string, unknown>, file);
  const genFile = `${base}/generation_config.json`;
  let gen: unknown = null;
  try {
    gen = JSON.parse(await readTextFile(genFile));
  } catch (err) {
    if (!(isNotFound(err))) {
      throw new CheckpointError(genFile, `cannot read: ${(err as Error).message}`, { cause: err });
    }
  }
  if (gen !== null) {
    if (typeof gen !== "object" || Array.isArray(gen)) {
      throw new CheckpointError(genFile, "not a JSON object");
    }
    for (const id of new Fields(gen as Record<string, unknown>, genFile).ids("eos_token_id")) {
      if (!spec.eosTokenIds.includes(id)) spec.eosTokenIds.push(id);
    }
  }
  return spec;
}

/** Names and shapes of every tensor the spec needs, in HF naming, in upload order. */
export function expectedTensors(spec: ModelSpec): { name: string; shape: number[] }[] {
  const { hiddenSize: H, intermediateSize: I, vocabSize: V, headDim: hd } = spec;
  const q = spec.numHeads * hd;
  const kv = spec.numKvHeads * hd;
  const out: { name: string; shape: number[] }[] = [];
  const add = (name: string, shape: number[]) => out.push({ name, shape });
  add("model.embed_tokens.weight", [V, H]);
  const lin = spec.linearAttention;
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [H]);
    if (lin?.layers[i]) {
      const a = `${p}.linear_attn`;
      const kd = lin.numKeyHeads * lin.keyHeadDim;
      const vd = lin.numValueHeads * lin.valueHeadDim;
      add(`${a}.in_proj_qkv.weight`, [2 * kd + vd, H]);
      add(`${a}.in_proj_z.weight`, [vd, H]);
      add(`${a}.in_proj_b.weight`, [lin.numValueHeads, H]);
      add(`${a}.in_proj_a.weight`, [lin.numValueHeads, H]);
      add(`${a}.conv1d.weight`, [2 * kd + vd, 1, lin.convKernel]);
      add(`${a}.A_log`, [lin.numValueHeads]);
      add(`${a}.dt_bias`, [lin.numValueHeads]);
      add(`${a}.norm.weight`, [lin.valueHeadDim]);
      add(`${a}.out_proj.weight`, [H, vd]);
    }
    const projections: [string, number, number][] = lin?.layers[i]
      ? []
      : [["q", spec.attnOutputGate ? 2 * q : q, H], ["k", kv, H], ["v", kv, H]];
    for (const [name, rows, cols] of projections) {
      add(`${p}.self_attn.${name}_proj.weight`, [rows, cols]);
      if (spec.qkvBias) add(`${p}.self_attn.${name}_proj.bias`, [rows]);
    }
    if (spec.attnSinks) add(`${p}.self_attn.sinks`, [spec.numHeads]);
    if (spec.qkNorm && !lin?.layers[i]) {
      add(`${p}.self_attn.q_norm.weight`, [hd]);
      add(`${p}.self_attn.k_norm.weight`, [hd]);
    }
    if (!lin?.layers[i]) add(`${p}.self_attn.o_proj.weight`, [H, q]);
    if (spec.oProjBias && !lin?.layers[i]) add(`${p}.self_attn.o_proj.bias`, [H]);
    // Llama: the pre-MLP norm. Gemma-2/3: the norm on the attention output.
    add(`${p}.post_attention_layernorm.weight`, [H]);
    if (spec.sandwichNorm) {
      add(`${p}.pre_feedforward_layernorm.weight`, [H]);
      add(`${p}.post_feedforward_layernorm.weight`, [H]);
    }
    if (spec.moe?.sparseLayers[i]) {
      for (const t of moeTensors(spec.moe, p, H)) add(t.name, t.shape);
      continue;
    }
    add(`${p}.mlp.gate_proj.weight`, [I, H]);
    if (spec.mlpBias) add(`${p}.mlp.gate_proj.bias`, [I]);
    add(`${p}.mlp.up_proj.weight`, [I, H]);
    if (spec.mlpBias) add(`${p}.mlp.up_proj.bias`, [I]);
    add(`${p}.mlp.down_proj.weight`, [H, I]);
    if (spec.mlpBias) add(`${p}.mlp.down_proj.bias`, [H]);
  }
  add("model.norm.weight", [H]);
  if (!spec.tieWordEmbeddings) add("lm_head.weight", [V, H]);
  return out;
}

/**
 * Checks that every tensor of {@link expectedTensors} exists with its shape. Throws a
 * {@link CheckpointError} naming the checkpoint (missing tensor) or the file holding the
 * tensor (wrong shape). A tied checkpoint that also ships lm_head.weight is accepted.
 */
export function checkTensorShapes(spec: ModelSpec, index: TensorSource): void {
  for (const { name, shape } of expectedTensors(spec)) {
    const info = index.get(name);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(
        info.file,
        `tensor ${name} has shape [${info.shape.join(", ")}], expected [${shape.join(", ")}]`,
      );
    }
  }
}
