/**
 * Quantized matrices for the uploader (src/model/quant/quant_matrix.ts): fused q|k|v blocks
 * read through `readBlocks` are the load-time quantizer's blocks of the stacked tensors;
 * dense or mixed tensors are refused (the caller uploads floats); parts split by whole column
 * blocks pack the same blocks as the whole matrix (CPU only).
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
