/**
 * The GPU masking pass (kernels/mask.wgsl) against the CPU reference (`applyBitmask`), and
 * with the sampler behind it: masked rows only ever yield allowed tokens, whatever the
 * sampling; rows without a mask in the same step are untouched.
 */
import { test } from "./helpers/test.ts";
import { createGpu, type Gpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { GpuSampler } from "../src/runner/sampler.ts";
import { TokenMaskPass } from "../src/runner/token_mask.ts";
import { buildStepBatch, metaSlotWords, packStepMeta, type StepCapacity } from "../src/runner/step_meta.ts";
import { SAMPLING_DEFAULTS, type SamplingParams } from "../src/types/api.ts";
import { applyBitmask, bitmaskWords, isAllowed } from "../src/grammar/bitmask.ts";
import { Rng } from "../bench/rng.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

/** What the kernel writes for a forbidden token: the lowest f32. */
const MASKED = -3.4028234663852886e38;

interface Row {
  logits: number[];
  /** Allowed-token bitmask, or null for an unconstrained row. */
  mask: Uint32Array | null;
  sampling?: Partial<SamplingParams>;
  outputIndex?: number;
}

interface Harness {
  gpu: Gpu;
  /** Masks (when `sample` is false, returns the masked logits) and samples one step's rows. */
  run(rows: Row[]): Promise<{ logits: Float32Array; ids: number[] }>;
  close(): void;
}

async function harness(vocab: number, maxRows: number): Promise<Harness> {
  const gpu = await createGpu();
  const device = gpu.device;
  const pipelines = new PipelineCache(device, await loadKernelSources(["sample", "mask"]));
  const sampler = new GpuSampler(device, pipelines, { vocab, maxSeqs: maxRows, maxTopLogprobs: 0, outRecords: maxRows });
  const masks = new TokenMaskPass(device, pipelines, { vocab, maxRows });
  const cap: StepCapacity = { maxTokens: maxRows, maxSeqs: 1, maxLogitRows: maxRows, maxBlocksPerSeq: maxRows };
  const slotBytes = metaSlotWords(cap) * 4;
  const meta = device.createBuffer({ size: slotBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const logitsBuf = device.createBuffer({
    size: maxRows * vocab * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  });
  const readLogits = device.createBuffer({ size: maxRows * vocab * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const readIds = device.createBuffer({ size: maxRows * sampler.recordWords * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  sampler.bind(meta, slotBytes, logitsBuf);
  masks.bind(meta, slotBytes, logitsBuf);
  return {
    gpu,
    async run(rows) {
      const R = rows.length;
      const batch = buildStepBatch([{ tokens: new Array(R).fill(0), start: 0, blockTable: Array.from({ length: R }, (_, i) => i), logits: "all" }], 1);
      let maskRows = 0;
      const sampled = rows.map((r, i) => {
        const out = { sampling: { ...SAMPLING_DEFAULTS, ...r.sampling }, outputIndex: r.outputIndex ?? 0, seqSlot: i, maskRow: undefined as number | undefined };
        if (r.mask) {
          masks.staging.set(r.mask, maskRows * masks.maskWords);
          out.maskRow = maskRows++;
        }
        return out;
      });
      device.queue.writeBuffer(meta, 0, packStepMeta(batch, cap, { rows: sampled, recordBase: 0 }));
      device.queue.writeBuffer(logitsBuf, 0, new Float32Array(rows.flatMap((r) => r.logits)));
      masks.upload(maskRows);
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      if (maskRows) masks.encode(pass, 0, R);
      sampler.encode(pass, 0, R);
      pass.end();
      encoder.copyBufferToBuffer(logitsBuf, 0, readLogits, 0, R * vocab * 4);
      encoder.copyBufferToBuffer(sampler.records, 0, readIds, 0, R * sampler.recordWords * 4);
      device.queue.submit([encoder.finish()]);
      await readLogits.mapAsync(GPUMapMode.READ, 0, R * vocab * 4);
      const logits = new Float32Array(readLogits.getMappedRange(0, R * vocab * 4).slice(0));
      readLogits.unmap();
      await readIds.mapAsync(GPUMapMode.READ, 0, R * sampler.recordWords * 4);
      const records = sampler.view(new Uint32Array(readIds.getMappedRange(0, R * sampler.recordWords * 4).slice(0)));
      readIds.unmap();
      return { logits, ids: rows.map((_, i) => records.at(i, 0).id) };
    },
    close() {
      sampler.destroy();
      masks.destroy();
      for (const b of [meta, logitsBuf, readLogits, readIds]) b.destroy();
      device.destroy();
    },
  };
}

/** A mask allowing each token with probability `p` (and at least one token). */
function randomMask(rng: Rng, vocab: number, p: number): Uint32Array {
  const mask = new Uint32Array(bitmaskWords(vocab));
  for (let id = 0; id < vocab; id++) if (rng.next() < p) mask[id >>> 5] |= 1 << (id & 31);
  const one = rng.int(0, vocab - 1);
  mask[one >>> 5] |= 1 << (one & 31);
  // Bits past the vocabulary are set, as xgrammar leaves them: they must not matter.
  for (let id = vocab; id < mask.length * 32; id++) mask[id >>> 5] |= 1 << (id & 31);
  return mask;
}

function allowed(mask: Uint32Array, vocab: number): number[] {
  return Array.from({ length: vocab }, (_, id) => id).filter((id) => isAllowed(mask, id));
}

const VOCAB = 1000; // not a multiple of 32: the last word is partial

test("token mask: the GPU pass equals the CPU reference; unmasked rows are untouched", async () => {
  const h = await harness(VOCAB, 6);
  try {
    const rng = new Rng(11);
    const rows: Row[] = [0.5, null, 0.02, 1, null, 0.9].map((p) => ({
      logits: Array.from({ length: VOCAB }, () => rng.normal() * 3),
      mask: p === null ? null : randomMask(rng, VOCAB, p),
    }));
    const { logits } = await h.run(rows);
    rows.forEach((r, i) => {
      const want = Float32Array.from(r.logits);
      if (r.mask) applyBitmask(want, r.mask);
      const got = logits.subarray(i * VOCAB, (i + 1) * VOCAB);
      for (let id = 0; id < VOCAB; id++) {
        const w = want[id] === -Infinity ? MASKED : want[id];
        assertEquals(got[id], w, `row ${i} token ${id}`);
      }
    });
  } finally {
    h.close();
  }
});

test("token mask: greedy takes the best allowed token; sampling, top-k/top-p/min-p and penalties only allowed ones", async () => {
  const h = await harness(VOCAB, 8);
  try {
    const rng = new Rng(5);
    const settings: Partial<SamplingParams>[] = [
      {},
      { temperature: 1, seed: 3 },
      { temperature: 0.3, seed: 4 },
      { temperature: 2, seed: 5 },
      { temperature: 1, topK: 5, seed: 6 },
      { temperature: 1, topP: 0.5, seed: 7 },
      { temperature: 1, minP: 0.2, seed: 8 },
      { temperature: 1.5, repetitionPenalty: 1.3, presencePenalty: 1, seed: 9 },
    ];
    for (let round = 0; round < 12; round++) {
      const rows: Row[] = settings.map((sampling, i) => ({
        logits: Array.from({ length: VOCAB }, () => rng.normal() * 4),
        // Sparse masks that usually exclude the best tokens.
        mask: randomMask(rng, VOCAB, [0.01, 0.05, 0.3][(round + i) % 3]),
        sampling,
        outputIndex: round,
      }));
      const { ids } = await h.run(rows);
      rows.forEach((r, i) => {
        const ok = allowed(r.mask!, VOCAB);
        assert(ok.includes(ids[i]), `round ${round} row ${i}: token ${ids[i]} is not allowed`);
        if (i === 0) {
          const best = ok.reduce((a, b) => (r.logits[b] > r.logits[a] ? b : a));
          assertEquals(ids[i], best, "greedy: the best allowed token");
        }
      });
    }
  } finally {
    h.close();
  }
});

test("token mask: rows without a mask sample as if no row had one", async () => {
  const h = await harness(VOCAB, 4);
  try {
    const rng = new Rng(9);
    const base: Row[] = Array.from({ length: 4 }, (_, i) => ({
      logits: Array.from({ length: VOCAB }, () => rng.normal() * 2),
      mask: null,
      sampling: { temperature: 1, seed: 100 + i },
    }));
    const alone = await h.run(base);
    const mixed = await h.run(base.map((r, i) => (i % 2 ? { ...r, mask: randomMask(rng, VOCAB, 0.05) } : r)));
    assertEquals([mixed.ids[0], mixed.ids[2]], [alone.ids[0], alone.ids[2]]);
    assertEquals(
      Array.from(mixed.logits.subarray(0, VOCAB)),
      Array.from(alone.logits.subarray(0, VOCAB)),
      "an unmasked row's logits are untouched",
    );
  } finally {
    h.close();
  }
});
