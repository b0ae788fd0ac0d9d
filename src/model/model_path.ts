/**
 * What a `--model` path may be: a checkpoint directory or a `.gguf` file. Any other file is
 * refused by name before anything reads inside it (which would fail with ENOTDIR).
 * @module
 */
import { stat } from "../runtime/runtime.ts";
import { CheckpointError } from "./errors.ts";
import { isGgufPath } from "./gguf/reader.ts";

/** Throws {@link CheckpointError} when `path` is a file that is not a `.gguf`. A missing path is left to the loader's own error. */
export async function checkModelPath(path: string): Promise<void> {
  if (isGgufPath(path)) return;
  const s = await stat(path);
  if (s && !s.isDirectory) {
    throw new CheckpointError(
      path,
      "is not a .gguf file: expected a checkpoint directory (config.json, tokenizer.json and *.safetensors) or a .gguf file",
    );
  }
}
