/**
 * Tiny Qwen3.5-MoE (`qwen3_5_moe`) checkpoints for tests, written to temp directories, beside
 * the vendored fixture with transformers' goldens (tests/fixtures/models/qwen35-moe-tiny):
 *
 * - {@link writeQwen35MoeFromDense}: qwen35-tiny's weights rewritten as the hub's
 *   `Qwen3_5MoeForConditionalGeneration` layout (config under `text_config`, tensors under
 *   `model.language_model.`), every layer's MLP f turned into a sparse block that computes f
 *   again: E routed experts that are f with down_proj halved, and a shared expert that is f
 *   with its gate weight 0 (sigmoid 1/2). The top-k weights sum to 1, so the block gives
 *   sum_k w_k f/2 + f/2 = f, and the model must reproduce qwen35-tiny's transformers goldens
 *   (up to f32 rounding) only if the routed experts, the renormalized routing weights, the
 *   shared expert and its sigmoid gate are all there with the right weights and names. A random
 *   router sends tokens to different experts.
 * - {@link writeRandomQwen35Moe}: random weights with distinct experts (the flat
 *   `Qwen3_5MoeForCausalLM` layout), for serving and batch invariance, where routing changes
 *   the output.
 * - {@link writeFusedExpertsCopy}: a checkpoint's per-expert tensors (what transformers 5.18's
 *   save_pretrained writes, as in qwen35-moe-tiny) stacked into the fused layout that
 *   transformers holds in memory and the Qwen3.5 hub checkpoints ship.
 * @module
 */
import * as sys from "./platform.ts";
import { MODELS_DIR } from "./fixtures.ts";
import { decodeTensor, encodeTensor, Rng, type SyntheticTensor, writeSafetensors, writeSyntheticCheckpoint } from "./synthetic_checkpoint.ts";
import { openCheckpointTensors } from "../../src/model/safetensors.ts";

const DENSE = `${MODELS_DIR}qwen35-tiny`;

/** Options of {@link writeQwen35MoeFromDense}. */
export interface FromDenseOptions {
  /** Routed experts per layer (default 4). */
  experts?: number;
  /** Experts per token (default 2). */
  topK?: number;
  /** Router seed (default 7). */
  seed?: number;
  /**
   * Routed experts as per-expert Linear tensors (`mlp.experts.N.*_proj.weight`, what
   * transformers 5.18's save_pretrained writes through its conversion mapping; default) or
   * fused as transformers holds them and the Qwen3.5 hub checkpoints ship them
   * (`mlp.experts.gate_up_proj [E, 2I, H]`, `mlp.experts.down_proj [E, H, I]`).
   */
  layout?: "per_expert" | "fused";
}

/**
 * Writes qwen35-tiny as a `qwen3_5_moe` checkpoint whose sparse blocks equal its dense MLPs
 * (see the module doc) into `dir`; returns the text config written.
 */
export async function writeQwen35MoeFromDense(dir: string, opts: FromDenseOptions = {}): Promise<Record<string, unknown>> {
  const E = opts.experts ?? 4;
  const K = opts.topK ?? 2;
  const config = JSON.parse(await sys.readTextFile(`${DENSE}/config.json`));
  const text = config.text_config as Record<string, unknown>;
  const I = text.intermediate_size as number;
  const H = text.hidden_size as number;
  const layers = text.num_hidden_layers as number;
  // transformers' Qwen3_5MoeTextConfig has no intermediate_size.
  delete text.intermediate_size;
  Object.assign(text, {
    model_type: "qwen3_5_moe_text",
    num_experts: E,
    num_experts_per_tok: K,
    moe_intermediate_size: I,
    shared_expert_intermediate_size: I,
  });
  Object.assign(config, { architectures: ["Qwen3_5MoeForConditionalGeneration"], model_type: "qwen3_5_moe" });

  const source = await openCheckpointTensors(DENSE);
  const read = async (name: string): Promise<SyntheticTensor> => {
    const info = source.get(name);
    const dtype = info.dtype as SyntheticTensor["dtype"];
    return { name, dtype, shape: info.shape, data: decodeTensor(await source.read(info), dtype) };
  };
  // bf16 like the source; halving a bf16 value is exact.
  const bf16 = (name: string, shape: number[], data: Float32Array): SyntheticTensor => ({ name, dtype: "BF16", shape, data: decodeTensor(encodeTensor(data, "BF16"), "BF16") });
  const rng = new Rng(opts.seed ?? 7);
  const out: SyntheticTensor[] = [];
  for (const name of source.names()) {
    const m = /^model\.layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/.exec(name);
    if (!m) {
      out.push(await read(name));
      continue;
    }
    if (m[2] !== "gate") continue;
    const p = `model.layers.${m[1]}.mlp`;
    const [gate, up, down] = await Promise.all(["gate", "up", "down"].map((k) => read(`${p}.${k}_proj.weight`)));
    const half = down.data.map((v) => v / 2);
    out.push(bf16(`${p}.gate.weight`, [E, H], Float32Array.from({ length: E * H }, () => rng.normal())));
    if (opts.layout === "fused") {
      const gateUp = new Float32Array(E * 2 * I * H);
      const downs = new Float32Array(E * H * I);
      for (let e = 0; e < E; e++) {
        gateUp.set(gate.data, e * 2 * I * H);
        gateUp.set(up.data, (2 * e + 1) * I * H);
        downs.set(half, e * H * I);
      }
      out.push(bf16(`${p}.experts.gate_up_proj`, [E, 2 * I, H], gateUp), bf16(`${p}.experts.down_proj`, [E, H, I], downs));
    } else {
      for (let e = 0; e < E; e++) {
        out.push(
          { ...gate, name: `${p}.experts.${e}.gate_proj.weight` },
          { ...up, name: `${p}.experts.${e}.up_proj.weight` },
          bf16(`${p}.experts.${e}.down_proj.weight`, down.shape, half),
        );
      }
    }
    out.push(
      { ...gate, name: `${p}.shared_expert.gate_proj.weight` },
      { ...up, name: `${p}.shared_expert.up_proj.weight` },
      { ...down, name: `${p}.shared_expert.down_proj.weight` },
      bf16(`${p}.shared_expert_gate.weight`, [1, H], new Float32Array(H)),
    );
  }
  if (out.filter((t) => t.name.endsWith(".shared_expert_gate.weight")).length !== layers) {
    throw new Error(`expected ${layers} dense MLPs in ${DENSE}`);
  }
  await sys.mkdir(dir, { recursive: true });
  // The hub layout: the language model under model.language_model.
  const hub = out.map((t) => ({ ...t, name: t.name.replace(/^model\./, "model.language_model.") }));
  await writeSafetensors(`${dir}/model.safetensors`, hub);
  await sys.writeTextFile(`${dir}/config.json`, JSON.stringify(config, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await sys.copyFile(`${DENSE}/${f}`, `${dir}/${f}`);
  }
  return text;
}

/** A small random `Qwen3_5MoeForCausalLM` config: 3 Gated DeltaNet layers, 1 gated attention layer. */
export const TINY_QWEN35_MOE_CONFIG: Record<string, unknown> = {
  architectures: ["Qwen3_5MoeForCausalLM"],
  model_type: "qwen3_5_moe_text",
  hidden_size: 64,
  num_hidden_layers: 4,
  layer_types: ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  linear_num_key_heads: 2,
  linear_num_value_heads: 4,
  linear_key_head_dim: 16,
  linear_value_head_dim: 16,
  linear_conv_kernel_dim: 4,
  partial_rotary_factor: 0.25,
  rope_parameters: { rope_type: "default", rope_theta: 10000000, partial_rotary_factor: 0.25 },
  num_experts: 8,
  num_experts_per_tok: 2,
  moe_intermediate_size: 32,
  shared_expert_intermediate_size: 48,
  max_position_embeddings: 1024,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};

/**
 * Writes a random-init {@link TINY_QWEN35_MOE_CONFIG} checkpoint (stories260K's tokenizer) into
 * `dir`; the router's weights are larger than the rest so tokens pick clearly different experts.
 */
export async function writeRandomQwen35Moe(dir: string, seed = 3): Promise<SyntheticTensor[]> {
  return await writeSyntheticCheckpoint(dir, TINY_QWEN35_MOE_CONFIG, {
    seed,
    std: 0.08,
    mutate: (tensors) => {
      for (const t of tensors) if (t.name.endsWith(".mlp.gate.weight")) t.data = t.data.map((v) => 20 * v);
    },
  });
}

/**
 * Copies the checkpoint in `src` to `dir` with every layer's per-expert routed tensors
 * (`mlp.experts.N.{gate,up,down}_proj.weight`) stacked as transformers' fused parameters:
 * `mlp.experts.gate_up_proj [E, 2I, H]` (each expert's gate rows then its up rows) and
 * `mlp.experts.down_proj [E, H, I]`, values and dtype unchanged. Returns how many layers were
 * fused.
 */
export async function writeFusedExpertsCopy(src: string, dir: string): Promise<number> {
  const source = await openCheckpointTensors(src);
  const out: SyntheticTensor[] = [];
  const layers = new Map<string, Map<number, Record<string, SyntheticTensor>>>();
  try {
    for (const name of source.names()) {
      const info = source.get(name);
      const dtype = info.dtype as SyntheticTensor["dtype"];
      const t = { name, dtype, shape: info.shape, data: decodeTensor(await source.read(info), dtype) };
      const m = /^(.*\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(name);
      if (!m) {
        out.push(t);
        continue;
      }
      const experts = layers.get(m[1]) ?? new Map<number, Record<string, SyntheticTensor>>();
      layers.set(m[1], experts);
      const e = experts.get(+m[2]) ?? {};
      experts.set(+m[2], e);
      e[m[3]] = t;
    }
  } finally {
    source.close();
  }
  for (const [prefix, experts] of layers) {
    const E = experts.size;
    const [I, H] = experts.get(0)!.gate.shape;
    const dtype = experts.get(0)!.gate.dtype;
    const gateUp = new Float32Array(E * 2 * I * H);
    const down = new Float32Array(E * H * I);
    for (let e = 0; e < E; e++) {
      const x = experts.get(e);
      if (!x?.gate || !x.up || !x.down) throw new Error(`${prefix}: expert ${e} is incomplete`);
      gateUp.set(x.gate.data, 2 * e * I * H);
      gateUp.set(x.up.data, (2 * e + 1) * I * H);
      down.set(x.down.data, e * H * I);
    }
    out.push(
      { name: `${prefix}.gate_up_proj`, dtype, shape: [E, 2 * I, H], data: gateUp },
      { name: `${prefix}.down_proj`, dtype, shape: [E, H, I], data: down },
    );
  }
  await sys.mkdir(dir, { recursive: true });
  await writeSafetensors(`${dir}/model.safetensors`, out);
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await sys.copyFile(`${src}/${f}`, `${dir}/${f}`);
  }
  return layers.size;
}
