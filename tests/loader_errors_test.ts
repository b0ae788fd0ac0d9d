/**
 * Broken checkpoints fail with a CheckpointError whose message names the file at fault and
 * the reason, before anything reaches the GPU.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { checkTensorShapes, loadModelSpec } from "../src/model/config.ts";
import { CheckpointError, UnsupportedArchitectureError } from "../src/model/errors.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import {
  type CorruptOptions,
  makeRawSafetensorsBytes,
  type SyntheticTensor,
  withTempDir,
  writeSafetensors,
  writeSyntheticCheckpoint,
} from "./helpers/synthetic_checkpoint.ts";

const TENSORS: SyntheticTensor[] = [
  { name: "a", dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  { name: "b", dtype: "BF16", shape: [4], data: new Float32Array([1, -1, 0.5, 2]) },
];

/** Writes a corrupted model.safetensors and expects opening it to fail with `reason`. */
async function expectBroken(
  corrupt: CorruptOptions,
  ...reason: string[]
): Promise<CheckpointError> {
  return await withTempDir(async (dir) => {
    const file = `${dir}/model.safetensors`;
    await writeSafetensors(file, TENSORS, { corrupt });
    return expectOpenFails(dir, file, ...reason);
  });
}

async function expectOpenFails(
  dir: string,
  file: string,
  ...reason: string[]
): Promise<CheckpointError> {
  const err = await assertRejects(() => openCheckpointTensors(dir), CheckpointError);
  assertEquals(err.file, file);
  assert(err.message.startsWith(`${file}: `), err.message);
  for (const r of reason) {
    assert(err.message.includes(r), `expected ${JSON.stringify(r)} in: ${err.message}`);
  }
  return err;
}

test("loader: a well-formed file opens (control for the cases below)", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model.safetensors`, TENSORS);
    const index = await openCheckpointTensors(dir);
    assertEquals(index.names(), ["a", "b"]);
    index.close();
  });
});

test("loader: missing model.safetensors", async () => {
  await withTempDir(async (dir) => {
    const err = await expectOpenFails(dir, `${dir}/model.safetensors`, "not found");
    assert(err.message.includes("model.safetensors.index.json"), err.message);
  });
});

test("loader: missing config.json", async () => {
  await withTempDir(async (dir) => {
    const err = await assertRejects(() => loadModelSpec(dir), CheckpointError, "not found");
    assertEquals(err.message, `${dir}/config.json: file not found`);
  });
});

test("loader: config.json that is not JSON", async () => {
  await withTempDir(async (dir) => {
    await sys.writeTextFile(`${dir}/config.json`, "{ hidden_size: 4");
    await assertRejects(
      () => loadModelSpec(dir),
      CheckpointError,
      `${dir}/config.json: not valid JSON`,
    );
  });
});

test("loader: file shorter than the 8-byte length field", async () => {
  await withTempDir(async (dir) => {
    await sys.writeFile(`${dir}/model.safetensors`, new Uint8Array([1, 2, 3]));
    await expectOpenFails(dir, `${dir}/model.safetensors`, "3 bytes", "shorter than");
  });
});

test("loader: truncated file (data shorter than the offsets)", async () => {
  // Tensor b's 8 bytes sit at the end; cut 3 of them off.
  await expectBroken({ truncateBytes: 3 }, "tensor b", "out of range", "truncated");
});

test("loader: header length beyond the end of the file", async () => {
  await expectBroken({ headerLength: 5000 }, "header length 5000", "past the end");
});

test("loader: absurd header length", async () => {
  await expectBroken({ headerLength: 2n ** 40n }, "header length 1099511627776", "absurd");
});

test("loader: header that is not JSON / not an object", async () => {
  await expectBroken({ headerText: '{"a": {"dtype": "F32",' }, "header is not valid JSON");
  await expectBroken({ headerText: "[1, 2, 3]" }, "header is not a JSON object");
  await expectBroken({ headerText: '{"a": 5}' }, "tensor a", "not an object");
});

test("loader: unknown dtypes", async () => {
  for (const dtype of ["I64", "F64", "F8_E4M3"]) {
    await expectBroken(
      { patchHeader: (h) => (h.a.dtype = dtype) },
      `unsupported dtype "${dtype}" for tensor a`,
    );
  }
});

test("loader: invalid shapes and data_offsets", async () => {
  await expectBroken({ patchHeader: (h) => (h.a.shape = [2, -3]) }, "tensor a", "invalid shape");
  await expectBroken({ patchHeader: (h) => (h.a.shape = "2x3") }, "tensor a", "invalid shape");
  await expectBroken(
    { patchHeader: (h) => (h.a.data_offsets = [24, 0]) },
    "tensor a",
    "invalid data_offsets",
  );
  await expectBroken(
    { patchHeader: (h) => (h.a.data_offsets = [0]) },
    "tensor a",
    "invalid data_offsets",
  );
});

test("loader: data_offsets out of range of the file", async () => {
  // Consistent byte length (8 bytes for [4] bf16) but past the 32-byte data section.
  await expectBroken(
    { patchHeader: (h) => (h.b.data_offsets = [1000, 1008]) },
    "tensor b",
    "out of range",
  );
});

test("loader: byte length does not match shape x dtype", async () => {
  await expectBroken(
    { patchHeader: (h) => (h.a.shape = [3, 3]) },
    "tensor a",
    "byte length 24",
    "[3, 3]",
    "36 bytes",
  );
  // Same bytes, wrong element size.
  await expectBroken({ patchHeader: (h) => (h.b.dtype = "F32") }, "tensor b", "byte length 8");
});

test("loader: raw byte builder produces what the reader expects", async () => {
  await withTempDir(async (dir) => {
    const data = new Uint8Array(new Float32Array([1.5, -2]).buffer);
    const header = { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
    await sys.writeFile(`${dir}/model.safetensors`, makeRawSafetensorsBytes(header, data));
    const index = await openCheckpointTensors(dir);
    const bytes = await index.read(index.get("x"));
    assertEquals(new Float32Array(bytes.buffer), new Float32Array([1.5, -2]));
    index.close();
  });
});

test("loader: unsupported architecture", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir);
    const config = JSON.parse(await sys.readTextFile(`${dir}/config.json`));
    await sys.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...config, architectures: ["GPT2LMHeadModel"], model_type: "gpt2" }),
    );
    const err = await assertRejects(() => loadModelSpec(dir), UnsupportedArchitectureError);
    assert(err instanceof CheckpointError);
    assertEquals(err.file, `${dir}/config.json`);
    assert(err.message.includes("unsupported architecture GPT2LMHeadModel"), err.message);
  });
});

test("loader: tensor shape mismatch names the file, tensor and both shapes", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, {}, {
      mutate: (tensors) => {
        const q = tensors.find((t) => t.name === "model.layers.1.self_attn.q_proj.weight")!;
        // [32, 32] -> [16, 64]: same element count, so only the shape check can catch it.
        q.shape = [16, 64];
      },
    });
    const spec = await loadModelSpec(dir);
    const index = await openCheckpointTensors(dir);
    try {
      const err = assertThrows(() => checkTensorShapes(spec, index), CheckpointError);
      assertEquals(
        err.message,
        `${dir}/model.safetensors: tensor model.layers.1.self_attn.q_proj.weight has shape [16, 64], expected [32, 32]`,
      );
    } finally {
      index.close();
    }
  });
});

test("loader: missing tensor", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, { tie_word_embeddings: false }, {
      mutate: (tensors) => tensors.splice(tensors.findIndex((t) => t.name === "lm_head.weight"), 1),
    });
    const spec = await loadModelSpec(dir);
    const index = await openCheckpointTensors(dir);
    try {
      const err = assertThrows(() => checkTensorShapes(spec, index), CheckpointError);
      assertEquals(err.message, `${dir}/model.safetensors: missing tensor lm_head.weight`);
    } finally {
      index.close();
    }
    // Tied embeddings need no lm_head.
    await writeSyntheticCheckpoint(dir, { tie_word_embeddings: true });
    const tied = await openCheckpointTensors(dir);
    checkTensorShapes(await loadModelSpec(dir), tied);
    tied.close();
  });
});

test("loader: sharded index pointing at a missing shard", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, {}, { sharded: 2 });
    const shard = `${dir}/model-00002-of-00002.safetensors`;
    await sys.remove(shard);
    await expectOpenFails(dir, shard, "shard file not found", "model.safetensors.index.json");
  });
});

test("loader: sharded index listing a tensor its shard lacks", async () => {
  await withTempDir(async (dir) => {
    await writeSyntheticCheckpoint(dir, {}, { sharded: 2 });
    const indexFile = `${dir}/model.safetensors.index.json`;
    const index = JSON.parse(await sys.readTextFile(indexFile));
    index.weight_map["model.norm.weight"] = "model-00001-of-00002.safetensors";
    await sys.writeTextFile(indexFile, JSON.stringify(index));
    await expectOpenFails(
      dir,
      `${dir}/model-00001-of-00002.safetensors`,
      "tensor model.norm.weight",
      "missing from this shard",
    );
  });
});

test("loader: sharded index that is not valid", async () => {
  await withTempDir(async (dir) => {
    const indexFile = `${dir}/model.safetensors.index.json`;
    await sys.writeTextFile(indexFile, "nope");
    await expectOpenFails(dir, indexFile, "not valid JSON");
    await sys.writeTextFile(indexFile, JSON.stringify({ metadata: {} }));
    await expectOpenFails(dir, indexFile, "weight_map");
  });
});

test("loader: a shard truncated after opening fails the read, not silently", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model.safetensors`, TENSORS);
    const index = await openCheckpointTensors(dir);
    const info = index.get("b");
    const bytes = await sys.readFile(`${dir}/model.safetensors`);
    await sys.writeFile(`${dir}/model.safetensors`, bytes.subarray(0, bytes.length - 4));
    await assertRejects(() => index.read(info), CheckpointError, "unexpected end of file");
    index.close();
  });
});
