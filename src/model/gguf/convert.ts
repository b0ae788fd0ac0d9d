/**
 * Hugging Face checkpoint -> GGUF file that llama.cpp and our loader both run: llama.cpp's
 * tensor names and metadata for llama, mistral (as llama), qwen2, qwen3, gemma2, gemma3, qwen35,
 * and the mixture-of-experts qwen3moe and gpt-oss (experts stacked as llama.cpp does, in their
 * stored float type, gpt-oss's MXFP4 experts as GGML MXFP4 blocks: moe_layout.ts), the
 * vocabulary from tokenizer.json, and optionally the decoder's linear weights and float
 * experts as Q8_0 or Q4_0 blocks made by exactly the load-time quantizer
 * ({@link quantizeSource}; the experts' rows as moe_weights.ts quantizes them), so a
 * converted file loads to the same weights as `--quantization` on the checkpoint.
 * Embeddings and the LM head keep 16 bits (f32 stays f32; bf16 becomes f32, which holds it
 * exactly where f16 might not), norms and biases are f32. One tensor is in memory at a time.
 * @module
 */
import { readTextFile } from "../../runtime/runtime.ts";
import { loadModelSpec, type ModelSpec, QWEN35_DEFAULT_MROPE_SECTION, yarnAttentionFactor } from "../config.ts";
import { CheckpointError } from "../errors.ts";
import { openCheckpointTensors, valueDType } from "../safetensors.ts";
import { collectChunks } from "../tensor_source.ts";
import { ropeInverseFrequencies } from "../rope.ts";
import { Tokenizer } from "../tokenizer.ts";
import { dequantize } from "../quant/dequantize.ts";
import { type LoadQuantization, loadQuantType, type QuantType } from "../quant/ggml_types.ts";
import { quantizeRows, quantizeSource } from "../quant/quantized_source.ts";
import { isQuantTarget } from "../quant/targets.ts";
import { QK_K } from "../quant/k_quants.ts";
import { quantizeQ4K, quantizeQ6K } from "../quant/k_quantize.ts";
import { GEMMA3_SWA_PATTERN } from "./spec.ts";
import { GGUF_ARCH, ggufName, permutedHeads, permuteQkRows } from "./names.ts";
import { type BlockOverride, type GgufTensor, type GgufValue, writeGguf } from "./writer.ts";
import { ggufVocab } from "./vocab.ts";
import { Qwen35GgufSource } from "./qwen35_layout.ts";
import { moeGgufTensors } from "./moe_layout.ts";

/** What {@link convertToGguf} wrote. */
export interface GgufConversion {
  path: string;
  bytes: number;
  tensors: number;
  /** llama.cpp's name of the file type: F32, F16, Q8_0, Q4_0 or Q4_K_M. */
  fileType: "F32" | "F16" | "Q8_0" | "Q4_0" | "Q4_K_M";
}

/**
 * What `convert` may quantize to: load-time quantization's types, or "q4_k_m", a
 * Q4_K_M-like file (see {@link q4kmBlocks}).
 */
export type ConvertQuantization = LoadQuantization | "q4_k_m";

/** The values of {@link ConvertQuantization}, for flag parsing. */
export const CONVERT_QUANTIZATIONS: readonly ConvertQuantization[] = ["q8_0", "q4_0", "q4_k_m", "none"];

/** Options of {@link convertToGguf}. */
export interface ConvertOptions {
  /** Quantize the decoder's linear weights and experts (default "none"). */
  quantization?: ConvertQuantization;
  /** Store some unquantized matrices as blocks of another type (see {@link BlockOverride}). */
  blocks?: BlockOverride;
}

// llama_ftype values for general.file_type.
const FILE_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, Q4_K_M: 15 } as const;

const EXPERT = /\.mlp\.experts\.(\d+\.\w+_proj\.weight|gate_up_proj|down_proj)$/;

/**
 * The "q4_k_m" block types: like llama-quantize's Q4_K_M, Q4_K for the decoder's linear
 * weights and experts and Q6_K for attention v and every down projection (llama.cpp gives
 * Q6_K to about half of them, and to the LM head, which stays 16-bit here), written by the
 * simple quantizers of k_quantize.ts (not llama-quantize's search). K-quant rows need K a
 * multiple of 256; other matrices fall back to Q8_0 (K a multiple of 32, as llama.cpp falls
 * back for such rows) or stay as stored.
 */
export function q4kmBlocks(): BlockOverride {
  const type = (name: string, k: number): QuantType | null => {
    if (!isQuantTarget(name, [0, k]) && !EXPERT.test(name)) return null;
    if (k % QK_K === 0) return /(v_proj|down_proj)/.test(name) ? "Q6_K" : "Q4_K";
    return k % 32 === 0 ? "Q8_0" : null;
  };
  return {
    type,
    encode: (name, values, k) => {
      const t = type(name, k);
      return t === "Q4_K" ? quantizeQ4K(values) : t === "Q6_K" ? quantizeQ6K(values) : quantizeRows("Q8_0", values);
    },
  };
}

/** Writes `outPath` from the checkpoint directory `dir`. */
export async function convertToGguf(dir: string, outPath: string, options: ConvertOptions = {}): Promise<GgufConversion> {
  const spec = await loadModelSpec(dir);
  checkRepresentable(spec, `${dir.replace(/\/+$/, "")}/config.json`);
  const base = dir.replace(/\/+$/, "");
  const tokenizerJson = JSON.parse(await readTextFile(`${base}/tokenizer.json`));
  const tokenizer = await Tokenizer.load(dir);
  const quantization = options.quantization ?? "none";
  const kQuant = quantization === "q4_k_m";
  const blocks = options.blocks ?? (kQuant ? q4kmBlocks() : undefined);
  const loadTime: LoadQuantization = kQuant ? "none" : quantization;
  const checkpoint = await openCheckpointTensors(dir);
  if (spec.linearAttention) checkQwen35Layers(spec, dir);
  // Qwen3.5: llama.cpp's stored values (1 + w norms, -exp(A_log), tiled value heads) before quantizing.
  const source = quantizeSource(spec.linearAttention ? new Qwen35GgufSource(checkpoint, spec) : checkpoint, loadTime);
  try {
    const tensors: GgufTensor[] = [];
    let anyF16 = false;
    for (const name of source.names()) {
      const gg = ggufName(name, spec.architecture);
      if (gg === null || (name === "lm_head.weight" && spec.tieWordEmbeddings)) continue;
      const info = source.get(name);
      const heads = permutedHeads(name, spec.architecture, spec.numHeads, spec.numKvHeads);
      const isMatrix = info.shape.length === 2;
      // llama.cpp squeezes the depthwise conv weight [channels, 1, kernel] to [channels, kernel].
      const dims = info.shape.length === 3 && info.shape[1] === 1 ? [info.shape[2], info.shape[0]] : [...info.shape].reverse();
      if (info.blocks) {
        const blocks = info.blocks;
        tensors.push({
          name: gg,
          dims: [...info.shape].reverse(),
          type: blocks.type,
          bytes: async () => permute(await collectChunks(blocks.byteLength, source.readBlocks!(info)), heads, blocks.rowBytes),
        });
        continue;
      }
      const override = isMatrix ? blocks?.type(name, info.shape[1]) ?? null : null;
      if (override) {
        const rows = info.shape[0];
        tensors.push({
          name: gg,
          dims: [...info.shape].reverse(),
          type: override,
          bytes: async () => {
            const b = blocks!.encode(name, dequantize(valueDType(info), await source.read(info)), info.shape[1]);
            return permute(b, heads, b.length / rows);
          },
        });
        continue;
      }
      const f16 = isMatrix && info.dtype === "F16";
      anyF16 ||= f16;
      // Gemma's norms are stored as 1 + w, as llama.cpp's converter does.
      // (Qwen3.5 also has 1 + w norms; its layout transform above stores them so already.)
      const addOne = spec.normOffset === 1 && !spec.linearAttention && /norm\.weight$/.test(name);
      tensors.push({
        name: gg,
        dims,
        type: f16 ? "F16" : "F32",
        bytes: async () => {
          const raw = await source.read(info);
          let bytes: Uint8Array = raw;
          if (!f16) {
            const values = dequantize(valueDType(info), raw);
            if (addOne) for (let i = 0; i < values.length; i++) values[i] = Math.fround(values[i] + 1);
            bytes = new Uint8Array(values.buffer);
          }
          const rowBytes = isMatrix ? info.shape[1] * (f16 ? 2 : 4) : f16 ? 2 : 4;
          return permute(bytes, heads, rowBytes);
        },
      });
    }
    // The experts, quantized as moe_weights.ts quantizes them at load time (or as `blocks` says).
    tensors.push(...moeGgufTensors(checkpoint, spec, loadQuantType(loadTime), blocks));
    const freqs = ropeFactors(spec);
    if (freqs) tensors.push({ name: "rope_freqs.weight", dims: [freqs.length], type: "F32", bytes: () => new Uint8Array(freqs.buffer) });
    const fileType = quantization === "q8_0" ? "Q8_0" : quantization === "q4_0" ? "Q4_0" : kQuant ? "Q4_K_M" : anyF16 ? "F16" : "F32";
    const name = base.split("/").at(-1) ?? "model";
    const bytes = await writeGguf(outPath, {
      metadata: metadata(spec, name, FILE_TYPE[fileType], tokenizerJson, tokenizer, await chatTemplate(base, tokenizer)),
      tensors,
      alignment: 32,
    });
    return { path: outPath, bytes, tensors: tensors.length, fileType };
  } finally {
    source.close();
  }
}

/** llama.cpp's `qwen35` marks layers recurrent by full_attention_interval only. */
function checkQwen35Layers(spec: ModelSpec, dir: string): void {
  const lin = spec.linearAttention!;
  const interval = lin.layers.indexOf(false) + 1;
  if (interval === 0 || lin.layers.some((on, i) => on !== ((i + 1) % interval !== 0))) {
    throw new CheckpointError(dir, "layer_types: GGUF qwen35 needs a full-attention layer every full_attention_interval layers");
  }
}

/**
 * llama.cpp derives some of Gemma-3's hyperparameters instead of reading them (the 5:1
 * sliding pattern, an unscaled local RoPE, the attention scale): a checkpoint that differs
 * would convert to a file that runs a different model, so it is refused.
 */
function checkRepresentable(spec: ModelSpec, file: string): void {
  if (spec.moe) return checkMoeRepresentable(spec, file);
  if (spec.architecture !== "gemma3") return;
  const window = spec.layerWindows.find((w) => w !== null) ?? null;
  const fail = (what: string) => {
    throw new CheckpointError(file, `cannot convert to GGUF: llama.cpp's gemma3 ${what}`);
  };
  const pattern = spec.layerWindows.map((_, i) => (i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1 ? window : null));
  if (window !== null && spec.layerWindows.some((w, i) => w !== pattern[i])) {
    fail(`slides on every layer but each ${GEMMA3_SWA_PATTERN}th (layer_types differ)`);
  }
  if (spec.localRope && (spec.localRope.type !== "default" || spec.localRope.freqFactors)) {
    fail("rotates sliding layers without scaling (the sliding_attention rope parameters scale)");
  }
  const big = spec.numLayers === 62;
  const scale = big ? (spec.hiddenSize / spec.numHeads) ** -0.5 : spec.headDim ** -0.5;
  if (Math.abs(spec.attnScale - scale) > 1e-7 * scale) fail(`scales attention by ${scale} (query_pre_attn_scalar differs)`);
  if (spec.attnLogitSoftcap !== null) fail("has no attention soft-capping");
}

/**
 * llama.cpp's qwen3moe and gpt-oss fix what their files do not say: every qwen3moe layer is
 * sparse, renormalizes its top-k weights and attends to everything; gpt-oss slides on even
 * layers and runs YaRN with transformers' default attention factor. Other checkpoints are refused.
 */
function checkMoeRepresentable(spec: ModelSpec, file: string): void {
  const moe = spec.moe!;
  const fail = (what: string) => {
    throw new CheckpointError(file, `cannot convert to GGUF: llama.cpp's ${GGUF_ARCH[spec.architecture]} ${what}`);
  };
  if (moe.sparseLayers.some((s) => !s)) fail("has experts in every layer (mlp_only_layers / decoder_sparse_step differ)");
  // Qwen3.5-MoE's config cannot say otherwise (every layer sparse, top-k renormalized).
  if (spec.architecture === "qwen3_moe" || spec.architecture === "qwen35_moe") {
    if (!moe.normTopkProb) fail("renormalizes the top-k routing weights (norm_topk_prob is false)");
    if (spec.layerWindows.some((w) => w !== null)) fail("has no sliding-window attention");
    return;
  }
  const window = spec.layerWindows[0];
  if (window === null || spec.layerWindows.some((w, i) => w !== (i % 2 === 0 ? window : null))) {
    fail("slides on even layers only, all with one window (layer_types differ)");
  }
  const yarn = spec.rope.yarn;
  if (spec.rope.type !== "yarn" || !yarn) return fail("runs YaRN rope scaling (rope_type differs)");
  if (yarn.truncate || Math.abs(yarn.attentionFactor - yarnAttentionFactor(spec.rope.factor)) > 1e-7) {
    fail("runs YaRN untruncated with the default attention factor (truncate / attention_factor / mscale differ)");
  }
}

function permute(bytes: Uint8Array, heads: number, rowBytes: number): Uint8Array {
  return heads ? permuteQkRows(bytes, heads, rowBytes) : bytes;
}

/** Llama-3.1 rope scaling as llama.cpp stores it: per-pair frequency divisors. */
function ropeFactors(spec: ModelSpec): Float32Array | null {
  if (spec.rope.type !== "llama3") return null;
  const plain = ropeInverseFrequencies({ ...spec.rope, type: "default" }, spec.headDim);
  const scaled = ropeInverseFrequencies(spec.rope, spec.headDim);
  return plain.map((p, i) => p / scaled[i]);
}

async function chatTemplate(base: string, tokenizer: Tokenizer): Promise<string | null> {
  if (tokenizer.chatTemplate) return tokenizer.chatTemplate;
  try {
    return await readTextFile(`${base}/chat_template.jinja`);
  } catch {
    return null;
  }
}

function metadata(
  spec: ModelSpec,
  name: string,
  fileType: number,
  tokenizerJson: unknown,
  tokenizer: Tokenizer,
  template: string | null,
): [string, GgufValue][] {
  const arch = GGUF_ARCH[spec.architecture];
  const u32 = (value: number): GgufValue => ({ type: "u32", value });
  const f32 = (value: number): GgufValue => ({ type: "f32", value });
  const k = (key: string) => `${arch}.${key}`;
  const vocab = ggufVocab(tokenizerJson, spec.vocabSize);
  const out: [string, GgufValue][] = [
    ["general.architecture", { type: "string", value: arch }],
    ["general.name", { type: "string", value: name }],
    ["general.file_type", u32(fileType)],
    [k("context_length"), u32(spec.maxPositionEmbeddings)],
    [k("embedding_length"), u32(spec.hiddenSize)],
    [k("block_count"), u32(spec.numLayers)],
    [k("feed_forward_length"), u32(spec.intermediateSize)],
    [k("attention.head_count"), u32(spec.numHeads)],
    [k("attention.head_count_kv"), u32(spec.numKvHeads)],
    [k("attention.key_length"), u32(spec.headDim)],
    [k("attention.value_length"), u32(spec.headDim)],
    [k("attention.layer_norm_rms_epsilon"), f32(spec.rmsNormEps)],
    [k("rope.freq_base"), f32(spec.rope.theta)],
    [k("rope.dimension_count"), u32(spec.headDim)],
  ];
  const lin = spec.linearAttention;
  if (lin) {
    out.splice(out.findIndex(([key]) => key === k("rope.dimension_count")), 1, [k("rope.dimension_count"), u32(spec.rotaryDim)]);
    // The checkpoint's mrope sections padded to 4, as llama.cpp's converter writes them: its
    // IMROPE gives text tokens position 0 in a 4th section, so sections that do not cover
    // every rotary pair (e.g. [rotaryDim / 2, 0, 0, 0]) would leave pairs unrotated there.
    const sections = [...(spec.mropeSection ?? QWEN35_DEFAULT_MROPE_SECTION)];
    while (sections.length < 4) sections.push(0);
    out.push(
      [k("rope.dimension_sections"), { type: "array", itemType: "i32", value: sections }],
      [k("ssm.conv_kernel"), u32(lin.convKernel)],
      [k("ssm.state_size"), u32(lin.keyHeadDim)],
      [k("ssm.group_count"), u32(lin.numKeyHeads)],
      [k("ssm.time_step_rank"), u32(lin.numValueHeads)],
      [k("ssm.inner_size"), u32(lin.numValueHeads * lin.valueHeadDim)],
      [k("full_attention_interval"), u32(lin.layers.indexOf(false) + 1)],
    );
  }
  if (spec.localRope) out.push([k("rope.freq_base_swa"), f32(spec.localRope.theta)]);
  const moe = spec.moe;
  if (moe) {
    out.push(
      [k("expert_count"), u32(moe.numExperts)],
      [k("expert_used_count"), u32(moe.topK)],
      [k("expert_feed_forward_length"), u32(moe.expertIntermediateSize)],
    );
    if (moe.sharedExpertIntermediateSize) out.push([k("expert_shared_feed_forward_length"), u32(moe.sharedExpertIntermediateSize)]);
  }
  if (spec.rope.type === "yarn" && spec.rope.yarn) {
    out.push(
      [k("rope.scaling.type"), { type: "string", value: "yarn" }],
      [k("rope.scaling.factor"), f32(spec.rope.factor)],
      [k("rope.scaling.original_context_length"), u32(spec.rope.originalMaxPositionEmbeddings)],
      [k("rope.scaling.yarn_beta_fast"), f32(spec.rope.yarn.betaFast)],
      [k("rope.scaling.yarn_beta_slow"), f32(spec.rope.yarn.betaSlow)],
    );
  }
  if (spec.rope.type === "linear") {
    out.push([k("rope.scaling.type"), { type: "string", value: "linear" }], [k("rope.scaling.factor"), f32(spec.rope.factor)]);
  }
  const window = spec.layerWindows.find((w) => w !== null);
  if (window != null) out.push([k("attention.sliding_window"), u32(window)]);
  if (spec.attnLogitSoftcap !== null) out.push([k("attn_logit_softcapping"), f32(spec.attnLogitSoftcap)]);
  if (spec.finalLogitSoftcap !== null) out.push([k("final_logit_softcapping"), f32(spec.finalLogitSoftcap)]);
  out.push(
    ["tokenizer.ggml.model", { type: "string", value: vocab.model }],
    ["tokenizer.ggml.tokens", { type: "array", itemType: "string", value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: "array", itemType: "f32", value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: "array", itemType: "i32", value: vocab.types }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: tokenizer.addBosToken }],
    ["tokenizer.ggml.add_eos_token", { type: "bool", value: false }],
  );
  if (vocab.model === "gpt2") out.push(["tokenizer.ggml.merges", { type: "array", itemType: "string", value: vocab.merges }]);
  if (vocab.unk !== null) out.push(["tokenizer.ggml.unknown_token_id", u32(vocab.unk)]);
  const bos = spec.bosTokenId ?? tokenizer.bosTokenId;
  if (bos !== null) out.push(["tokenizer.ggml.bos_token_id", u32(bos)]);
  const eos = spec.eosTokenIds[0] ?? tokenizer.eosTokenIds[0];
  if (eos !== undefined) out.push(["tokenizer.ggml.eos_token_id", u32(eos)]);
  if (template) out.push(["tokenizer.chat_template", { type: "string", value: template }]);
  return out;
}
