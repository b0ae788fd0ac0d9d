/**
 * Quantized matrices for the uploader (src/model/quant/quant_matrix.ts): fused q|k|v blocks
 * read through `readBlocks` are the load-time quantizer's blocks of the stacked tensors;
 * dense or mixed tensors are refused (the caller uploads floats); parts split by whole column
 * blocks pack the same blocks as the whole matrix (CPU only); matrices all Q4_K become Q4X,
 * Q6_K and fused matrices mixing block types become Q8X (the transcoded blocks of each tensor,
 * stacked).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { modelDir } from "./helpers/reference.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import { quantizeSource } from "../src/model/quant/quantized_source.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { quantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { quantizeQ4_0 } from "../src/model/quant/q4_0.ts";
import {
  packQuantParts,
  quantBlockBytes,
  readQuantMatrix,
} from "../src/model/quant/quant_matrix.ts";
import { packQuantColumnBlocks } from "../src/model/quant/pack_c8.ts";
import { packQuantRows } from "../src/model/quant/pack_rows.ts";
import { gluColumns, ropeColumns } from "../src/model/weight_layout.ts";
import type { SourceTensor, TensorSource } from "../src/model/tensor_source.ts";
import type { QuantType } from "../src/model/quant/ggml_types.ts";
import { transcodeToQ8X } from "../src/model/quant/q8x.ts";
import { transcodeQ4KToQ4X } from "../src/model/quant/q4x.ts";
import { randomQ4K, randomQ6K } from "./helpers/k_quant_blocks.ts";
import { Rng } from "../bench/rng.ts";

/** An in-memory source of block tensors (what a GGUF file's readBlocks yields). */
function blockSource(tensors: Record<string, { type: QuantType; rows: number; k: number; data: Uint8Array }>): TensorSource {
  const info = (name: string): SourceTensor => {
    const t = tensors[name];
    return {
      name,
      dtype: "F32",
      shape: [t.rows, t.k],
      file: "mem",
      byteOffset: 0,
      byteLength: t.rows * t.k * 4,
      blocks: { type: t.type, rowBytes: t.data.length / t.rows, byteLength: t.data.length },
    };
  };
  return {
    source: "mem",
    has: (n) => n in tensors,
    names: () => Object.keys(tensors),
    get: info,
    readChunks: () => { throw new Error("not used"); },
    read: () => { throw new Error("not used"); },
    // Two chunks, to exercise the stitching.
    async *readBlocks(i) {
      const d = tensors[i.name].data;
      const half = (tensors[i.name].rows >> 1) * (d.length / tensors[i.name].rows);
      yield { offset: 0, bytes: d.slice(0, half) };
      yield { offset: half, bytes: d.slice(half) };
    },
    close() {},
  };
}

const QKV = ["q_proj", "k_proj", "v_proj"].map((p) => `model.layers.1.self_attn.${p}.weight`);

test("quant matrix: fused q|k|v blocks are the load-time quantizer's blocks of the stacked tensors", async () => {
  const index = await openCheckpointTensors(modelDir("llama-tiny"));
  try {
    for (
      const [quantization, quantize] of [["q8_0", quantizeQ8_0], ["q4_0", quantizeQ4_0]] as const
    ) {
      const source = quantizeSource(index, quantization);
      const m = await readQuantMatrix(source, QKV);
      assert(m, `${quantization}: no quantized matrix`);
      const parts = await Promise.all(
        QKV.map(async (n) => dequantize("BF16", await index.read(index.get(n)))),
      );
      const stacked = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const p of parts) stacked.set(p, (at += p.length) - p.length);
      const want = quantize(stacked);
      assertEquals(m.type, quantization === "q8_0" ? "Q8_0" : "Q4_0");
      assertEquals([m.rows, m.k], [stacked.length / 128, 128]);
      assert(
        m.data.length === want.length && m.data.every((b, i) => b === want[i]),
        `${quantization}: blocks differ`,
      );
    }
    // Dense tensors (no load-time quantization) and non-matrices are the caller's to upload.
    assertEquals(await readQuantMatrix(index, QKV), null);
    assertEquals(
      await readQuantMatrix(quantizeSource(index, "q8_0"), ["model.embed_tokens.weight"]),
      null,
    );
  } finally {
    index.close();
  }
});

test("quant matrix: parts of whole column blocks pack the whole matrix's blocks (both layouts)", async () => {
  const index = await openCheckpointTensors(modelDir("llama-tiny"));
  try {
    const source = quantizeSource(index, "q4_0");
    const m = (await readQuantMatrix(source, QKV))!;
    const gu = (await readQuantMatrix(
      source,
      ["gate_proj", "up_proj"].map((p) => `model.layers.0.mlp.${p}.weight`),
    ))!;
    for (const [matrix, columns] of [[m, ropeColumns(4, 2, 32)], [gu, gluColumns(352)]] as const) {
      const blocks = columns.length / 8;
      const block = quantBlockBytes(matrix.type, matrix.k, "column_blocks");
      // Column blocks: the parts' words are the whole layout's, cut at block boundaries.
      const whole = packQuantColumnBlocks(matrix, columns).data;
      assertEquals(whole.byteLength, blocks * block);
      const parts = packQuantParts(matrix, columns, "column_blocks", 3 * block + 16);
      assertEquals(
        parts.map((p) => p.blocks).reduce((a, b) => a + b),
        blocks,
      );
      assert(
        parts.every((p) => p.blocks <= 3 && p.packed.data.byteLength <= 3 * block),
        "part too large",
      );
      const joined = new Uint32Array(whole.length);
      let at = 0;
      for (const p of parts) {
        assertEquals(p.blockStart * block / 4, at);
        joined.set(p.packed.data, at);
        at += p.packed.data.length;
      }
      assert(joined.every((w, i) => w === whole[i]), "column-block parts differ from the whole");
      // Rows: each part is the rows layout of its own columns.
      const rowParts = packQuantParts(
        matrix,
        columns,
        "rows",
        5 * quantBlockBytes(matrix.type, matrix.k, "rows") + 16,
      );
      for (const p of rowParts) {
        const own =
          packQuantRows(matrix, columns.subarray(8 * p.blockStart, 8 * (p.blockStart + p.blocks)))
            .data;
        assert(
          p.blocks <= 5 && own.every((w, i) => w === p.packed.data[i]),
          `rows part at ${p.blockStart}`,
        );
      }
    }
  } finally {
    index.close();
  }
});

test("quant matrix: all-Q4_K matrices become Q4X, Q6_K and mixed block types Q8X, each tensor transcoded and stacked (parts in both layouts)", async () => {
  const rng = new Rng(9);
  const k = 512;
  const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  const tensors = {
    q: { type: "Q4_K", rows: 24, k, data: randomQ4K(rng, 24 * 2) },
    k: { type: "Q4_K", rows: 8, k, data: randomQ4K(rng, 8 * 2) },
    v: { type: "Q6_K", rows: 8, k, data: randomQ6K(rng, 8 * 2) },
    a: { type: "Q8_0", rows: 8, k, data: quantizeQ8_0(normal(8 * k)) },
    b: { type: "Q4_0", rows: 8, k, data: quantizeQ4_0(normal(8 * k)) },
  } as const;
  const source = blockSource(tensors);
  const cases: [(keyof typeof tensors)[], string][] = [
    [["q", "k", "v"], "Q8X"],
    [["q", "k"], "Q4X"],
    [["q"], "Q4X"],
    [["v"], "Q8X"],
    [["k", "a"], "Q8X"],
    [["a", "b"], "Q8X"],
    [["a"], "Q8_0"],
  ];
  for (const [names, type] of cases) {
    const m = (await readQuantMatrix(source, names))!;
    assertEquals([m.type, m.k, m.rows], [type, k, names.reduce((s, n) => s + tensors[n].rows, 0)]);
    if (type !== "Q8X" && type !== "Q4X") continue;
    const parts = names.map((n) => {
      const t = tensors[n];
      const blocks = (t.rows * k) / (t.type.endsWith("K") ? 256 : 32);
      return type === "Q4X" ? transcodeQ4KToQ4X(t.data, blocks) : transcodeToQ8X(t.type, t.data, blocks);
    });
    assertEquals([...m.data], parts.flatMap((p) => [...p]), names.join("|"));
    for (const layout of ["column_blocks", "rows"] as const) {
      const block = quantBlockBytes(m.type, k, layout);
      // Both layouts keep the block's bytes: 44 (Q8X) or 24 (Q4X) per 32 values.
      assertEquals(block, 8 * (k / 32) * (type === "Q4X" ? 24 : 44));
      const whole = layout === "rows" ? packQuantRows(m) : packQuantColumnBlocks(m);
      assertEquals(whole.data.byteLength, (m.rows / 8) * block, layout);
      const split = packQuantParts(m, gluColumns(m.rows / 2), layout, 2 * block + 16);
      assertEquals(split.reduce((s, p) => s + p.blocks, 0), m.rows / 8);
      assert(split.every((p) => p.blocks <= 2 && p.packed.data.byteLength <= 2 * block), layout);
    }
  }
});
