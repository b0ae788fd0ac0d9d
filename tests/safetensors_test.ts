/** Safetensors reader: round trips per dtype, chunked reads, shards, the real checkpoints. */
import { test } from "./helpers/test.ts";
import { MODELS_DIR } from "./helpers/fixtures.ts";
import * as sys from "./helpers/platform.ts";
import { CheckpointError } from "../src/model/errors.ts";
import {
  openCheckpointTensors,
  type TensorIndex,
  type TensorInfo,
} from "../src/model/safetensors.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import {
  bf16BitsToF32,
  decodeTensor,
  encodeTensor,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  Rng,
  type SyntheticTensor,
  withTempDir,
  writeSafetensors,
  writeSyntheticCheckpoint,
} from "./helpers/synthetic_checkpoint.ts";

function randomTensor(
  name: string,
  dtype: SyntheticTensor["dtype"],
  shape: number[],
  seed: number,
) {
  const rng = new Rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 3;
  return { name, dtype, shape, data };
}

/** Reads a tensor through readChunks, checking the chunking contract on the way. */
async function readChunked(
  index: TensorIndex,
  info: TensorInfo,
  chunk: number,
): Promise<Uint8Array> {
  const out = new Uint8Array(info.byteLength);
  let expectOffset = 0;
  let chunks = 0;
  for await (const { offset, bytes } of index.readChunks(info, chunk)) {
    assertEquals(offset, expectOffset, "chunks are contiguous");
    assert(bytes.length <= chunk, `chunk of ${bytes.length} exceeds ${chunk}`);
    const last = offset + bytes.length === info.byteLength;
    assert(last || bytes.length % 4 === 0, `non-final chunk of ${bytes.length} bytes`);
    out.set(bytes, offset);
    expectOffset += bytes.length;
    chunks++;
  }
  assertEquals(expectOffset, info.byteLength, "all bytes read");
  assertEquals(chunks, Math.ceil(info.byteLength / Math.max(4, Math.floor(chunk / 4) * 4)));
  return out;
}

test("f16/bf16 encoders round to nearest even", () => {
  // Known bit patterns, ties included.
  assertEquals(f32ToF16Bits(1), 0x3c00);
  assertEquals(f32ToF16Bits(-2), 0xc000);
  assertEquals(f32ToF16Bits(65504), 0x7bff);
  assertEquals(f32ToF16Bits(65520), 0x7c00); // rounds up to inf
  assertEquals(f32ToF16Bits(2 ** -24), 0x0001); // smallest subnormal
  assertEquals(f32ToF16Bits(2 ** -25), 0x0000); // tie with 0 -> even (0)
  assertEquals(f32ToF16Bits(3 * 2 ** -25), 0x0002); // tie 1.5 ulp -> even (2)
  assertEquals(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assertEquals(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assertEquals(f32ToBf16Bits(1), 0x3f80);
  assertEquals(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie -> even
  assertEquals(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie -> even (up)
  assertEquals(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  // Against the platform's f16 rounding where available.
  const f16round = (Math as unknown as { f16round?: (x: number) => number }).f16round;
  if (f16round) {
    const rng = new Rng(7);
    for (let i = 0; i < 20000; i++) {
      const x = rng.normal() * 2 ** Math.floor(rng.next() * 40 - 28);
      assertEquals(f16BitsToF32(f32ToF16Bits(x)), f16round(Math.fround(x)), `f16(${x})`);
    }
  }
});

for (const dtype of ["F32", "F16", "BF16"] as const) {
  test(`safetensors round trip ${dtype} through small chunks`, async () => {
    await withTempDir(async (dir) => {
      const tensors = [
        randomTensor("a", dtype, [3, 5], 1), // odd element count: last chunk is partial
        randomTensor("b.weight", dtype, [7], 2),
        randomTensor("empty", dtype, [0, 4], 3),
        randomTensor("scalar", dtype, [], 4),
      ];
      await writeSafetensors(`${dir}/model.safetensors`, tensors);
      const index = await openCheckpointTensors(dir);
      try {
        assertEquals(index.names().sort(), ["a", "b.weight", "empty", "scalar"]);
        const file = await sys.readFile(`${dir}/model.safetensors`);
        for (const t of tensors) {
          const info = index.get(t.name);
          assertEquals([info.dtype, info.shape, info.file], [
            dtype,
            t.shape,
            `${dir}/model.safetensors`,
          ]);
          const expected = encodeTensor(t.data, dtype);
          assertEquals(info.byteLength, expected.length);
          // byteOffset is absolute within the file.
          assertEquals(file.subarray(info.byteOffset, info.byteOffset + info.byteLength), expected);
          for (const chunk of [4, 6, 12, 1 << 20]) {
            assertEquals(
              await readChunked(index, info, chunk),
              expected,
              `${t.name} chunk ${chunk}`,
            );
          }
          const values = decodeTensor(await index.read(info), dtype);
          assertEquals(values, decodeTensor(expected, dtype));
          if (dtype === "F32") assertEquals(values, t.data);
        }
      } finally {
        index.close();
      }
    });
  });
}

test("safetensors: __metadata__ is not a tensor; get() on a missing name names it", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model.safetensors`, [randomTensor("x", "F32", [2], 1)], {
      metadata: { format: "pt", note: "hello" },
    });
    const index = await openCheckpointTensors(dir);
    assertEquals(index.names(), ["x"]);
    assert(!index.has("__metadata__") && index.has("x"));
    const err = assertThrows(() => index.get("nope.weight"), CheckpointError, "nope.weight");
    assert(err.message.includes(`${dir}/model.safetensors`), err.message);
    index.close();
  });
});

test("safetensors: sharded checkpoint resolves each tensor to its shard", async () => {
  await withTempDir(async (dir) => {
    const written = await writeSyntheticCheckpoint(dir, {}, { sharded: 3, dtype: "BF16" });
    const index = await openCheckpointTensors(dir);
    try {
      assertEquals(index.source, `${dir}/model.safetensors.index.json`);
      assertEquals(index.names().sort(), written.map((t) => t.name).sort());
      const map =
        JSON.parse(await sys.readTextFile(`${dir}/model.safetensors.index.json`)).weight_map;
      assertEquals(new Set(Object.values(map)).size, 3);
      for (const t of written) {
        const info = index.get(t.name);
        assertEquals(info.file, `${dir}/${map[t.name]}`);
        assertEquals(decodeTensor(await readChunked(index, info, 64), "BF16"), t.data, t.name);
      }
    } finally {
      index.close();
    }
  });
});

test("safetensors: relative directory paths resolve to absolute files", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model.safetensors`, [randomTensor("x", "F16", [4], 1)]);
    const cwd = sys.cwd();
    sys.chdir(dir);
    try {
      const index = await openCheckpointTensors("./");
      assertEquals(index.get("x").file, `${await sys.realPath(dir)}/model.safetensors`);
    } finally {
      sys.chdir(cwd);
    }
  });
});

test("safetensors: reads the shared stories260K checkpoint", async () => {
  const index = await openCheckpointTensors(`${MODELS_DIR}stories260K`);
  try {
    const embed = index.get("model.embed_tokens.weight");
    assertEquals([embed.dtype, embed.shape], ["F32", [512, 64]]);
    assert(!embed.file.includes(".."), embed.file);
    // Chunked and whole reads agree on a multi-chunk tensor.
    assertEquals(await readChunked(index, embed, 4096), await index.read(embed));
    const norm = decodeTensor(await index.read(index.get("model.norm.weight")), "F32");
    assertEquals(norm.length, 64);
    assert(norm.every((v) => Number.isFinite(v)) && norm.some((v) => v !== 0));
  } finally {
    index.close();
  }
});

test("safetensors: reading after close fails", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model.safetensors`, [randomTensor("x", "F32", [2], 1)]);
    const index = await openCheckpointTensors(dir);
    const info = index.get("x");
    index.close();
    let failed = false;
    try {
      await index.read(info);
    } catch (err) {
      failed = err instanceof CheckpointError && err.message.includes("closed");
    }
    assert(failed, "read after close should throw");
  });
});

test("safetensors: fused Qwen experts (gate_up_proj [E, 2I, H], down_proj [E, H, I]) read as per-expert Linear tensors; gpt-oss's fused experts pass through", async () => {
  await withTempDir(async (dir) => {
    const [E, I, H] = [3, 4, 6];
    const rng = new Rng(5);
    const values = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const gateUp = values(E * 2 * I * H);
    const down = values(E * H * I);
    const p = "model.language_model.layers.0.mlp";
    await writeSafetensors(`${dir}/model.safetensors`, [
      { name: `${p}.gate.weight`, dtype: "F32", shape: [E, H], data: values(E * H) },
      { name: `${p}.experts.gate_up_proj`, dtype: "BF16", shape: [E, 2 * I, H], data: gateUp },
      { name: `${p}.experts.down_proj`, dtype: "F32", shape: [E, H, I], data: down },
      // gpt-oss: a router, not a gate, so its x @ W experts stay fused.
      { name: "model.language_model.layers.1.mlp.router.weight", dtype: "F32", shape: [E, H], data: values(E * H) },
      { name: "model.language_model.layers.1.mlp.experts.gate_up_proj", dtype: "F32", shape: [E, H, 2 * I], data: values(E * H * 2 * I) },
      { name: "model.language_model.layers.1.mlp.experts.down_proj", dtype: "F32", shape: [E, I, H], data: values(E * I * H) },
    ]);
    const index = await openCheckpointTensors(dir);
    try {
      const q = "model.layers.0.mlp.experts";
      assert(!index.has(`${q}.gate_up_proj`) && !index.has(`${q}.down_proj`));
      const bf = decodeTensor(encodeTensor(gateUp, "BF16"), "BF16");
      for (let e = 0; e < E; e++) {
        const read = async (name: string) => {
          const info = index.get(`${q}.${e}.${name}.weight`);
          return { shape: info.shape, data: decodeTensor(await index.read(info), info.dtype) };
        };
        assertEquals(await read("gate_proj"), { shape: [I, H], data: bf.slice(2 * e * I * H, (2 * e + 1) * I * H) });
        assertEquals(await read("up_proj"), { shape: [I, H], data: bf.slice((2 * e + 1) * I * H, (2 * e + 2) * I * H) });
        assertEquals(await read("down_proj"), { shape: [H, I], data: down.slice(e * H * I, (e + 1) * H * I) });
      }
      assertEquals(index.get("model.layers.1.mlp.experts.gate_up_proj").shape, [E, H, 2 * I]);
      assert(!index.has("model.layers.1.mlp.experts.0.gate_proj.weight"));
    } finally {
      index.close();
    }
  });
});
