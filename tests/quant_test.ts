/**
 * The quantizers and dequantizers on the CPU: llama.cpp's Q8_0 / Q4_0 block bytes for
 * hand-computed blocks (rounding halves away from zero, the first largest magnitude, the
 * clamp at 15, nibble order), round-trip bounds and idempotence on random rows, hand-built
 * Q4_K / Q6_K super-blocks, and the load-time quantized source (blocks independent of the
 * read chunk size, dequantized chunks equal to the blocks' values), and the Q8X transcoding of
 * random K-quant (and Q8_0 / Q4_0) blocks against ggml's dequantizers bit for bit, and the Q4X
 * transcoding of random Q4_K blocks likewise (with Q4X's nibble order checked by hand).
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { f16BitsToF32, f32ToF16Bits, Rng } from "./helpers/synthetic_checkpoint.ts";
import { dequantizeQ8_0, quantizeQ8_0 } from "../src/model/quant/q8_0.ts";
import { dequantizeQ4_0, quantizeQ4_0 } from "../src/model/quant/q4_0.ts";
import { dequantizeQ4_K, dequantizeQ6_K } from "../src/model/quant/k_quants.ts";
import { dequantize } from "../src/model/quant/dequantize.ts";
import { quantizeSource } from "../src/model/quant/quantized_source.ts";
import { isQuantTarget } from "../src/model/quant/targets.ts";
import { collectChunks } from "../src/model/tensor_source.ts";
import { openCheckpointTensors } from "../src/model/safetensors.ts";
import { modelDir } from "./helpers/reference.ts";
import { dequantizeQ8X, Q8X_BYTES, transcodeToQ8X } from "../src/model/quant/q8x.ts";
import { dequantizeQ4X, Q4X_BYTES, transcodeQ4KToQ4X } from "../src/model/quant/q4x.ts";
import type { QuantType } from "../src/model/quant/ggml_types.ts";
import { quantizeQ4K, quantizeQ6K, randomQ4K, randomQ6K } from "./helpers/k_quant_blocks.ts";

function randomRow(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => Math.fround((rng.next() * 2 - 1) * scale));
}

test("quant Q8_0: a hand-computed block (d = 1, halves away from zero)", () => {
  const x = new Float32Array(32);
  x.set([127, -63.5, 0.5, 1.5, -0.5, 2.5, -2.5, 0.49, -126.5, 3]);
  const bytes = quantizeQ8_0(x);
  assertEquals(bytes.length, 34);
  // f16(1.0) = 0x3c00, little-endian.
  assertEquals([bytes[0], bytes[1]], [0x00, 0x3c]);
  const q = [...new Int8Array(bytes.buffer, 2, 32)];
  assertEquals(q.slice(0, 10), [127, -64, 1, 2, -1, 3, -3, 0, -127, 3]);
  assertEquals(q.slice(10), new Array(22).fill(0));
});

test("quant Q8_0: x * (1 / d) in double precision decides the ±max/2 ties of 16-bit weights (the goldens' arithmetic)", () => {
  // bf16 weights where x = max/2 is 63.5 levels: in f64, x * (1 / d) lands just below 63.5
  // for max 0.1650390625 (q = 63) and on 63.5 for 0.1669921875 (q = 64); an f32 x / d gives
  // 63.5 and 63.500004 (64 both), the one-level difference quant-goldens.json tells apart.
  for (const [max, q] of [[0.1650390625, 63], [0.1669921875, 64]]) {
    const x = new Float32Array(32);
    x[0] = max;
    x[1] = max / 2;
    x[2] = -max / 2;
    const qs = new Int8Array(quantizeQ8_0(x).buffer, 2, 32);
    assertEquals([qs[0], qs[1], qs[2]], [127, q, -q], `max ${max}`);
  }
});

test("quant Q8_0: scale is f16(max|x| / 127) and values q * f16(d)", () => {
  const x = new Float32Array(32).fill(0.001);
  x[7] = -0.3;
  const bytes = quantizeQ8_0(x);
  const d = Math.fround(0.3 / 127);
  const bits = bytes[0] | (bytes[1] << 8);
  assertEquals(bits, f32ToF16Bits(d));
  const q = new Int8Array(bytes.buffer, 2, 32);
  assertEquals(q[7], -127);
  assertEquals(q[0], Math.round(Math.fround(0.001 / d)));
  const y = new Float32Array(32);
  dequantizeQ8_0(bytes, 0, 1, y);
  assertEquals(y[7], Math.fround(-127 * f16BitsToF32(bits)));
  assertEquals(y[0], Math.fround(q[0] * f16BitsToF32(bits)));
});

test("quant Q4_0: a hand-computed block (first largest magnitude, clamp at 15, nibble order)", () => {
  const x = new Float32Array(32);
  // -16 is the first value of largest magnitude: d = -16 / -8 = 2; the later +16 clamps.
  x.set([-16, 14, 1, 0.999, -1, 16, 3.1, -7]);
  x[16] = 5;
  x[31] = -15.5;
  const bytes = quantizeQ4_0(x);
  assertEquals(bytes.length, 18);
  assertEquals([bytes[0], bytes[1]], [0x00, 0x40]); // f16(2.0)
  // q = min(15, trunc(x / 2 + 8.5)).
  const q = [0, 15, 9, 8, 8, 15, 10, 5];
  const lo = [...bytes.subarray(2, 18)].map((b) => b & 0xf);
  const hi = [...bytes.subarray(2, 18)].map((b) => b >> 4);
  assertEquals(lo.slice(0, 8), q);
  assertEquals(lo.slice(8), new Array(8).fill(8));
  assertEquals(hi[0], 11); // 5 / 2 + 8.5 = 11
  assertEquals(hi[15], 0); // -15.5 / 2 + 8.5 = 0.75
  assertEquals(hi.slice(1, 15), new Array(14).fill(8));
  const y = new Float32Array(32);
  dequantizeQ4_0(bytes, 0, 1, y);
  assertEquals([...y.subarray(0, 8)], [-16, 14, 2, 0, 0, 14, 4, -6]);
  assertEquals([y[16], y[31]], [6, -16]);
});

test("quant: an all-zero block has scale 0 (Q4_0: -0, as llama.cpp's 0 / -8) and dequantizes to zeros", () => {
  const z = new Float32Array(32);
  const q8 = quantizeQ8_0(z);
  const q4 = quantizeQ4_0(z);
  assertEquals([...q8], new Array(34).fill(0));
  assertEquals([...q4], [0, 0x80, ...new Array(16).fill(0x88)]);
  assert(dequantize("Q4_0", q4).every((v) => v === 0), "zeros");
});

test("quant: random rows round-trip within half a step and quantizing twice changes nothing", () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 50; trial++) {
    const x = randomRow(rng, 256, 10 ** (rng.next() * 4 - 2));
    for (const [type, quant] of [["Q8_0", quantizeQ8_0], ["Q4_0", quantizeQ4_0]] as const) {
      const blocks = quant(x);
      const y = dequantize(type, blocks);
      for (let b = 0; b < 8; b++) {
        const at = b * (type === "Q8_0" ? 34 : 18);
        const d = Math.abs(f16BitsToF32(blocks[at] | (blocks[at + 1] << 8)));
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
        for (let j = 0; j < 32; j++) {
          const i = b * 32 + j;
          // Half a step, plus the f16 rounding of the scale over the largest level, plus
          // (Q4_0) the one level the positive side lacks.
          const bound = (type === "Q8_0" ? d / 2 : d) + amax * 2 ** -10 + 1e-12;
          assert(Math.abs(x[i] - y[i]) <= bound, `${type} trial ${trial} [${i}]: ${x[i]} -> ${y[i]} (d ${d})`);
        }
      }
      const again = quant(y);
      assertEquals([...again], [...blocks], `${type} trial ${trial}: re-quantizing changed the blocks`);
    }
  }
});

test("quant: rows that are not whole blocks are refused", () => {
  assertThrows(() => quantizeQ8_0(new Float32Array(33)), RangeError);
  assertThrows(() => quantizeQ4_0(new Float32Array(16)), RangeError);
  assertThrows(() => dequantize("Q8_0", new Uint8Array(35)), RangeError);
});

/** Writes a Q4_K block's 6-bit (scale, min) pair j into its 12 scale bytes. */
function setScaleMin(s: Uint8Array, j: number, sc: number, m: number): void {
  if (j < 4) {
    s[j] = (s[j] & 0xc0) | sc;
    s[j + 4] = (s[j + 4] & 0xc0) | m;
  } else {
    s[j + 4] = (sc & 0xf) | ((m & 0xf) << 4);
    s[j - 4] = (s[j - 4] & 0x3f) | ((sc >> 4) << 6);
    s[j] = (s[j] & 0x3f) | ((m >> 4) << 6);
  }
}

test("quant Q4_K: a hand-built super-block (6-bit scales and mins, low then high nibbles)", () => {
  const block = new Uint8Array(144);
  block.set([0x00, 0x3c], 0); // d = 1
  block.set([0x00, 0x38], 2); // dmin = 0.5
  const scales = new Uint8Array(12);
  setScaleMin(scales, 0, 3, 2);
  setScaleMin(scales, 1, 5, 1);
  setScaleMin(scales, 4, 33, 17); // needs the high bits
  setScaleMin(scales, 7, 63, 63);
  block.set(scales, 4);
  const qs = block.subarray(16);
  qs[0] = 0x2a; // value 0: q 10 (scale 3, min 2); value 32: q 2 (scale 5, min 1)
  qs[31] = 0xf0; // value 31: q 0; value 63: q 15
  qs[64] = 0x07; // value 128: q 7 (scale 33, min 17)
  qs[127] = 0xf3; // value 255 (pair 3, high nibble): q 15 (scale 63, min 63)
  const y = new Float32Array(256);
  dequantizeQ4_K(block, 0, 1, y);
  assertEquals(y[0], 1 * 3 * 10 - 0.5 * 2);
  assertEquals(y[31], -1);
  assertEquals(y[32], 5 * 2 - 0.5);
  assertEquals(y[63], 5 * 15 - 0.5);
  assertEquals(y[128], 33 * 7 - 8.5);
  assertEquals(y[129], -8.5);
  assertEquals(y[255], 63 * 15 - 31.5);
  assertEquals(y[64], 0); // pair 1 (scales 2, 3) was left zero
});

test("quant Q6_K: a hand-built super-block (4 low + 2 high bits, int8 scales per 16)", () => {
  const block = new Uint8Array(210);
  const sc = new Int8Array(block.buffer, 192, 16);
  sc[0] = 4;
  sc[1] = 3;
  sc[2] = -2;
  sc[4] = 1;
  sc[6] = 7;
  sc[8] = -1;
  block.set([0x00, 0x34], 208); // d = 0.25
  block[0] = 0x3a; // ql[0]: low 10 (value 0), high 3 (value 64)
  block[32] = 0x51; // ql[32]: low 1 (value 32), high 5 (value 96)
  block[128] = 0b11_10_01_10; // qh[0]: value 0 -> 2, value 32 -> 1, value 64 -> 2, value 96 -> 3
  block[16] = 0x0f; // ql[16], value 16 (scale index 1): low 15, qh 0
  block[64] = 0x21; // second half: ql[64] -> value 128 low 1, value 192 high 2
  const y = new Float32Array(256);
  dequantizeQ6_K(block, 0, 1, y);
  assertEquals(y[0], 0.25 * 4 * (10 + 32 - 32));
  assertEquals(y[32], 0.25 * -2 * (1 + 16 - 32));
  assertEquals(y[64], 0.25 * 1 * (3 + 32 - 32));
  assertEquals(y[96], 0.25 * 7 * (5 + 48 - 32));
  assertEquals(y[16], 0.25 * 3 * (15 - 32));
  assertEquals(y[128], 0.25 * -1 * (1 - 32));
  assert(y[192] === 0, "scale 12 is zero");
  assertEquals(y[1], 0.25 * 4 * (0 - 32)); // ql and qh zero: q = -32
});

test("quant: F16 / BF16 / F32 decode exactly", () => {
  assertEquals([...dequantize("F16", new Uint8Array([0x00, 0x3c, 0x00, 0xc0]))], [1, -2]);
  assertEquals([...dequantize("BF16", new Uint8Array([0x80, 0x3f, 0x40, 0xc0]))], [1, -3]);
  assertEquals([...dequantize("F32", new Uint8Array(new Float32Array([1.5, -0.25]).buffer))], [1.5, -0.25]);
});

test("quant targets: decoder linear weights whose K is a multiple of 32", () => {
  assert(isQuantTarget("model.layers.0.self_attn.q_proj.weight", [64, 64]));
  assert(isQuantTarget("model.layers.11.mlp.down_proj.weight", [64, 192]));
  assert(!isQuantTarget("model.layers.0.mlp.down_proj.weight", [64, 172]), "K = 172");
  assert(!isQuantTarget("model.layers.0.self_attn.q_proj.bias", [64]));
  assert(!isQuantTarget("model.embed_tokens.weight", [512, 64]));
  assert(!isQuantTarget("lm_head.weight", [512, 64]));
  assert(!isQuantTarget("model.layers.0.input_layernorm.weight", [64]));
  // A shared expert is a dense MLP (Qwen3.5-MoE); routed experts and routers stay 16-bit.
  assert(isQuantTarget("model.layers.0.mlp.shared_expert.up_proj.weight", [48, 64]));
  assert(!isQuantTarget("model.layers.0.mlp.experts.3.up_proj.weight", [32, 64]));
  assert(!isQuantTarget("model.layers.0.mlp.shared_expert_gate.weight", [1, 64]));
  assert(!isQuantTarget("model.layers.0.mlp.gate.weight", [8, 64]));
});

test("quant source: blocks do not depend on the read chunk size; chunks are the blocks' values", async () => {
  const index = await openCheckpointTensors(modelDir("llama-tiny"));
  const q4 = quantizeSource(index, "q4_0");
  try {
    const name = "model.layers.1.mlp.gate_proj.weight";
    const info = q4.get(name);
    assertEquals(info.blocks?.type, "Q4_0");
    assertEquals(info.dtype, "F32");
    const [rows, cols] = info.shape;
    assertEquals(info.blocks!.byteLength, rows * (cols / 32) * 18);
    // Whole tensor at once, from the bf16 values.
    const whole = quantizeQ4_0(dequantize("BF16", await index.read(index.get(name))));
    for (const chunk of [cols * 4, 3 * cols * 4 + 8, 1 << 20]) {
      const blocks = await collectChunks(info.blocks!.byteLength, q4.readBlocks!(info, chunk));
      assertEquals(blocks.length, whole.length);
      assert(blocks.every((b, i) => b === whole[i]), `chunk ${chunk}: blocks differ`);
    }
    const values = new Float32Array((await q4.read(info)).buffer);
    assertEquals([...values], [...dequantize("Q4_0", whole)]);
    // Everything else passes through untouched.
    const embed = q4.get("model.embed_tokens.weight");
    assertEquals(embed.blocks, undefined);
    assertEquals(embed.dtype, "BF16");
  } finally {
    q4.close();
  }
});

test("quant Q8X: transcoding random Q4_K / Q6_K / Q8_0 / Q4_0 blocks gives ggml's dequantized values bit for bit", () => {
  const rng = new Rng(77);
  const cases: [QuantType, Uint8Array, number][] = [
    ["Q4_K", randomQ4K(rng, 6), 6],
    ["Q6_K", randomQ6K(rng, 6), 6],
    ["Q8_0", quantizeQ8_0(Float32Array.from({ length: 256 }, () => rng.normal())), 8],
    ["Q4_0", quantizeQ4_0(Float32Array.from({ length: 256 }, () => rng.normal())), 8],
  ];
  for (const [type, blocks, n] of cases) {
    const want = dequantize(type, blocks);
    const q8x = transcodeToQ8X(type, blocks, n);
    assertEquals(q8x.length, (want.length / 32) * Q8X_BYTES);
    const got = new Float32Array(want.length);
    dequantizeQ8X(q8x, 0, want.length / 32, got);
    for (let i = 0; i < want.length; i++) {
      assert(Object.is(got[i], want[i]), `${type} [${i}]: ${got[i]} vs ${want[i]}`);
    }
    assert(want.some((v) => v !== 0), `${type}: random blocks dequantize to something`);
  }
});

test("quant Q4X: transcoding random Q4_K blocks gives ggml's dequantized values bit for bit", () => {
  const rng = new Rng(79);
  for (const n of [1, 7]) {
    const blocks = randomQ4K(rng, n);
    const want = new Float32Array(256 * n);
    dequantizeQ4_K(blocks, 0, n, want);
    const q4x = transcodeQ4KToQ4X(blocks, n);
    assertEquals(q4x.length, (want.length / 32) * Q4X_BYTES);
    const got = new Float32Array(want.length);
    dequantizeQ4X(q4x, 0, want.length / 32, got);
    for (let i = 0; i < want.length; i++) {
      assert(Object.is(got[i], want[i]), `Q4_K -> Q4X [${i}]: ${got[i]} vs ${want[i]}`);
    }
    assert(want.some((v) => v !== 0), "random blocks dequantize to something");
  }
  assertThrows(() => transcodeQ4KToQ4X(new Uint8Array(100), 1));
});

test("quant Q4X: a hand-built block (Q4_0's nibble order, value = scale * q - min)", () => {
  const block = new Uint8Array(Q4X_BYTES);
  const view = new DataView(block.buffer);
  view.setFloat32(0, 0.5, true);
  view.setFloat32(4, 2, true);
  // Byte j: low nibble value j, high nibble value j + 16.
  for (let j = 0; j < 16; j++) block[8 + j] = j | ((15 - j) << 4);
  const got = new Float32Array(32);
  dequantizeQ4X(block, 0, 1, got);
  const want = Array.from({ length: 32 }, (_, i) => 0.5 * (i < 16 ? i : 31 - i) - 2);
  assertEquals(Array.from(got), want);
});

test("quant Q8X: the test quantizers make valid Q4_K / Q6_K blocks close to their input", () => {
  const rng = new Rng(78);
  const x = Float32Array.from({ length: 512 }, () => 0.05 * rng.normal());
  for (const [type, q] of [["Q4_K", quantizeQ4K(x)], ["Q6_K", quantizeQ6K(x)]] as const) {
    const y = dequantize(type, q);
    const err = y.reduce((m, v, i) => Math.max(m, Math.abs(v - x[i])), 0);
    assert(err < (type === "Q4_K" ? 0.03 : 0.01), `${type}: max error ${err}`);
  }
});
