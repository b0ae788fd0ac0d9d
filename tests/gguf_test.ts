/**
 * GGUF on the CPU: the writer read back by our reader; named errors for malformed files
 * (bad magic, unsupported version, truncation at every offset, unknown tensor type, missing
 * metadata, inconsistent shapes); `convert` output read back (the exact blocks load-time
 * quantization makes, q/k rows restored, Gemma's 1 + w norms); and the tokenizer built from
 * the GGUF vocabulary, which must encode every reference prompt like the HF tokenizer.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { withTempDir, writeSyntheticCheckpoint } from "./helpers/synthetic_checkpoint.ts";
import { loadGolden, maxAbs, maxAbsDiff, MODEL_NAMES, modelDir, promptLogits } from "./helpers/reference.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { encodeGgufHeader, type GgufFile, writeGguf } from "../src/model/gguf/writer.ts";
import { parseGgufHeader, readGgufHeader } from "../src/model/gguf/reader.ts";
import { permuteQkRows, unpermuteQkRows } from "../src/model/gguf/names.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { openModel } from "../src/model/model_source.ts";
import { ggufModelSpec } from "../src/model/gguf/spec.ts";
import { sentencePieceMerges } from "../src/model/gguf/tokenizer.ts";
import { CheckpointError, UnsupportedArchitectureError } from "../src/model/errors.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { collectChunks } from "../src/model/tensor_source.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { GGML_TYPES } from "../src/model/quant/ggml_types.ts";
import { quantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { quantizeQ4_0 } from "../src/model/quant/q4_0.ts";
import { valueDType } from "../src/model/safetensors.ts";
import { qwen35GgufValues } from "../src/model/gguf/qwen35_layout.ts";
import { ModelNotFoundError, pickGguf } from "../src/hub/hub.ts";

/** A small GGUF file: metadata of each value type and three tensors. */
function smallSpec(): GgufFile {
  return {
    metadata: [
      ["general.architecture", { type: "string", value: "llama" }],
      ["x.u32", { type: "u32", value: 7 }],
      ["x.f32", { type: "f32", value: 0.5 }],
      ["x.bool", { type: "bool", value: true }],
      ["x.arr", { type: "array", itemType: "string", value: ["a", "bc"] }],
      ["x.i32s", { type: "array", itemType: "i32", value: [-1, 2] }],
    ],
    tensors: [
      { name: "a", dims: [3, 2], type: "F16", bytes: () => new Uint8Array(12).fill(1) },
      { name: "b", dims: [5], type: "F32", bytes: () => new Uint8Array(20).fill(2) },
      { name: "q", dims: [64, 2], type: "Q8_0", bytes: () => new Uint8Array(136).fill(3) },
    ],
  };
}

/** Writes {@link smallSpec} to `dir/small.gguf` and returns its bytes. */
async function smallFile(dir: string): Promise<Uint8Array> {
  await writeGguf(`${dir}/small.gguf`, smallSpec());
  return await sys.readFile(`${dir}/small.gguf`);
}

test("gguf: the writer's file read back (metadata types, dims, types, aligned offsets)", async () => {
  await withTempDir(async (dir) => {
    const bytes = await smallFile(dir);
    const h = await readGgufHeader(`${dir}/small.gguf`);
    assertEquals(h.version, 3);
    assertEquals(h.metadata.get("x.u32"), 7);
    assertEquals(h.metadata.get("x.f32"), 0.5);
    assertEquals(h.metadata.get("x.bool"), true);
    assertEquals(h.metadata.get("x.arr"), ["a", "bc"]);
    assertEquals(h.metadata.get("x.i32s"), [-1, 2]);
    const t = [...h.tensors.values()];
    assertEquals(t.map((x) => [x.name, x.dims, x.type.name, x.byteLength]), [["a", [3, 2], "F16", 12], ["b", [5], "F32", 20], ["q", [64, 2], "Q8_0", 136]]);
    assertEquals(t.map((x) => (x.byteOffset - h.dataOffset) % 32), [0, 0, 0]);
    assertEquals(h.dataOffset % 32, 0);
    assertEquals(bytes[t[2].byteOffset], 3);
    const { header } = encodeGgufHeader({ metadata: [], tensors: [] });
    assertEquals(parseGgufHeader(header).tensors.size, 0);
  });
});

test("gguf: truncated at every offset, a named CheckpointError (never a crash or a hang)", async () => {
  await withTempDir(async (dir) => {
    const bytes = await smallFile(dir);
    const reasons = new Set<string>();
    for (let n = 0; n < bytes.length; n++) {
      // The last tensor's data ends before the final alignment padding: shorter files only.
      const cut = bytes.subarray(0, n);
      let err: unknown = null;
      try {
        parseGgufHeader(cut, "cut.gguf", n);
      } catch (e) {
        err = e;
      }
      if (err === null) {
        // Only a cut inside the trailing padding may still parse.
        assert(n >= bytes.length - 32, `cut at ${n} of ${bytes.length} parsed`);
        continue;
      }
      assert(err instanceof CheckpointError, `cut at ${n}: ${err}`);
      assert(/truncat/.test(err.reason), `cut at ${n}: ${err.reason}`);
      reasons.add(err.reason.replace(/\d+/g, "N").slice(0, 40));
    }
    assert(reasons.size > 5, `only ${reasons.size} distinct reasons`);
    // The same through the file reader, at a few offsets.
    for (const n of [0, 3, 10, 100, bytes.length - 40]) {
      await sys.writeFile(`${dir}/cut.gguf`, bytes.subarray(0, n));
      await assertRejects(() => readGgufHeader(`${dir}/cut.gguf`), CheckpointError);
    }
  });
});

test("gguf: bad magic, unsupported versions, unknown tensor types, absurd counts are named", async () => {
  await withTempDir(async (dir) => {
    const bytes = await smallFile(dir);
    const put = async (edit: (b: Uint8Array, v: DataView) => void) => {
      const b = bytes.slice();
      edit(b, new DataView(b.buffer));
      await sys.writeFile(`${dir}/bad.gguf`, b);
      return `${dir}/bad.gguf`;
    };
    let e = await assertRejects(async () => readGgufHeader(await put((b) => b.set([0x50, 0x4b, 3, 4]))), CheckpointError);
    assert(e.message.includes("bad magic"), e.message);
    e = await assertRejects(async () => readGgufHeader(await put((_, v) => v.setUint32(4, 1, true))), CheckpointError);
    assert(e.message.includes("unsupported GGUF version 1"), e.message);
    e = await assertRejects(async () => readGgufHeader(await put((_, v) => v.setUint32(4, 0x03000000, true))), CheckpointError);
    assert(e.message.includes("big-endian"), e.message);
    // Tensor count 2^40: refused before anything is allocated.
    e = await assertRejects(async () => readGgufHeader(await put((_, v) => v.setBigUint64(8, 1n << 40n, true))), CheckpointError);
    assert(e.message.includes("cannot fit"), e.message);
    // The last tensor info ends with its u32 type and u64 offset: set the type to 13 (Q5_K).
    const infoEnd = encodeGgufHeader({ ...smallSpec(), alignment: 1 }).header.length;
    e = await assertRejects(async () => readGgufHeader(await put((_, v) => v.setUint32(infoEnd - 12, 13, true))), CheckpointError);
    assert(e.message.includes("tensor q has unsupported tensor type Q5_K"), e.message);
    e = await assertRejects(async () => readGgufHeader(await put((_, v) => v.setUint32(infoEnd - 12, 99, true))), CheckpointError);
    assert(e.message.includes("type 99"), e.message);
  });
});

test("gguf: q/k row permutation and its inverse", () => {
  // One head of 4 rows, 1 byte per row: HF [a0, a1, b0, b1] -> GGUF [a0, b0, a1, b1].
  assertEquals([...permuteQkRows(Uint8Array.from([0, 1, 2, 3]), 1, 1)], [0, 2, 1, 3]);
  assertEquals([...permuteQkRows(Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 1)], [0, 2, 1, 3, 4, 6, 5, 7]);
  const rows = Uint8Array.from({ length: 8 * 6 }, (_, i) => i);
  assertEquals([...unpermuteQkRows(permuteQkRows(rows, 2, 6), 2, 6)], [...rows]);
});

for (const name of ["stories260K", "llama-tiny", "gemma2-tiny", "gemma3-tiny"]) {
  for (const quantization of ["q8_0", "q4_0"] as const) {
    test(`gguf convert ${name} ${quantization}: our loader reads back exactly the load-time blocks and tensors`, async () => {
      await withTempDir(async (dir) => {
        const out = `${dir}/m.gguf`;
        const conv = await convertToGguf(modelDir(name), out, { quantization });
        assertEquals(conv.fileType, quantization === "q8_0" ? "Q8_0" : "Q4_0");
        const fromGguf = await openModel(out);
        const loadTime = await openModel(modelDir(name), { quantization });
        try {
          assertEquals(fromGguf.spec.numLayers, loadTime.spec.numLayers);
          let quantized = 0;
          for (const t of loadTime.tensors.names()) {
            if (t === "lm_head.weight" && loadTime.spec.tieWordEmbeddings) continue;
            const a = loadTime.tensors.get(t);
            const b = fromGguf.tensors.get(t);
            assertEquals(b.shape, a.shape, t);
            assertEquals(b.blocks?.type, a.blocks?.type, t);
            if (a.blocks) {
              quantized++;
              const ba = await collectChunks(a.blocks.byteLength, loadTime.tensors.readBlocks!(a));
              const bb = await collectChunks(b.blocks!.byteLength, fromGguf.tensors.readBlocks!(b, 1000));
              assert(ba.length === bb.length && ba.every((x, i) => x === bb[i]), `${t}: blocks differ`);
            }
            const va = dequantize(valueDType(a), await loadTime.tensors.read(a));
            const vb = dequantize(valueDType(b), await fromGguf.tensors.read(b));
            // Gemma's norms are stored as 1 + w (and the spec's normOffset drops to 0).
            const gemmaNorm = name.startsWith("gemma") && t.endsWith("norm.weight");
            assert(va.every((x, i) => (gemmaNorm ? Math.fround(x + 1) : x) === vb[i]), `${t}: values differ`);
          }
          assert(quantized >= 4 * loadTime.spec.numLayers, `only ${quantized} quantized tensors`);
          // GGUF stores eps as f32, which is what the kernels use anyway; Gemma's norms hold 1 + w.
          const gemma = name.startsWith("gemma");
          if (gemma) assertEquals([fromGguf.spec.normOffset, loadTime.spec.normOffset], [0, 1]);
          assertEquals(
            { ...fromGguf.spec, dtype: "x", normOffset: 0 },
            { ...loadTime.spec, dtype: "x", normOffset: 0, rmsNormEps: Math.fround(loadTime.spec.rmsNormEps) },
          );
        } finally {
          fromGguf.tensors.close();
          loadTime.tensors.close();
        }
      });
    });
  }
}

test("gguf convert: a synthetic llama checkpoint converts with every tensor, shape and type", async () => {
  await withTempDir(async (dir) => {
    const written = await writeSyntheticCheckpoint(dir, { num_hidden_layers: 2 }, { dtype: "F16" });
    const out = `${dir}/model.gguf`;
    const conv = await convertToGguf(dir, out);
    const h = await readGgufHeader(out);
    // Untied: embed + 9 per layer + final norm + output.
    assertEquals(conv.tensors, 1 + 2 * 9 + 2);
    assertEquals(h.tensors.size, conv.tensors);
    assertEquals(written.length, conv.tensors);
    assertEquals(conv.fileType, "F16");
    assertEquals(h.metadata.get("general.architecture"), "llama");
    assertEquals(h.metadata.get("llama.block_count"), 2);
    assertEquals(h.metadata.get("llama.attention.head_count"), 4);
    assertEquals(h.metadata.get("llama.attention.head_count_kv"), 2);
    assertEquals((h.metadata.get("tokenizer.ggml.tokens") as string[]).length, 512);
    assertEquals(h.tensors.get("token_embd.weight")!.dims, [32, 512]);
    assertEquals(h.tensors.get("blk.1.attn_q.weight")!.dims, [32, 32]);
    assertEquals(h.tensors.get("blk.1.attn_k.weight")!.dims, [32, 16]);
    assertEquals(h.tensors.get("blk.0.ffn_down.weight")!.dims, [64, 32]);
    assertEquals(h.tensors.get("output.weight")!.type.name, "F16");
    assertEquals(h.tensors.get("blk.0.attn_norm.weight")!.type.name, "F32");
    const end = Math.max(...[...h.tensors.values()].map((t) => t.byteOffset + t.byteLength));
    assert(h.fileSize >= end && h.fileSize - end < 32, `file ${h.fileSize}, data ends at ${end}`);
    assertEquals(conv.bytes, h.fileSize);
  });
});

test("gguf spec: missing metadata, unsupported architectures and inconsistent shapes are named", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, { num_hidden_layers: 1 });
    await convertToGguf(dir, `${dir}/m.gguf`);
    const header = await readGgufHeader(`${dir}/m.gguf`);
    for (const key of ["general.architecture", "llama.embedding_length", "llama.block_count", "llama.context_length", "llama.attention.layer_norm_rms_epsilon"]) {
      const m = new Map(header.metadata);
      m.delete(key);
      const e = assertThrows(() => ggufModelSpec({ ...header, metadata: m }), CheckpointError);
      assert(e.message.includes(`missing required metadata ${key}`), e.message);
    }
    const m = new Map(header.metadata);
    m.set("general.architecture", "mamba");
    assertThrows(() => ggufModelSpec({ ...header, metadata: m }), UnsupportedArchitectureError);
    // A q projection of the wrong shape: the shape check names it.
    await convertToGguf(dir, `${dir}/wide.gguf`);
    const wrong = new Map(header.metadata);
    wrong.set("llama.attention.head_count", 8);
    wrong.set("llama.attention.head_count_kv", 4);
    const named = assertThrows(() => ggufModelSpec({ ...header, metadata: wrong }), CheckpointError);
    assert(named.message.includes("llama.attention.head_count"), named.message);
    await writeGguf(`${dir}/wrong.gguf`, {
      metadata: [...wrong].map(([k, v]) => [k, typeof v === "string" ? { type: "string", value: v } : Array.isArray(v) ? (typeof v[0] === "string" ? { type: "array", itemType: "string", value: v as string[] } : { type: "array", itemType: "f32", value: v as number[] }) : typeof v === "boolean" ? { type: "bool", value: v } : Number.isInteger(v) ? { type: "u32", value: v } : { type: "f32", value: v }]),
      tensors: [...header.tensors.values()].map((t) => ({ name: t.name, dims: t.dims, type: t.type.name, bytes: () => new Uint8Array(t.byteLength) })),
    });
    const e = await assertRejects(() => openModel(`${dir}/wrong.gguf`), CheckpointError);
    assert(/tensor blk\.0\.attn_(q|k)\.weight has shape .* but the metadata gives/.test(e.message), e.message);
  });
});

test("gguf tokenizer: merges rebuilt from pieces and scores equal tokenizer.json's", async () => {
  const json = JSON.parse(await sys.readTextFile(`${modelDir("stories260K")}/tokenizer.json`));
  const vocab = json.model.vocab as Record<string, number>;
  const tokens: string[] = [];
  for (const [p, id] of Object.entries(vocab)) tokens[id] = p;
  const types = tokens.map((p, id) => (id < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(p) ? 6 : 1));
  const scores = tokens.map((_, id) => -id);
  assertEquals(sentencePieceMerges(tokens, scores, types), json.model.merges);
});

test("gguf tokenizer: built from the GGUF vocabulary, it encodes and decodes every reference prompt like HF", async () => {
  const legacy = await Tokenizer.load(modelDir("stories260K"));
  await withTempDir(async (dir) => {
    for (const name of MODEL_NAMES) {
      // No tokenizer.json beside the file: the vocabulary metadata is all there is.
      const path = `${dir}/${name}.gguf`;
      await convertToGguf(modelDir(name), path);
      const ours = await Tokenizer.load(path);
      const hf = await Tokenizer.load(modelDir(name));
      const golden = await loadGolden(name);
      for (const c of golden.cases) {
        assertEquals(ours.encode(c.prompt), c.prompt_ids, `${name}: "${c.prompt}"`);
        assertEquals(ours.decode(c.prompt_ids), hf.decode(c.prompt_ids), `${name}: decode "${c.prompt}"`);
        assertEquals(ours.decode(c.prompt_ids, { skipSpecialTokens: true }), hf.decode(c.prompt_ids, { skipSpecialTokens: true }));
      }
      // Beyond the prompts: SentencePiece's (and llama.cpp's) own behaviour, which
      // stories260K's legacy tokenizer.json has; the newer Metaspace tokenizer.json of the
      // random-init models prepends no "▁" to a text that starts with a space, a setting a
      // GGUF vocabulary does not record.
      for (const text of ["héllo wörld 🤖", "  two  spaces\nand\ttabs", "", "<s>not special</s>"]) {
        assertEquals(ours.encode(text), legacy.encode(text), `${name}: ${JSON.stringify(text)}`);
      }
      assertEquals([ours.bosTokenId, ours.eosTokenIds, ours.vocabSize, ours.addBosToken], [hf.bosTokenId, hf.eosTokenIds, hf.vocabSize, hf.addBosToken]);
      assertEquals(ours.chatTemplate, hf.chatTemplate, `${name}: chat template`);
    }
  });
});

test("gguf tokenizer: a tokenizer.json beside the file wins", async () => {
  await withTempDir(async (dir) => {
    await convertToGguf(modelDir("qwen2-tiny"), `${dir}/m.gguf`);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${modelDir("qwen2-tiny")}/${f}`, `${dir}/${f}`);
    const t = await Tokenizer.load(`${dir}/m.gguf`);
    assertEquals(t.encode("Hello"), (await Tokenizer.load(modelDir("qwen2-tiny"))).encode("Hello"));
  });
});

test("hub: the .gguf of a repository without safetensors, the one named, or a named error", () => {
  assertEquals(pickGguf("o/r", ["config.json", "m-Q4_K_M.gguf"]), "m-Q4_K_M.gguf");
  assertEquals(pickGguf("o/r", ["model.safetensors", "m.gguf"]), null);
  assertEquals(pickGguf("o/r", ["model.safetensors", "m.gguf"], "m.gguf"), "m.gguf");
  assertEquals(pickGguf("o/r", ["model.safetensors"]), null);
  let e = assertThrows(() => pickGguf("o/r", ["a-Q8_0.gguf", "a-Q4_0.gguf"]), ModelNotFoundError);
  assert(e.message.includes("--gguf-file"), e.message);
  e = assertThrows(() => pickGguf("o/r", ["a.gguf"], "b.gguf"), ModelNotFoundError);
  assert(e.message.includes("has no b.gguf (its .gguf files: a.gguf)"), e.message);
});

test("gguf: convert writes qwen35-tiny as llama.cpp's qwen35 (ssm_* names, metadata, -exp(A_log), tiled value heads, 1 + w norms)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/q35.gguf`;
    await convertToGguf(modelDir("qwen35-tiny"), path);
    const h = await readGgufHeader(path);
    const meta = (k: string) => h.metadata.get(`qwen35.${k}`);
    assertEquals(h.metadata.get("general.architecture"), "qwen35");
    assertEquals(
      ["ssm.conv_kernel", "ssm.state_size", "ssm.group_count", "ssm.time_step_rank", "ssm.inner_size", "full_attention_interval", "rope.dimension_count"].map(meta),
      [4, 32, 2, 4, 128, 4, 16],
    );
    // The checkpoint's mrope_section padded to 4, as llama.cpp's converter writes it: its
    // IMROPE rotates text tokens by their position only on the pairs these sections cover.
    assertEquals(meta("rope.dimension_sections"), [2, 1, 1, 0]);
    const dims = (n: string) => h.tensors.get(n)?.dims;
    assertEquals(dims("blk.0.attn_qkv.weight"), [128, 256]);
    assertEquals(dims("blk.0.attn_gate.weight"), [128, 128]);
    assertEquals(dims("blk.0.ssm_alpha.weight"), [128, 4]);
    assertEquals(dims("blk.0.ssm_beta.weight"), [128, 4]);
    assertEquals(dims("blk.0.ssm_conv1d.weight"), [4, 256]);
    assertEquals(dims("blk.0.ssm_a"), [4]);
    assertEquals(dims("blk.0.ssm_dt.bias"), [4]);
    assertEquals(dims("blk.0.ssm_norm.weight"), [32]);
    assertEquals(dims("blk.0.ssm_out.weight"), [128, 128]);
    assertEquals(dims("blk.0.post_attention_norm.weight"), [128]);
    assertEquals(dims("blk.3.attn_q.weight"), [128, 512]);
    assertEquals(dims("blk.3.attn_q_norm.weight"), [64]);
    assert(![...h.tensors.keys()].some((n) => n.includes("visual") || n.startsWith("mtp")));
    // Values against the checkpoint: ssm_a = -exp(A_log) with the value heads tiled
    // (2 key heads, 4 value heads: grouped [0 1 2 3] -> tiled [0 2 1 3]), norms as 1 + w.
    const src = await openModel(modelDir("qwen35-tiny"));
    const gg = await openModel(path);
    try {
      const hf = async (n: string) => dequantize(valueDType(src.tensors.get(n)), await src.tensors.read(src.tensors.get(n)));
      const aLog = await hf("model.layers.0.linear_attn.A_log");
      const stored = h.tensors.get("blk.0.ssm_a")!;
      const file = await sys.readFile(path);
      const ssmA = new Float32Array(file.slice(stored.byteOffset, stored.byteOffset + stored.byteLength).buffer);
      assertEquals([...ssmA], [0, 2, 1, 3].map((i) => Math.fround(-Math.exp(aLog[i]))));
      const norm = await hf("model.layers.0.input_layernorm.weight");
      const back = await gg.tensors.read(gg.tensors.get("model.layers.0.input_layernorm.weight"));
      assertEquals([...new Float32Array(back.buffer)], [...norm].map((w) => Math.fround(1 + w)));
      assertEquals(gg.spec.linearAttention?.valueHeadOrder, "tiled");
      assertEquals(gg.spec.normOffset, 0);
    } finally {
      src.tensors.close();
      gg.tensors.close();
    }
  });
});

test("gguf convert gemma3: llama.cpp's keys for the global and local RoPE, and a layout llama.cpp cannot express is refused", async () => {
  await withTempDir(async (dir) => {
    await convertToGguf(modelDir("gemma3-tiny"), `${dir}/g.gguf`);
    const meta = (await readGgufHeader(`${dir}/g.gguf`)).metadata;
    assertEquals(
      ["general.architecture", "gemma3.rope.freq_base", "gemma3.rope.freq_base_swa", "gemma3.rope.scaling.type", "gemma3.rope.scaling.factor", "gemma3.attention.sliding_window"]
        .map((k) => meta.get(k)),
      ["gemma3", 1e6, 1e4, "linear", 8, 16],
    );
    assert(!meta.has("gemma3.attn_logit_softcapping") && !meta.has("gemma3.final_logit_softcapping"));
    // llama.cpp fixes Gemma-3's pattern at 5 sliding : 1 global; another one would run wrong.
    const odd = `${dir}/odd`;
    await sys.mkdir(odd);
    for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${modelDir("gemma3-tiny")}/${f}`, `${odd}/${f}`);
    const config = JSON.parse(await sys.readTextFile(`${modelDir("gemma3-tiny")}/config.json`));
    config.layer_types = ["sliding_attention", "full_attention", ...config.layer_types.slice(2)];
    await sys.writeTextFile(`${odd}/config.json`, JSON.stringify(config));
    const e = await assertRejects(() => convertToGguf(odd, `${dir}/odd.gguf`), CheckpointError);
    assert(e.message.includes("gemma3") && e.message.includes("layer_types"), e.message);
  });
});

test("gguf convert qwen35 from f16: the DeltaNet projections stay F16 (only their value heads are reordered), as llama.cpp's converter writes them", async () => {
  await withTempDir(async (dir) => {
    const raw = JSON.parse(await sys.readTextFile(`${modelDir("qwen35-tiny")}/config.json`));
    const config = { ...raw.text_config, architectures: ["Qwen3_5ForCausalLM"] };
    await writeSyntheticCheckpoint(`${dir}/ck`, config, { dtype: "F16" });
    await convertToGguf(`${dir}/ck`, `${dir}/f16.gguf`);
    const h = await readGgufHeader(`${dir}/f16.gguf`);
    const type = (n: string) => h.tensors.get(n)?.type.name;
    assertEquals(["attn_qkv.weight", "attn_gate.weight", "ssm_alpha.weight", "ssm_beta.weight", "ssm_out.weight"].map((n) => type(`blk.0.${n}`)), Array(5).fill("F16"));
    // Transformed values and vectors stay F32.
    assertEquals(["ssm_a", "ssm_dt.bias", "ssm_conv1d.weight", "attn_norm.weight"].map((n) => type(`blk.0.${n}`)), Array(4).fill("F32"));
    // The stored values are the checkpoint's with the value heads tiled (2 key, 4 value heads).
    const src = await openModel(`${dir}/ck`);
    const gg = await openModel(`${dir}/f16.gguf`);
    try {
      for (const n of ["in_proj_qkv", "in_proj_z", "in_proj_a", "out_proj"].map((p) => `model.layers.0.linear_attn.${p}.weight`)) {
        const info = src.tensors.get(n);
        const want = qwen35GgufValues(src.spec, n, dequantize(valueDType(info), await src.tensors.read(info)), info.shape);
        const got = gg.tensors.get(n);
        assertEquals(valueDType(got), "F16", n);
        assertEquals([...dequantize("F16", await gg.tensors.read(got))], [...want], n);
      }
    } finally {
      src.tensors.close();
      gg.tensors.close();
    }
    // And the file runs: the checkpoint's logits (the tiled order sums out_proj in another order).
    const opts = { maxTokens: 32, maxLogitRows: 32, maxSeqs: 1, blockSize: 16, numBlocks: 4, kvDtype: "f32" } as const;
    const a = await ModelRunner.load(`${dir}/ck`, opts);
    const b = await ModelRunner.load(`${dir}/f16.gguf`, { ...opts, gpu: a.gpu });
    try {
      const ids = [1, 5, 9, 44, 7, 100, 3, 250];
      const want = await promptLogits(a, ids);
      const e = maxAbsDiff(await promptLogits(b, ids), want) / maxAbs(want);
      assert(e <= 1e-5, `f16 qwen35 GGUF vs checkpoint: ${e}`);
    } finally {
      b.close();
      a.close();
      a.gpu.device.destroy();
    }
  });
});

/** A fixture copied to `dir` with its config.json edited. */
async function editedFixture(name: string, dir: string, edit: (config: Record<string, unknown>) => void): Promise<string> {
  const out = `${dir}/${name}-edited`;
  await sys.mkdir(out);
  for (const f of ["model.safetensors", "tokenizer.json", "tokenizer_config.json"]) await sys.copyFile(`${modelDir(name)}/${f}`, `${out}/${f}`);
  const config = JSON.parse(await sys.readTextFile(`${modelDir(name)}/config.json`));
  edit(config);
  await sys.writeTextFile(`${out}/config.json`, JSON.stringify(config));
  return out;
}

/** The stored bytes of tensor `name` of the GGUF file `bytes` (its header `h`). */
function storedBytes(file: Uint8Array, h: Awaited<ReturnType<typeof readGgufHeader>>, name: string): Uint8Array {
  const t = h.tensors.get(name)!;
  return file.slice(t.byteOffset, t.byteOffset + t.byteLength);
}

test("gguf: convert writes qwen3-moe-tiny as llama.cpp's qwen3moe (expert metadata, router, stacked experts as stored)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/q3moe.gguf`;
    const conv = await convertToGguf(modelDir("qwen3-moe-tiny"), path);
    const h = await readGgufHeader(path);
    const meta = (k: string) => h.metadata.get(`qwen3moe.${k}`);
    assertEquals(h.metadata.get("general.architecture"), "qwen3moe");
    assertEquals(["expert_count", "expert_used_count", "expert_feed_forward_length", "feed_forward_length", "block_count"].map(meta), [8, 2, 64, 256, 3]);
    // norm_topk_prob is llama.cpp's qwen3moe default: no key, and no sliding window.
    assert(!h.metadata.has("qwen3moe.expert_weights_norm") && !h.metadata.has("qwen3moe.attention.sliding_window"));
    const t = (n: string) => h.tensors.get(n);
    assertEquals(t("blk.2.ffn_gate_inp.weight")?.dims, [128, 8]);
    for (const n of ["gate", "up"]) assertEquals([t(`blk.0.ffn_${n}_exps.weight`)?.dims, t(`blk.0.ffn_${n}_exps.weight`)?.type.name], [[128, 64, 8], "BF16"]);
    assertEquals([t("blk.0.ffn_down_exps.weight")?.dims, t("blk.0.ffn_down_exps.weight")?.type.name], [[64, 128, 8], "BF16"]);
    for (const n of ["ffn_norm.weight", "attn_q_norm.weight", "attn_k_norm.weight"]) assert(t(`blk.1.${n}`), n);
    assert(![...h.tensors.keys()].some((n) => n.includes("experts") || /ffn_(gate|up|down)\.weight$/.test(n)));
    // Embedding, output, output norm + per layer 2 norms, 4 attention, 2 q/k norms, router, 3 stacks.
    assertEquals(conv.tensors, 3 + 3 * 12);
    // Slice e of each stack is expert e's matrix, byte for byte.
    const file = await sys.readFile(path);
    const src = await openModel(modelDir("qwen3-moe-tiny"));
    try {
      for (const [gg, hf] of [["gate", "gate_proj"], ["up", "up_proj"], ["down", "down_proj"]]) {
        const stack = storedBytes(file, h, `blk.1.ffn_${gg}_exps.weight`);
        const per = stack.length / 8;
        for (const e of [0, 5, 7]) {
          const want = await src.tensors.read(src.tensors.get(`model.layers.1.mlp.experts.${e}.${hf}.weight`));
          assertEquals(stack.subarray(e * per, (e + 1) * per), want, `${gg} expert ${e}`);
        }
      }
    } finally {
      src.tensors.close();
    }
    // Read back: the MoE spec of the checkpoint.
    const gg = await openModel(path);
    gg.tensors.close();
    assertEquals(gg.spec.architecture, "qwen3_moe");
    assertEquals(
      { ...gg.spec.moe },
      { router: "softmax_topk", experts: "qwen", numExperts: 8, topK: 2, normTopkProb: true, expertIntermediateSize: 64, sparseLayers: [true, true, true] },
    );
  });
});

test("gguf: convert writes gpt-oss-tiny as llama.cpp's gpt-oss (gate/up split, biases, sinks, sliding window, YaRN keys)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/oss.gguf`;
    await convertToGguf(modelDir("gpt-oss-tiny"), path);
    const h = await readGgufHeader(path);
    const meta = (k: string) => h.metadata.get(`gpt-oss.${k}`);
    assertEquals(h.metadata.get("general.architecture"), "gpt-oss");
    assertEquals(
      ["expert_count", "expert_used_count", "expert_feed_forward_length", "attention.sliding_window", "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length", "rope.scaling.yarn_beta_fast", "rope.scaling.yarn_beta_slow", "rope.freq_base"].map(meta),
      [8, 2, 64, 16, "yarn", 32, 64, 32, 1, 150000],
    );
    const dims = (n: string) => [h.tensors.get(n)?.dims, h.tensors.get(n)?.type.name];
    assertEquals(dims("blk.3.attn_sinks.weight"), [[4], "F32"]);
    assertEquals(dims("blk.0.ffn_gate_inp.weight"), [[128, 8], "F32"]);
    assertEquals(dims("blk.0.ffn_gate_inp.bias"), [[8], "F32"]);
    assertEquals(dims("blk.0.ffn_gate_exps.weight"), [[128, 64, 8], "BF16"]);
    assertEquals(dims("blk.0.ffn_up_exps.weight"), [[128, 64, 8], "BF16"]);
    assertEquals(dims("blk.0.ffn_down_exps.weight"), [[64, 128, 8], "BF16"]);
    assertEquals(dims("blk.0.ffn_gate_exps.bias"), [[64, 8], "F32"]);
    assertEquals(dims("blk.0.ffn_up_exps.bias"), [[64, 8], "F32"]);
    assertEquals(dims("blk.0.ffn_down_exps.bias"), [[128, 8], "F32"]);
    assertEquals(dims("blk.0.post_attention_norm.weight"), [[128], "F32"]);
    assert(!h.tensors.has("blk.0.ffn_norm.weight") && h.tensors.has("blk.0.attn_q.bias") && h.tensors.has("blk.0.attn_output.bias"));
    // gate_up_proj [E, H, 2I] is x @ W with gate/up columns interleaved: the file holds
    // Linear rows, gate[e][j][h] = gate_up[e][h][2j], up[e][j][h] = gate_up[e][h][2j + 1].
    const file = await sys.readFile(path);
    const src = await openModel(modelDir("gpt-oss-tiny"));
    try {
      const hf = async (n: string) => dequantize(valueDType(src.tensors.get(n)), await src.tensors.read(src.tensors.get(n)));
      const gu = await hf("model.layers.2.mlp.experts.gate_up_proj");
      const down = await hf("model.layers.2.mlp.experts.down_proj");
      const gate = dequantize("BF16", storedBytes(file, h, "blk.2.ffn_gate_exps.weight"));
      const up = dequantize("BF16", storedBytes(file, h, "blk.2.ffn_up_exps.weight"));
      const downStored = dequantize("BF16", storedBytes(file, h, "blk.2.ffn_down_exps.weight"));
      const [E, H, I] = [8, 128, 64];
      for (const [e, j, x] of [[0, 0, 0], [3, 17, 99], [7, 63, 127]]) {
        assertEquals(gate[(e * I + j) * H + x], gu[(e * H + x) * 2 * I + 2 * j]);
        assertEquals(up[(e * I + j) * H + x], gu[(e * H + x) * 2 * I + 2 * j + 1]);
        assertEquals(downStored[(e * H + x) * I + j], down[(e * I + j) * H + x]);
      }
      const bias = await hf("model.layers.2.mlp.experts.gate_up_proj_bias");
      const upBias = new Float32Array(storedBytes(file, h, "blk.2.ffn_up_exps.bias").buffer);
      assertEquals([...upBias.subarray(5 * I, 6 * I)], Array.from({ length: I }, (_, j) => bias[5 * 2 * I + 2 * j + 1]));
      assertEquals(E * I * H, gate.length);
    } finally {
      src.tensors.close();
    }
    const gg = await openModel(path);
    gg.tensors.close();
    assertEquals([gg.spec.architecture, gg.spec.attnSinks, gg.spec.moe?.router, gg.spec.moe?.mxfp4], ["gpt_oss", true, "topk_softmax", false]);
    assertEquals(gg.spec.layerWindows, [16, null, 16, null]);
    assertEquals({ ...gg.spec.rope.yarn }, { betaFast: 32, betaSlow: 1, truncate: false, attentionFactor: 0.1 * Math.log(32) + 1 });
  });
});

test("gguf: gpt-oss MXFP4 experts become GGML MXFP4 blocks (scale byte, then value j low and j + 16 high) holding the hub's values", async () => {
  // One block by hand: ggml byte 0 = 0x21 holds value 0 (code 1: 0.5) and value 16 (code 2: 1).
  const block = new Uint8Array(17);
  block[0] = 128; // 2^(128 - 127) = 2
  block[1] = 0x21;
  block[16] = 0xf7; // value 15: code 7 (6), value 31: code 15 (-6)
  const v = dequantize("MXFP4", block);
  assertEquals([v[0], v[16], v[15], v[31], v[1]], [1, 2, 12, -12, 0]);
  await withTempDir(async (dir) => {
    const path = `${dir}/mx.gguf`;
    await convertToGguf(modelDir("gpt-oss-mxfp4-tiny"), path);
    const h = await readGgufHeader(path);
    for (const n of ["gate", "up"]) assertEquals([h.tensors.get(`blk.1.ffn_${n}_exps.weight`)?.dims, h.tensors.get(`blk.1.ffn_${n}_exps.weight`)?.type.name], [[128, 64, 8], "MXFP4"]);
    assertEquals([h.tensors.get("blk.1.ffn_down_exps.weight")?.dims, h.tensors.get("blk.1.ffn_down_exps.weight")?.type.name], [[64, 128, 8], "MXFP4"]);
    assertEquals(h.tensors.get("blk.1.ffn_gate_exps.weight")?.byteLength, 8 * 64 * (128 / 32) * 17);
    // The hub's MXFP4 (byte j: values 2j low, 2j + 1 high), decoded here independently.
    const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
    const src = await openModel(modelDir("gpt-oss-mxfp4-tiny"));
    const file = await sys.readFile(path);
    try {
      const raw = async (n: string) => await src.tensors.read(src.tensors.get(`model.layers.1.mlp.experts.${n}`));
      const hub = (blocks: Uint8Array, scales: Uint8Array, row: number, k: number, K: number) =>
        E2M1[(blocks[row * K / 2 + (k >> 1)] >> (4 * (k & 1))) & 15] * 2 ** (scales[row * K / 32 + (k >> 5)] - 127);
      const [blocks, scales] = [await raw("gate_up_proj_blocks"), await raw("gate_up_proj_scales")];
      const gate = dequantize("MXFP4", storedBytes(file, h, "blk.1.ffn_gate_exps.weight"));
      const up = dequantize("MXFP4", storedBytes(file, h, "blk.1.ffn_up_exps.weight"));
      let nonzero = 0;
      for (let e = 0; e < 8; e++) {
        for (let j = 0; j < 64; j++) {
          for (let k = 0; k < 128; k++) {
            const g = gate[(e * 64 + j) * 128 + k];
            assertEquals(g, hub(blocks, scales, e * 128 + 2 * j, k, 128));
            assertEquals(up[(e * 64 + j) * 128 + k], hub(blocks, scales, e * 128 + 2 * j + 1, k, 128));
            if (g !== 0) nonzero++;
          }
        }
      }
      assert(nonzero > 1000, `only ${nonzero} nonzero gate weights`);
      const [db, ds] = [await raw("down_proj_blocks"), await raw("down_proj_scales")];
      const down = dequantize("MXFP4", storedBytes(file, h, "blk.1.ffn_down_exps.weight"));
      for (const [row, k] of [[0, 0], [77, 31], [1023, 63]]) assertEquals(down[row * 64 + k], hub(db, ds, row, k, 64));
    } finally {
      src.tensors.close();
    }
    const gg = await openModel(path);
    try {
      assertEquals(gg.spec.moe?.mxfp4, true);
      // Read back, the hub's blocks and scales are the checkpoint's bytes.
      const src2 = await openModel(modelDir("gpt-oss-mxfp4-tiny"));
      try {
        for (const n of ["gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"]) {
          const name = `model.layers.3.mlp.experts.${n}`;
          assertEquals(await gg.tensors.read(gg.tensors.get(name)), await src2.tensors.read(src2.tensors.get(name)), n);
        }
      } finally {
        src2.tensors.close();
      }
    } finally {
      gg.tensors.close();
    }
  });
});

test("gguf: convert --quantization writes float experts as Q8_0 / Q4_0 blocks of each expert's Linear rows (llama.cpp's layout), read back as those blocks; MXFP4 stays MXFP4", async () => {
  const [E, H, I] = [8, 128, 64];
  const quantize = (type: "Q8_0" | "Q4_0", v: Float32Array) => (type === "Q8_0" ? quantizeQ8_0(v) : quantizeQ4_0(v));
  const blockBytes = { Q8_0: 34, Q4_0: 18 } as const;
  await withTempDir(async (dir) => {
    for (const [quantization, type] of [["q8_0", "Q8_0"], ["q4_0", "Q4_0"]] as const) {
      for (const name of ["qwen3-moe-tiny", "gpt-oss-tiny"]) {
        const path = `${dir}/${name}-${quantization}.gguf`;
        await convertToGguf(modelDir(name), path, { quantization });
        const h = await readGgufHeader(path);
        const file = await sys.readFile(path);
        for (const [gg, dims] of [["gate", [H, I, E]], ["up", [H, I, E]], ["down", [I, H, E]]] as const) {
          const t = h.tensors.get(`blk.1.ffn_${gg}_exps.weight`)!;
          assertEquals([t.dims, t.type.name, t.byteLength], [dims, type, (E * dims[1] * dims[0] / 32) * blockBytes[type]], `${name} ${gg}`);
        }
        const src = await openModel(modelDir(name));
        const gg = await openModel(path);
        try {
          const hf = async (n: string) => dequantize(valueDType(src.tensors.get(n)), await src.tensors.read(src.tensors.get(n)));
          const blocksOf = (n: string) => collectChunks(gg.tensors.get(n).blocks!.byteLength, gg.tensors.readBlocks!(gg.tensors.get(n)));
          const p = "model.layers.1.mlp.experts";
          // Independently built Linear rows [E][rows][K], quantized row by row (llama.cpp's quantize_row_*_ref).
          let gate: Float32Array, up: Float32Array, down: Float32Array;
          if (name === "qwen3-moe-tiny") {
            const stack = async (n: string, size: number) => {
              const out = new Float32Array(E * size);
              for (let e = 0; e < E; e++) out.set(await hf(`${p}.${e}.${n}.weight`), e * size);
              return out;
            };
            [gate, up, down] = [await stack("gate_proj", I * H), await stack("up_proj", I * H), await stack("down_proj", H * I)];
          } else {
            const gu = await hf(`${p}.gate_up_proj`);
            const d = await hf(`${p}.down_proj`);
            gate = new Float32Array(E * I * H);
            up = new Float32Array(E * I * H);
            down = new Float32Array(E * H * I);
            for (let e = 0; e < E; e++) {
              for (let j = 0; j < I; j++) {
                for (let x = 0; x < H; x++) {
                  gate[(e * I + j) * H + x] = gu[(e * H + x) * 2 * I + 2 * j];
                  up[(e * I + j) * H + x] = gu[(e * H + x) * 2 * I + 2 * j + 1];
                  down[(e * H + x) * I + j] = d[(e * I + j) * H + x];
                }
              }
            }
          }
          const want = { gate: quantize(type, gate), up: quantize(type, up), down: quantize(type, down) };
          for (const k of ["gate", "up", "down"] as const) assertEquals(storedBytes(file, h, `blk.1.ffn_${k}_exps.weight`), want[k], `${name} ${type} ${k} blocks`);
          // The reader serves the file's blocks as they are: per expert (Qwen), or gpt-oss's
          // Linear rows with gate/up interleaved again; values are the blocks dequantized.
          if (name === "qwen3-moe-tiny") {
            const per = (I * H / 32) * blockBytes[type];
            const info = gg.tensors.get(`${p}.5.up_proj.weight`);
            assertEquals([info.blocks?.type, info.shape], [type, [I, H]]);
            assertEquals(await blocksOf(`${p}.5.up_proj.weight`), want.up.slice(5 * per, 6 * per));
            assertEquals(await gg.tensors.read(info), new Uint8Array(dequantize(type, want.up.slice(5 * per, 6 * per)).buffer));
          } else {
            const row = (H / 32) * blockBytes[type];
            const gu = await blocksOf(`${p}.gate_up_proj`);
            for (const [e, j] of [[0, 0], [3, 17], [7, 63]]) {
              const r = e * I + j;
              assertEquals(gu.slice((2 * r) * row, (2 * r + 1) * row), want.gate.slice(r * row, (r + 1) * row));
              assertEquals(gu.slice((2 * r + 1) * row, (2 * r + 2) * row), want.up.slice(r * row, (r + 1) * row));
            }
            assertEquals(await blocksOf(`${p}.down_proj`), want.down);
            const values = dequantize("F32", await gg.tensors.read(gg.tensors.get(`${p}.gate_up_proj`)));
            const gateValues = dequantize(type, want.gate);
            assertEquals(values[(3 * H + 99) * 2 * I + 2 * 17], gateValues[(3 * I + 17) * H + 99]);
          }
        } finally {
          src.tensors.close();
          gg.tensors.close();
        }
      }
      // MXFP4 experts are already 4.25 bits a weight: they stay MXFP4.
      const mx = `${dir}/mx-${quantization}.gguf`;
      await convertToGguf(modelDir("gpt-oss-mxfp4-tiny"), mx, { quantization });
      const h = await readGgufHeader(mx);
      assertEquals(["gate", "up", "down"].map((k) => h.tensors.get(`blk.0.ffn_${k}_exps.weight`)?.type.name), ["MXFP4", "MXFP4", "MXFP4"]);
    }
  });
});

test("gguf MoE: bad expert metadata, quantized experts and layouts llama.cpp cannot express are named CheckpointErrors", async () => {
  await withTempDir(async (dir) => {
    await convertToGguf(modelDir("qwen3-moe-tiny"), `${dir}/q.gguf`);
    await convertToGguf(modelDir("gpt-oss-tiny"), `${dir}/o.gguf`);
    const q = await readGgufHeader(`${dir}/q.gguf`);
    const o = await readGgufHeader(`${dir}/o.gguf`);
    const fails = (header: typeof q, edit: (m: Map<string, unknown>, t: typeof q.tensors) => void, pattern: RegExp) => {
      const metadata = new Map(header.metadata);
      const tensors = new Map(header.tensors);
      edit(metadata as Map<string, unknown>, tensors);
      const e = assertThrows(() => ggufModelSpec({ ...header, metadata: metadata as typeof header.metadata, tensors }), CheckpointError);
      assert(pattern.test(e.message), e.message);
    };
    fails(q, (m) => m.delete("qwen3moe.expert_count"), /missing required metadata qwen3moe\.expert_count/);
    fails(q, (m) => m.delete("qwen3moe.expert_feed_forward_length"), /missing required metadata qwen3moe\.expert_feed_forward_length/);
    fails(q, (m) => m.set("qwen3moe.expert_count", 4), /tensor blk\.0\.ffn_gate_inp\.weight has shape \[128, 8\].*qwen3moe\.expert_count/);
    fails(q, (m) => m.set("qwen3moe.expert_used_count", 9), /expert_used_count \(9\) exceeds/);
    fails(q, (m) => m.set("qwen3moe.expert_count", 100000), /at most 256 experts/);
    fails(q, (m) => m.set("qwen3moe.expert_feed_forward_length", 32), /ffn_gate_exps\.weight has shape \[128, 64, 8\]/);
    fails(q, (_, t) => t.delete("blk.1.ffn_up_exps.weight"), /missing tensor blk\.1\.ffn_up_exps\.weight/);
    fails(q, (m) => m.set("qwen3moe.expert_weights_norm", 3), /expert_weights_norm must be true or false/);
    // Block experts (Q8_0, Q4_0, and K-quants transcoded at load) may mix types per stack, as
    // a Q4_K_M file's Q4_K gate/up and Q6_K down do; gpt-oss's gate and up share one type.
    const allExperts = (t: typeof q.tensors, type: (name: string) => "Q8_0" | "Q4_0" | "Q4_K" | "Q6_K") => {
      for (const [name, info] of t) if (/ffn_(gate|up|down)_exps\.weight$/.test(name)) t.set(name, { ...info, type: GGML_TYPES[type(name)] });
    };
    const qkm = (n: string) => (n.includes("ffn_down") ? "Q6_K" : "Q4_K");
    for (const [h, arch] of [[q, "qwen3_moe"], [o, "gpt_oss"]] as const) {
      for (const type of ["Q8_0", "Q4_0", "Q4_K", "Q6_K", qkm] as const) {
        const tensors = new Map(h.tensors);
        allExperts(tensors, typeof type === "string" ? () => type : type);
        assertEquals(ggufModelSpec({ ...h, tensors }).architecture, arch);
      }
    }
    fails(q, (_, t) => t.set("blk.2.ffn_down_exps.weight", { ...t.get("blk.2.ffn_down_exps.weight")!, type: GGML_TYPES.Q8_0 }), /blk\.2\.ffn_down_exps\.weight is Q8_0, but other experts are \w+: experts must be all MXFP4, all blocks \(Q8_0, Q4_0, Q4_K, Q6_K\) or all plain floats/);
    {
      // Qwen3-MoE's gate and up may differ (their stack runs as Q8X).
      const tensors = new Map(q.tensors);
      allExperts(tensors, (n) => (n.startsWith("blk.1.ffn_up") ? "Q6_K" : n.includes("ffn_down") ? "Q8_0" : "Q4_K"));
      assertEquals(ggufModelSpec({ ...q, tensors }).architecture, "qwen3_moe");
    }
    fails(o, (_, t) => allExperts(t, (n) => (n.startsWith("blk.3.ffn_up") ? "Q4_0" : "Q8_0")), /blk\.3\.ffn_up_exps\.weight is Q4_0, but blk\.3\.ffn_gate_exps\.weight is Q8_0: gpt-oss gate and up experts must share a type/);
    fails(q, (_, t) => t.set("blk.0.ffn_gate_exps.weight", { ...t.get("blk.0.ffn_gate_exps.weight")!, type: GGML_TYPES.MXFP4 }), /only gpt-oss experts run as MXFP4/);
    fails(o, (_, t) => t.set("blk.3.ffn_up_exps.weight", { ...t.get("blk.3.ffn_up_exps.weight")!, type: GGML_TYPES.MXFP4 }), /experts must be all MXFP4, all blocks \(Q8_0, Q4_0, Q4_K, Q6_K\) or all plain floats/);
    fails(o, (m) => m.delete("gpt-oss.attention.sliding_window"), /missing required metadata gpt-oss\.attention\.sliding_window/);
    fails(o, (_, t) => t.delete("blk.0.attn_sinks.weight"), /missing tensor blk\.0\.attn_sinks\.weight/);
    fails(o, (_, t) => t.delete("blk.2.ffn_gate_exps.bias"), /missing tensor blk\.2\.ffn_gate_exps\.bias/);
    fails(o, (m) => m.set("gpt-oss.rope.scaling.type", "longrope"), /unsupported gpt-oss\.rope\.scaling\.type "longrope" \(supported: none, linear, yarn\)/);
    fails(o, (m) => m.set("gpt-oss.rope.scaling.yarn_attn_factor", 2), /only the default YaRN attention factor/);
    // The converter refuses what llama.cpp's qwen3moe / gpt-oss would run differently.
    const refused = async (name: string, edit: (c: Record<string, unknown>) => void, pattern: RegExp) => {
      const d = await editedFixture(name, dir, edit);
      const e = await assertRejects(() => convertToGguf(d, `${d}/m.gguf`), CheckpointError);
      assert(pattern.test(e.message), e.message);
      await sys.remove(d, { recursive: true });
    };
    await refused("qwen3-moe-tiny", (c) => (c.norm_topk_prob = false), /qwen3moe renormalizes the top-k routing weights/);
    await refused("qwen3-moe-tiny", (c) => (c.mlp_only_layers = [1]), /qwen3moe has experts in every layer/);
    await refused("gpt-oss-tiny", (c) => ((c.rope_parameters as Record<string, unknown>).truncate = true), /gpt-oss runs YaRN untruncated/);
    await refused("gpt-oss-tiny", (c) => (c.layer_types = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]), /gpt-oss slides on even layers/);
  });
});
