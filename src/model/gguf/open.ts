/**
 * Opens a GGUF file as a model: its header, {@link ModelSpec} and tensors under HF names.
 * @module
 */
import type { ModelSpec } from "../config.ts";
import { readGgufHeader } from "./reader.ts";
import { ggufModelSpec } from "./spec.ts";
import { GgufTensorSource } from "./source.ts";
import { moeHfTensors } from "./moe_layout.ts";
import { dequantize } from "../quant/dequantize.ts";
import { openFile } from "../../runtime/runtime.ts";
import { CheckpointError } from "../errors.ts";

/** A GGUF model ready for the weight uploader. */
export interface GgufModel {
  spec: ModelSpec;
  tensors: GgufTensorSource;
}

/** Reads the header of `path`, derives the spec, and indexes the tensors. */
export async function openGgufModel(path: string): Promise<GgufModel> {
  const header = await readGgufHeader(path);
  let factors: Float32Array | null = null;
  const freqs = header.tensors.get("rope_freqs.weight");
  if (freqs) {
    const bytes = new Uint8Array(freqs.byteLength);
    const file = await openFile(path);
    try {
      let done = 0;
      while (done < bytes.length) {
        const n = await file.read(bytes.subarray(done), freqs.byteOffset + done);
        if (n === 0) throw new CheckpointError(path, "tensor rope_freqs.weight: unexpected end of file");
        done += n;
      }
    } finally {
      await file.close();
    }
    factors = dequantize(freqs.type.name, bytes);
  }
  const spec = ggufModelSpec(header, factors);
  return { spec, tensors: new GgufTensorSource(header, spec.architecture, spec.numHeads, spec.numKvHeads, moeHfTensors(header, spec)) };
}
