/**
 * Which tensors load-time quantization (and `convert --quantization`) turns into blocks: the
 * decoder's linear weights (q/k/v/o, Gated DeltaNet in/out, gate/up/down projections and a
 * shared expert's, as the dense MLP they are; routed experts are quantized by their own uploader,
 * src/model/moe_weights.ts) whose input size K is a
 * multiple of 32, as llama.cpp and the quant goldens do. Embeddings, the LM head, norms and
 * biases stay as they are.
 * @module
 */

const LINEAR =
  /^model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|linear_attn\.(in_proj_(qkv|z|b|a)|out_proj)|mlp\.(shared_expert\.)?(gate|up|down)_proj)\.weight$/;

/** Whether the HF-named tensor of this shape is quantized at load time. */
export function isQuantTarget(name: string, shape: readonly number[]): boolean {
  return shape.length === 2 && shape[1] % 32 === 0 && LINEAR.test(name);
}
