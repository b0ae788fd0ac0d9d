/**
 * A llama-style model's weights on the host, as the packers want them: matrices as f16 bits
 * in HF layout (q|k|v and gate|up stacked), norms and biases as f32. Read from a checkpoint
 * directory, or drawn at random with a model's shapes (the SmolLM2-135M-shaped benchmark
 * model) without touching the disk.
 * @module
 */
import { loadModelSpec, type ModelSpec } from "../../src/model/config.ts";
import { openCheckpointTensors, type TensorIndex } from "../../src/model/safetensors.ts";
import { decodeToF32 } from "../../src/model/weights.ts";
import type { HostMatrix } from "../../src/model/weight_layout.ts";
import { Rng } from "../rng.ts";

/** One decoder layer. */
export interface HostLayer {
  inputNorm: Float32Array;
  qkv: HostMatrix;
  qkvBias: Float32Array | null;
  o: HostMatrix;
  postAttnNorm: Float32Array;
  gateUp: HostMatrix;
  down: HostMatrix;
}

/** A whole model. */
export interface HostWeights {
  embed: HostMatrix;
  layers: HostLayer[];
  finalNorm: Float32Array;
  lmHead: HostMatrix;
}

/** Raised for models the prototype decoder does not cover. */
export class UnsupportedModelError extends Error {
  readonly code = "UNSUPPORTED_MODEL";
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedModelError";
  }
}

/** Whether the prototype decoder runs this spec (llama, mistral, qwen2: no sandwich or q/k norms). */
export function checkSupported(spec: ModelSpec): void {
  if (
    spec.sandwichNorm || spec.qkNorm || spec.finalLogitSoftcap || spec.oProjBias || spec.mlpBias
  ) {
    throw new UnsupportedModelError(
      `${spec.architecture}: the prototype decoder covers llama, mistral and qwen2`,
    );
  }
  if (spec.headDim % 8 !== 0) {
    throw new UnsupportedModelError(`head_dim ${spec.headDim} is not a multiple of 8`);
  }
}

async function f32Of(index: TensorIndex, name: string): Promise<Float32Array<ArrayBuffer>> {
  const info = index.get(name);
  return decodeToF32(await index.read(info), info.dtype);
}

async function matrixOf(index: TensorIndex, names: string[]): Promise<HostMatrix> {
  const parts = await Promise.all(names.map((n) => f32Of(index, n)));
  const cols = index.get(names[0]).shape[1];
  const rows = names.reduce((n, name) => n + index.get(name).shape[0], 0);
  const h = new Float16Array(rows * cols);
  let o = 0;
  for (const p of parts) {
    h.set(p, o);
    o += p.length;
  }
  return { data: new Uint16Array(h.buffer), rows, cols };
}

async function vectorOf(index: TensorIndex, names: string[]): Promise<Float32Array> {
  const parts = await Promise.all(names.map((n) => f32Of(index, n)));
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads a checkpoint's weights (matrices rounded to f16, as the runtime stores them). */
export async function loadHostWeights(
  dir: string,
): Promise<{ spec: ModelSpec; weights: HostWeights }> {
  const spec = await loadModelSpec(dir);
  checkSupported(spec);
  const index = await openCheckpointTensors(dir);
  try {
    const layers: HostLayer[] = [];
    for (let i = 0; i < spec.numLayers; i++) {
      const a = `model.layers.${i}.self_attn`;
      const m = `model.layers.${i}.mlp`;
      layers.push({
        inputNorm: await vectorOf(index, [`model.layers.${i}.input_layernorm.weight`]),
        qkv: await matrixOf(index, [
          `${a}.q_proj.weight`,
          `${a}.k_proj.weight`,
          `${a}.v_proj.weight`,
        ]),
        qkvBias: spec.qkvBias
          ? await vectorOf(index, [`${a}.q_proj.bias`, `${a}.k_proj.bias`, `${a}.v_proj.bias`])
          : null,
        o: await matrixOf(index, [`${a}.o_proj.weight`]),
        postAttnNorm: await vectorOf(index, [`model.layers.${i}.post_attention_layernorm.weight`]),
        gateUp: await matrixOf(index, [`${m}.gate_proj.weight`, `${m}.up_proj.weight`]),
        down: await matrixOf(index, [`${m}.down_proj.weight`]),
      });
    }
    const embed = await matrixOf(index, ["model.embed_tokens.weight"]);
    return {
      spec,
      weights: {
        embed,
        layers,
        finalNorm: await vectorOf(index, ["model.norm.weight"]),
        lmHead: spec.tieWordEmbeddings ? embed : await matrixOf(index, ["lm_head.weight"]),
      },
    };
  } finally {
    index.close();
  }
}

/** Random weights with a spec's shapes (normal, std 0.02; norms near 1). */
export function randomHostWeights(spec: ModelSpec, seed = 135): HostWeights {
  checkSupported(spec);
  const rng = new Rng(seed);
  const table = new Float16Array(1 << 16);
  for (let i = 0; i < table.length; i++) table[i] = 0.02 * rng.normal();
  const bits = new Uint16Array(table.buffer);
  let s = (seed * 2654435761) >>> 0 || 1;
  const matrix = (rows: number, cols: number): HostMatrix => {
    const data = new Uint16Array(rows * cols);
    for (let i = 0; i < data.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      data[i] = bits[(s >>> 7) & 0xffff];
    }
    return { data, rows, cols };
  };
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.02 * rng.normal());
  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const qkvRows = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  const embed = matrix(spec.vocabSize, H);
  return {
    embed,
    layers: Array.from({ length: spec.numLayers }, () => ({
      inputNorm: norm(H),
      qkv: matrix(qkvRows, H),
      qkvBias: spec.qkvBias
        ? Float32Array.from({ length: qkvRows }, () => 0.02 * rng.normal())
        : null,
      o: matrix(H, spec.numHeads * spec.headDim),
      postAttnNorm: norm(H),
      gateUp: matrix(2 * I, H),
      down: matrix(H, I),
    })),
    finalNorm: norm(H),
    lmHead: spec.tieWordEmbeddings ? embed : matrix(spec.vocabSize, H),
  };
}
