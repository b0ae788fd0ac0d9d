/**
 * A Qwen3.5 checkpoint's multi-token-prediction head seen as a one-layer model, so the weight
 * uploader and the forward pass treat it like any decoder: `mtp.layers.0.*` as
 * `model.layers.0.*` (one full-attention layer, MLP or experts as the target's), `mtp.norm` as
 * the final norm, and `mtp.fc` / `mtp.pre_fc_norm_{embedding,hidden}` kept under their names
 * for the head's input (`UploadOptions.mtpInput`). The embedding and LM head are the target's
 * (`UploadOptions.shared`).
 * @module
 */
import { type ModelSpec } from "./config.ts";
import { MTP_PREFIX, openCheckpointTensors, splitFusedExperts, TensorIndex, type TensorInfo } from "./safetensors.ts";
import { isGgufPath } from "./gguf/reader.ts";
import { quantizeSource } from "./quant/quantized_source.ts";
import { GGML_TYPES } from "./quant/ggml_types.ts";
import { MtpHeadMissingError, type Quantization } from "../types/api.ts";

/** Tensors of the head's input, read under their own names. */
const INPUT_TENSORS = ["mtp.fc.weight", "mtp.pre_fc_norm_embedding.weight", "mtp.pre_fc_norm_hidden.weight"];

/** The head's decoder layer as a model of one full-attention layer with the target's shapes. */
export function mtpSpec(target: ModelSpec): ModelSpec {
  return {
    ...target,
    numLayers: 1,
    layerWindows: [null],
    linearAttention: null,
    // Qwen3.5-MoE's head layer has the experts (and shared expert) like every target layer.
    moe: target.moe ? { ...target.moe, sparseLayers: [true] } : target.moe,
  };
}

/**
 * Opens the MTP head of the checkpoint at `dir` as a one-layer model's tensors. Throws
 * {@link MtpHeadMissingError} for a GGUF file, a checkpoint without `mtp.*` tensors, or a
 * head of more than one layer.
 */
export async function openMtpTensors(dir: string): Promise<TensorIndex> {
  if (isGgufPath(dir)) throw new MtpHeadMissingError(`"mtp" reads the head from a safetensors checkpoint; ${JSON.stringify(dir)} is GGUF`);
  const index = await openCheckpointTensors(dir, { keepMtp: true });
  const names = index.names().filter((n) => n.startsWith(MTP_PREFIX));
  const map = new Map<string, TensorInfo>();
  try {
    const missing = [...INPUT_TENSORS, "mtp.norm.weight"].filter((n) => !names.includes(n));
    if (missing.length || !names.some((n) => n.startsWith("mtp.layers.0."))) {
      throw new MtpHeadMissingError(
        `"mtp" needs a checkpoint with a multi-token-prediction head; ${JSON.stringify(dir)} has ${names.length ? `no ${missing.join(", ") || "mtp.layers.0.*"}` : "no mtp.* tensors"}`,
      );
    }
    if (names.some((n) => /^mtp\.layers\.[1-9]/.test(n))) {
      throw new MtpHeadMissingError(`${JSON.stringify(dir)}: an MTP head of more than one layer is not supported`);
    }
    for (const name of names) {
      const plain = name.startsWith("mtp.layers.") ? `model.layers.${name.slice("mtp.layers.".length)}` : name === "mtp.norm.weight" ? "model.norm.weight" : name;
      map.set(plain, { ...index.get(name), name: plain });
    }
  } finally {
    index.close();
  }
  return new TensorIndex(index.dir, index.source, splitFusedExperts(map));
}

/**
 * About the bytes the head's weights at `dir` take once uploaded, from its tensor list alone
 * (no weight is read): the decoder linears load-time quantization turns into blocks at their
 * block size (`quantizeSource`), a sparse layer's routed experts at Q8_0 / Q4_0 block size
 * too when quantizing (their own uploader repacks them), other matrices (`fc`, experts
 * unquantized) at the upload's element size (f32 for an f32 checkpoint, else f16, or
 * `weightDType`), vectors (norms, biases, the router's gate if 1-D) as f32. Layout padding is
 * left out. The target is loaded, and its KV cache sized, before the head: this is what the
 * `gpuMemoryBytes` budget leaves for it.
 */
export async function mtpHeadBytes(
  dir: string,
  target: Pick<ModelSpec, "dtype">,
  options: { weightDType?: "auto" | "f32" | "f16"; quantization?: Quantization } = {},
): Promise<number> {
  const index = quantizeSource(await openMtpTensors(dir), options.quantization ?? "none");
  try {
    const dense = options.weightDType && options.weightDType !== "auto" ? (options.weightDType === "f32" ? 4 : 2) : target.dtype === "float32" ? 4 : 2;
    const q = options.quantization === "q8_0" ? GGML_TYPES.Q8_0 : options.quantization === "q4_0" ? GGML_TYPES.Q4_0 : null;
    let bytes = 0;
    for (const name of index.names()) {
      const info = index.get(name);
      const n = info.shape.reduce((a, b) => a * b, 1);
      if (info.blocks) bytes += info.blocks.byteLength;
      else if (q && /\.mlp\.experts\./.test(name) && info.shape.length >= 2) bytes += (n / q.blockElems) * q.blockBytes;
      else bytes += n * (info.shape.length >= 2 ? dense : 4);
    }
    return Math.ceil(bytes);
  } finally {
    index.close();
  }
}
