/**
 * MTP test checkpoints: qwen35-tiny (which has no `mtp.*` tensors) plus a multi-token-prediction
 * head of Qwen3.5's shapes written at test time, and a plain TypeScript reference of that head
 * (vLLM's Qwen3_5MultiTokenPredictor: fc over cat(norm_e(embed(t[p+1])), norm_h(h[p])), one
 * gated full-attention layer, mtp.norm, the tied LM head; norms 1 + w).
 */
import * as sys from "./platform.ts";
import { decodeTensor, Rng, type SyntheticTensor, writeSafetensors } from "./synthetic_checkpoint.ts";
import { modelDir } from "./reference.ts";
import type { SafetensorsDType } from "../../src/model/safetensors.ts";

const SRC = modelDir("qwen35-tiny");
/** qwen35-tiny's text config. */
export const TINY = { H: 128, nh: 4, nkv: 2, hd: 64, I: 320, V: 512, rot: 16, theta: 1e7, eps: 1e-6 };
const LM = "model.language_model.";
/**
 * How much of the rigged target's token mixers and MLPs is kept: at 0.3 (k = 3, 4 streams of
 * 48 tokens) 43 of 69 drafts were accepted, with rejections after accepted drafts; 0.05
 * accepted all, 0.6 almost none.
 */
const RIG_SCALE = 0.3;

/**
 * "random": the target unchanged, a random head. "rigged": a target whose token mixers and
 * MLPs are scaled down (its next token then depends mostly on the current one) and a head
 * that passes the embedding half through (fc = [I | 0], zero o/down): the head then predicts
 * what the target will mostly say, so drafts get accepted (and some rejected).
 */
export type MtpVariant = "random" | "rigged";

/** Tensors by name, f32. */
export type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** A single-file checkpoint's tensors, decoded. */
async function fileTensors(path: string): Promise<SyntheticTensor[]> {
  const bytes = await sys.readFile(path);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return Object.entries(header).filter(([k]) => k !== "__metadata__").map(([name, v]) => {
    const { dtype, shape, data_offsets: [a, b] } = v as { dtype: SafetensorsDType; shape: number[]; data_offsets: [number, number] };
    return { name, dtype, shape, data: decodeTensor(bytes.slice(8 + n + a, 8 + n + b), dtype) };
  });
}

/**
 * Writes qwen35-tiny with an MTP head (`mtp_num_hidden_layers: 1`) into `dir` (or without one
 * when `variant` is "none"), in the hub layout or as a causal-LM export (`model.*` + `mtp.*`),
 * and returns every tensor it wrote under the hub names, f32 (for the reference).
 */
export async function writeMtpCheckpoint(dir: string, variant: MtpVariant | "none", seed = 5, layout: "hub" | "causal_lm" = "hub"): Promise<Tensors> {
  const { H, nh, nkv, hd, I } = TINY;
  await sys.mkdir(dir, { recursive: true });
  for (const f of ["generation_config.json", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${SRC}/${f}`, `${dir}/${f}`);
  const config = JSON.parse(await sys.readTextFile(`${SRC}/config.json`));
  if (variant !== "none") config.text_config.mtp_num_hidden_layers = 1;
  await sys.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  const tensors = (await fileTensors(`${SRC}/model.safetensors`)).filter((t) => !t.name.startsWith("model.visual."));
  if (variant === "rigged") {
    for (const t of tensors) {
      if (/(o_proj|out_proj|down_proj)\.weight$/.test(t.name)) t.data = t.data.map((v) => v * RIG_SCALE);
    }
  }
  const rng = new Rng(seed);
  const rand = (shape: number[], scale: number) => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (rng.next() * 2 - 1) * scale);
  const head: SyntheticTensor[] = [];
  const put = (name: string, shape: number[], data: Float32Array) => head.push({ name, dtype: "F32", shape, data });
  if (variant === "random") {
    put("mtp.fc.weight", [H, 2 * H], rand([H, 2 * H], 1 / Math.sqrt(2 * H)));
    for (const n of ["mtp.pre_fc_norm_embedding", "mtp.pre_fc_norm_hidden", "mtp.norm", "mtp.layers.0.input_layernorm", "mtp.layers.0.post_attention_layernorm"]) {
      put(`${n}.weight`, [H], rand([H], 0.2));
    }
    const a = "mtp.layers.0.self_attn";
    put(`${a}.q_proj.weight`, [2 * nh * hd, H], rand([2 * nh * hd, H], 1 / Math.sqrt(H)));
    put(`${a}.k_proj.weight`, [nkv * hd, H], rand([nkv * hd, H], 1 / Math.sqrt(H)));
    put(`${a}.v_proj.weight`, [nkv * hd, H], rand([nkv * hd, H], 1 / Math.sqrt(H)));
    put(`${a}.o_proj.weight`, [H, nh * hd], rand([H, nh * hd], 1 / Math.sqrt(nh * hd)));
    put(`${a}.q_norm.weight`, [hd], rand([hd], 0.2));
    put(`${a}.k_norm.weight`, [hd], rand([hd], 0.2));
    const m = "mtp.layers.0.mlp";
    put(`${m}.gate_proj.weight`, [I, H], rand([I, H], 1 / Math.sqrt(H)));
    put(`${m}.up_proj.weight`, [I, H], rand([I, H], 1 / Math.sqrt(H)));
    put(`${m}.down_proj.weight`, [H, I], rand([H, I], 1 / Math.sqrt(I)));
  } else if (variant === "rigged") {
    // The target's last (full-attention) layer, its o and down zeroed: the residual is the fc
    // output, which is the normed embedding of the token fed.
    for (const t of tensors.filter((t) => t.name.startsWith(`${LM}layers.3.`))) {
      const name = `mtp.layers.0.${t.name.slice(`${LM}layers.3.`.length)}`;
      put(name, t.shape, /(o_proj|down_proj)\.weight$/.test(name) ? new Float32Array(t.data.length) : Float32Array.from(t.data));
    }
    const fc = new Float32Array(H * 2 * H);
    for (let i = 0; i < H; i++) fc[i * 2 * H + i] = 1;
    put("mtp.fc.weight", [H, 2 * H], fc);
    put("mtp.pre_fc_norm_embedding.weight", [H], new Float32Array(H));
    put("mtp.pre_fc_norm_hidden.weight", [H], new Float32Array(H));
    put("mtp.norm.weight", [H], Float32Array.from(tensors.find((t) => t.name === `${LM}norm.weight`)!.data));
  }
  if (layout === "causal_lm") {
    // A causal-LM export: the text config at the top level, the language model under model.*.
    await sys.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config.text_config, architectures: ["Qwen3_5ForCausalLM"] }));
    await writeSafetensors(`${dir}/model.safetensors`, [...tensors.map((t) => ({ ...t, name: t.name.replace(LM, "model.") })), ...head]);
  } else {
    await writeSafetensors(`${dir}/model.safetensors`, [...tensors, ...head]);
  }
  return new Map([...tensors, ...head].map((t) => [t.name, { shape: t.shape, data: Float32Array.from(t.data) }]));
}

/**
 * Adds an MTP head to the hub-layout checkpoint in `dir` (a random Qwen3.5-MoE one): its layer
 * a copy of the target's last layer (experts, router and shared expert included, as stored),
 * fc and the norms random.
 */
export async function addMtpHead(dir: string, last: number, seed = 9): Promise<void> {
  const H = TINY.H;
  const tensors = await fileTensors(`${dir}/model.safetensors`);
  const rng = new Rng(seed);
  const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  const from = `${LM}layers.${last}.`;
  const head: SyntheticTensor[] = tensors.filter((t) => t.name.startsWith(from)).map((t) => ({ ...t, name: `mtp.layers.0.${t.name.slice(from.length)}` }));
  head.push({ name: "mtp.fc.weight", dtype: "F32", shape: [H, 2 * H], data: rand(2 * H * H, 1 / Math.sqrt(2 * H)) });
  for (const n of ["pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm"]) head.push({ name: `mtp.${n}.weight`, dtype: "F32", shape: [H], data: rand(H, 0.2) });
  await writeSafetensors(`${dir}/model.safetensors`, [...tensors, ...head]);
  const config = JSON.parse(await sys.readTextFile(`${dir}/config.json`));
  config.text_config.mtp_num_hidden_layers = 1;
  await sys.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
}

/** x / rms(x) * (1 + w). */
function rmsNorm(x: Float32Array, w: Float32Array, eps = TINY.eps): Float32Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (1 + w[i]));
}

/** y = W x for W [out, in] row-major. */
function matvec(w: Float32Array, x: Float32Array, out: number): Float32Array {
  const n = x.length;
  const y = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** Rotates the first `rot` dims of a head (rotate-half) by position `pos`. */
function rope(x: Float32Array, pos: number): Float32Array {
  const { rot, theta } = TINY;
  const half = rot / 2;
  const y = Float32Array.from(x);
  for (let i = 0; i < half; i++) {
    const f = pos * Math.pow(theta, (-2 * i) / rot);
    const [c, s] = [Math.cos(f), Math.sin(f)];
    y[i] = x[i] * c - x[i + half] * s;
    y[i + half] = x[i + half] * c + x[i] * s;
  }
  return y;
}

/**
 * The MTP head's greedy drafts, computed from scratch: rows p = 0 .. L-2 take
 * (known[p + 1], hidden[p]) (hidden = the target's final-normed rows), the last of them
 * samples draft 1; draft j + 1 comes from a row at the next position fed draft j and the head's
 * own previous output row. Returns the drafts and each draft row's logits.
 */
export function referenceDrafts(t: Tensors, known: readonly number[], hidden: readonly Float32Array[], k: number): { drafts: number[]; logits: Float32Array[] } {
  const { H, nh, nkv, hd, V } = TINY;
  const g = (name: string) => t.get(name)!.data;
  const embed = g(`${LM}embed_tokens.weight`);
  const a = "mtp.layers.0.self_attn";
  const keys: Float32Array[][] = [];
  const values: Float32Array[][] = [];
  const row = (token: number, h: Float32Array, pos: number): { out: Float32Array; logits: Float32Array } => {
    const e = rmsNorm(embed.subarray(token * H, (token + 1) * H), g("mtp.pre_fc_norm_embedding.weight"));
    const hn = rmsNorm(h, g("mtp.pre_fc_norm_hidden.weight"));
    const cat = new Float32Array(2 * H);
    cat.set(e, 0);
    cat.set(hn, H);
    const x = matvec(g("mtp.fc.weight"), cat, H);
    const xn = rmsNorm(x, g("mtp.layers.0.input_layernorm.weight"));
    const qg = matvec(g(`${a}.q_proj.weight`), xn, 2 * nh * hd);
    const kk = matvec(g(`${a}.k_proj.weight`), xn, nkv * hd);
    const vv = matvec(g(`${a}.v_proj.weight`), xn, nkv * hd);
    keys.push(Array.from({ length: nkv }, (_, j) => rope(rmsNorm(kk.subarray(j * hd, (j + 1) * hd), g(`${a}.k_norm.weight`)), pos)));
    values.push(Array.from({ length: nkv }, (_, j) => vv.slice(j * hd, (j + 1) * hd)));
    const attn = new Float32Array(nh * hd);
    for (let h = 0; h < nh; h++) {
      const q = rope(rmsNorm(qg.subarray(h * 2 * hd, h * 2 * hd + hd), g(`${a}.q_norm.weight`)), pos);
      const kv = Math.floor(h / (nh / nkv));
      const scores = keys.map((ks) => {
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[i] * ks[kv][i];
        return s / Math.sqrt(hd);
      });
      const m = Math.max(...scores);
      const p = scores.map((s) => Math.exp(s - m));
      const z = p.reduce((x, y) => x + y, 0);
      for (let i = 0; i < hd; i++) {
        let s = 0;
        for (let j = 0; j < p.length; j++) s += p[j] * values[j][kv][i];
        const gate = qg[h * 2 * hd + hd + i];
        attn[h * hd + i] = (s / z) / (1 + Math.exp(-gate));
      }
    }
    const o = matvec(g(`${a}.o_proj.weight`), attn, H);
    const x2 = x.map((v, i) => v + o[i]);
    const x2n = rmsNorm(x2, g("mtp.layers.0.post_attention_layernorm.weight"));
    const gate = matvec(g("mtp.layers.0.mlp.gate_proj.weight"), x2n, TINY.I);
    const up = matvec(g("mtp.layers.0.mlp.up_proj.weight"), x2n, TINY.I);
    const act = gate.map((v, i) => (v / (1 + Math.exp(-v))) * up[i]);
    const down = matvec(g("mtp.layers.0.mlp.down_proj.weight"), act, H);
    const out = rmsNorm(x2.map((v, i) => v + down[i]), g("mtp.norm.weight"));
    return { out, logits: matvec(embed, out, V) };
  };
  const argmax = (l: Float32Array) => l.reduce((best, v, i) => (v > l[best] ? i : best), 0);
  let last!: { out: Float32Array; logits: Float32Array };
  for (let p = 0; p + 1 < known.length; p++) last = row(known[p + 1], hidden[p], p);
  const drafts = [argmax(last.logits)];
  const logits = [last.logits];
  for (let j = 1; j < k; j++) {
    last = row(drafts[j - 1], last.out, known.length - 2 + j);
    drafts.push(argmax(last.logits));
    logits.push(last.logits);
  }
  return { drafts, logits };
}
