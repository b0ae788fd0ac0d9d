/**
 * The one entry point from a `--model` path to what the weight uploader reads: a checkpoint
 * directory (safetensors + config.json) or a `.gguf` file, optionally quantized at load time.
 * @module
 */
import { checkTensorShapes, loadModelSpec, type ModelSpec } from "./config.ts";
import { openCheckpointTensors } from "./safetensors.ts";
import type { TensorSource } from "./tensor_source.ts";
import { isGgufPath } from "./gguf/reader.ts";
import { checkModelPath } from "./model_path.ts";
import { openGgufModel } from "./gguf/open.ts";
import type { LoadQuantization } from "./quant/ggml_types.ts";
import { quantizeSource } from "./quant/quantized_source.ts";

/** Options of {@link openModel}. */
export interface OpenModelOptions {
  /** Quantize the decoder's linear weights while loading (default "none"). */
  quantization?: LoadQuantization;
}

/** A model's spec and tensors, shapes checked. Close `tensors` when done. */
export interface OpenedModel {
  spec: ModelSpec;
  tensors: TensorSource;
}

/** Opens `path` (a checkpoint directory or a .gguf file). */
export async function openModel(path: string, options: OpenModelOptions = {}): Promise<OpenedModel> {
  let spec: ModelSpec;
  let tensors: TensorSource;
  await checkModelPath(path);
  if (isGgufPath(path)) {
    ({ spec, tensors } = await openGgufModel(path));
  } else {
    spec = await loadModelSpec(path);
    const index = await openCheckpointTensors(path);
    if (index.skippedTensors > 0) {
      // Text serving runs the language model of a vision-language checkpoint.
      console.error(`[load] ${path}: skipping ${index.skippedTensors} vision-tower / MTP tensors (text-only serving)`);
    }
    tensors = index;
  }
  try {
    checkTensorShapes(spec, tensors);
  } catch (e) {
    tensors.close();
    throw e;
  }
  return { spec, tensors: quantizeSource(tensors, options.quantization ?? "none") };
}
