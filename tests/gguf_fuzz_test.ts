/**
 * GGUF metadata is untrusted: a few hundred mutants of a converted file (metadata values,
 * missing and added keys, tensor dims, types, offsets and names) each end in a named
 * CheckpointError, or load and run. Validation runs on the header alone (no GPU); only the
 * mutants that pass it get a forward: equal to the original file's logits when the mutant
 * describes the same model, finite otherwise.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { maxAbs, maxAbsDiff, modelDir, promptLogits } from "./helpers/reference.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";
import { type GgufHeader, type GgufMetaValue, parseGgufHeader, readGgufHeader } from "../src/model/gguf/reader.ts";
import { encodeGgufHeader, type GgufTensor, type GgufValue } from "../src/model/gguf/writer.ts";
import { ggufModelSpec } from "../src/model/gguf/spec.ts";
import { GgufTensorSource } from "../src/model/gguf/source.ts";
import { checkTensorShapes, type ModelSpec } from "../src/model/config.ts";
import { CheckpointError } from "../src/model/errors.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import type { GgmlTypeName } from "../src/model/quant/ggml_types.ts";

const MODEL = "llama-tiny";
const PROMPT = [1, 17, 200, 33, 5, 411, 90];
const OPTS = { maxTokens: 32, maxLogitRows: 32, maxSeqs: 1, blockSize: 16, numBlocks: 4, kvDtype: "f32" } as const;

/** A header as the writer takes it; tensor offsets are relative to the data section. */
interface Layout {
  metadata: [string, GgufValue][];
  tensors: (GgufTensor & { offset: number })[];
}

/** The writer's form of a parsed value (integers as u32 or u64, other numbers as f32). */
function valueOf(v: GgufMetaValue): GgufValue {
  if (typeof v === "string") return { type: "string", value: v };
  if (typeof v === "boolean") return { type: "bool", value: v };
  if (typeof v === "number") {
    if (!Number.isInteger(v)) return { type: "f32", value: v };
    if (v < 0) return { type: "i32", value: v };
    return v > 0xffffffff ? { type: "u64", value: v } : { type: "u32", value: v };
  }
  if (typeof v[0] === "string") return { type: "array", itemType: "string", value: v as string[] };
  const nums = v as number[];
  return { type: "array", itemType: nums.every(Number.isInteger) ? "i32" : "f32", value: nums };
}

function layoutOf(h: GgufHeader): Layout {
  return {
    metadata: [...h.metadata].map(([k, v]) => [k, valueOf(v)]),
    tensors: [...h.tensors.values()].map((t) => ({
      name: t.name,
      dims: [...t.dims],
      type: t.type.name as GgmlTypeName,
      offset: t.byteOffset - h.dataOffset,
      bytes: () => new Uint8Array(0),
    })),
  };
}

function clone(l: Layout): Layout {
  return { metadata: l.metadata.map(([k, v]) => [k, v]), tensors: l.tensors.map((t) => ({ ...t, dims: [...t.dims] })) };
}

/** The mutants: each a name and an edit of the original layout. */
function mutants(base: Layout, dataSize: number): [string, (l: Layout) => void][] {
  const out: [string, (l: Layout) => void][] = [];
  const set = (key: string, v: GgufValue) => (l: Layout) => {
    const i = l.metadata.findIndex(([k]) => k === key);
    if (i >= 0) l.metadata[i] = [key, v];
    else l.metadata.push([key, v]);
  };
  const numeric = base.metadata.filter(([k, v]) => !k.startsWith("tokenizer.ggml.") || v.type !== "array")
    .filter(([, v]) => v.type === "u32" || v.type === "f32" || v.type === "i32" || v.type === "u64")
    .map(([k, v]) => [k, Number(v.value)] as const);
  // Keys the converter leaves out whose absence means a default.
  for (const key of ["llama.attention.key_length", "llama.attention.value_length", "llama.rope.dimension_count"]) {
    if (!numeric.some(([k]) => k === key)) numeric.push([key, 32] as const);
  }
  for (const [key, v] of numeric) {
    const values: GgufValue[] = [0, 1, 2, 3, 7, v - 1, v + 1, 2 * v, Math.floor(v / 2), 0xffffffff, 2 ** 31 - 1]
      .filter((x) => x >= 0 && Number.isInteger(x))
      .map((x) => ({ type: "u32", value: x }));
    values.push({ type: "u64", value: 2n ** 53n }, { type: "i32", value: -1 }, { type: "f32", value: 0.5 }, { type: "string", value: "x" });
    values.push({ type: "array", itemType: "u32", value: [v, v + 1, v] }, { type: "array", itemType: "u32", value: [] });
    for (const value of values) out.push([`${key} = ${JSON.stringify(value.value, (_, x) => (typeof x === "bigint" ? `${x}` : x))} (${value.type})`, set(key, value)]);
    out.push([`${key} removed`, (l) => void (l.metadata = l.metadata.filter(([k]) => k !== key))]);
  }
  const tokens = base.metadata.find(([k]) => k === "tokenizer.ggml.tokens")![1] as { value: readonly string[] };
  out.push(["tokenizer.ggml.tokens one more", set("tokenizer.ggml.tokens", { type: "array", itemType: "string", value: [...tokens.value, "extra"] })]);
  out.push(["tokenizer.ggml.tokens one less", set("tokenizer.ggml.tokens", { type: "array", itemType: "string", value: tokens.value.slice(0, -1) })]);
  out.push(["general.architecture = qwen2", set("general.architecture", { type: "string", value: "qwen2" })]);
  out.push(["general.architecture = mamba", set("general.architecture", { type: "string", value: "mamba" })]);
  // Tensor infos: a few of each kind (embedding, norms, q/k/v/o, MLP, output).
  const picked = base.tensors.filter((t) => /^(token_embd|output|output_norm)\.weight$|^blk\.(0|2)\.(attn_q|attn_k|attn_v|attn_norm|ffn_down)\.weight$/.test(t.name));
  const tensor = (name: string, edit: (t: Layout["tensors"][number], l: Layout) => void) => (l: Layout) => edit(l.tensors.find((t) => t.name === name)!, l);
  for (const { name, dims, offset, type } of picked) {
    const dimEdits: number[][] = [[dims[0] * 2, ...dims.slice(1)], [dims[0] + 32, ...dims.slice(1)], [...dims].reverse(), [dims[0]], [...dims, 1], [...dims, 2], dims.map((d) => d * 0 + 1)];
    if (dims.length === 2) dimEdits.push([dims[0], dims[1] + 1], [dims[0], dims[1] - 1], [dims[0] / 2, dims[1] * 2]);
    for (const d of dimEdits) out.push([`${name} dims [${d}]`, tensor(name, (t) => void (t.dims = d))]);
    for (const o of [0, offset + 1, offset + 32, offset - 32, dataSize, dataSize - 32, 2 ** 40]) {
      if (o >= 0 && o !== offset) out.push([`${name} offset ${o}`, tensor(name, (t) => void (t.offset = o))]);
    }
    for (const ty of ["F32", "F16", "BF16", "Q8_0"] as GgmlTypeName[]) {
      if (ty !== type) out.push([`${name} type ${ty}`, tensor(name, (t) => void (t.type = ty))]);
    }
    out.push([`${name} removed`, (l) => void (l.tensors = l.tensors.filter((t) => t.name !== name))]);
    out.push([`${name} renamed blk.7`, tensor(name, (t) => void (t.name = t.name.startsWith("blk.") ? t.name.replace(/^blk\.\d+/, "blk.7") : `blk.7.${t.name}`))]);
  }
  out.push(["every offset 0", (l) => l.tensors.forEach((t) => (t.offset = 0))]);
  out.push(["tensors swap offsets", (l) => ([l.tensors[0].offset, l.tensors[1].offset] = [l.tensors[1].offset, l.tensors[0].offset])]);
  out.push(["blk.2 renamed blk.3", (l) => l.tensors.forEach((t) => (t.name = t.name.replace(/^blk\.2\./, "blk.3.")))]);
  out.push(["blk.2 removed", (l) => void (l.tensors = l.tensors.filter((t) => !t.name.startsWith("blk.2.")))]);
  out.push(["tensor order reversed", (l) => void l.tensors.reverse()]);
  out.push(["metadata order reversed", (l) => void l.metadata.reverse()]);
  return out;
}

/** What openModel does with a header, without a GPU: spec, tensor index, shape check. */
function validate(header: GgufHeader): ModelSpec {
  const spec = ggufModelSpec(header);
  const source = new GgufTensorSource(header, spec.architecture, spec.numHeads, spec.numKvHeads);
  checkTensorShapes(spec, source);
  return spec;
}

/** A model's identity for comparing logits: its spec and where each tensor's bytes are. */
function fingerprint(header: GgufHeader, spec: ModelSpec): string {
  const tensors = [...header.tensors.values()].map((t) => [t.name, t.type.name, t.dims, t.byteOffset - header.dataOffset]).sort();
  return JSON.stringify({ spec, tensors });
}

test("gguf fuzz: every mutant of a converted file is a named CheckpointError or loads and runs", async () => {
  await withTempDir(async (dir) => {
    await convertToGguf(modelDir(MODEL), `${dir}/base.gguf`);
    const file = await sys.readFile(`${dir}/base.gguf`);
    const original = await readGgufHeader(`${dir}/base.gguf`);
    const data = file.subarray(original.dataOffset);
    const base = layoutOf(original);
    const encode = (l: Layout) => encodeGgufHeader({ metadata: l.metadata, tensors: l.tensors, alignment: 32 }).header;
    const baseHeader = parseGgufHeader(encode(base), "base.gguf", encode(base).length + data.length);
    const baseFingerprint = fingerprint(baseHeader, validate(baseHeader));

    const list = mutants(base, data.length);
    assert(list.length >= 300, `only ${list.length} mutants`);
    const passed: { name: string; header: Uint8Array; same: boolean }[] = [];
    const reasons = new Set<string>();
    const t0 = performance.now();
    for (const [name, edit] of list) {
      const layout = clone(base);
      edit(layout);
      let header: Uint8Array;
      try {
        header = encode(layout);
      } catch {
        continue; // not encodable (e.g. a u32 beyond 2^32): no such file can exist
      }
      try {
        const parsed = parseGgufHeader(header, `${name}.gguf`, header.length + data.length);
        const spec = validate(parsed);
        passed.push({ name, header, same: fingerprint(parsed, spec) === baseFingerprint });
      } catch (e) {
        assert(e instanceof CheckpointError, `${name}: ${(e as Error).name}: ${(e as Error).message}`);
        reasons.add(e.reason.replace(/\d+/g, "N"));
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    console.log(`  ${list.length} mutants in ${seconds.toFixed(2)} s: ${list.length - passed.length} refused (${reasons.size} distinct reasons), ${passed.length} pass: ${passed.map((p) => p.name).join("; ")}`);
    assert(seconds < 20, `validation took ${seconds} s`);
    // The defects of issue 19: each of these is refused.
    for (const name of ["llama.block_count = 4294967295 (u32)", "llama.block_count = 2 (u32)", "every offset 0", "llama.rope.dimension_count = 3 (u32)", "llama.context_length = 4294967295 (u32)", "llama.attention.value_length = 1 (u32)", "llama.attention.value_length = 2147483647 (u32)", "tokenizer.ggml.tokens one more"]) {
      assert(list.some(([n]) => n === name), `no mutant ${name}`);
      assert(!passed.some((p) => p.name === name), `${name} passed validation`);
    }

    // The mutants that pass run: the same logits as the original where they describe the same model.
    await sys.writeFile(`${dir}/m.gguf`, file);
    const reference = await ModelRunner.load(`${dir}/m.gguf`, OPTS);
    const gpu = reference.gpu;
    try {
      const want = await promptLogits(reference, PROMPT);
      reference.close();
      // One forward per edited key or kind of tensor edit (the first mutant of each that passes) keeps this
      // to a few loads; all the mutants that describe the original model run once as one.
      const distinct = new Map<string, { name: string; header: Uint8Array; same: boolean }>();
      for (const p of passed) {
        const subject = p.same ? "same" : / (type|dims|offset|removed|renamed)\b/.exec(p.name)?.[1] ?? p.name.split(" ")[0];
        if (!distinct.has(subject)) distinct.set(subject, p);
      }
      console.log(`  forwards: ${[...distinct.values()].map((p) => p.name).join("; ")}`);
      for (const p of distinct.values()) {
        const bytes = new Uint8Array(p.header.length + data.length);
        bytes.set(p.header);
        bytes.set(data, p.header.length);
        await sys.writeFile(`${dir}/m.gguf`, bytes);
        const runner = await ModelRunner.load(`${dir}/m.gguf`, { ...OPTS, gpu });
        try {
          const got = await promptLogits(runner, PROMPT);
          assertEquals(got.length, want.length, p.name);
          assert(got.every(Number.isFinite), `${p.name}: logits not finite`);
          if (p.same) assert(maxAbsDiff(got, want) <= 1e-6 * maxAbs(want), `${p.name}: logits differ from the original's`);
        } finally {
          runner.close();
        }
      }
    } finally {
      gpu.device.destroy();
    }
  });
});
