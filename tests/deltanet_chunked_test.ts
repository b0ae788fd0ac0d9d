/**
 * The chunkwise (WY) form of the gated delta rule against the in-kernel sequential scan, on
 * qwen35-tiny (3 Gated DeltaNet layers, 4 value heads of 32 x 32): the same prompt fed in
 * steps of several lengths (one shot, lengths that are not multiples of the chunk, steps
 * starting mid-chunk from a carried-in state, steps of exactly one chunk) gives the same
 * logits and the same delta-rule state after every step, within float rounding, on both
 * kernel families. The two forms sum in different orders, so the results must also differ
 * somewhere: equal bits would mean the chunked kernel never ran.
 */
import { test } from "./helpers/test.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch } from "../src/runner/step_meta.ts";
import { deltaChunk } from "../src/kernels/family.ts";
import { KERNEL_FAMILIES } from "../src/types/api.ts";
import { createGpu } from "../src/gpu/device.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert } from "./helpers/assert.ts";

const MODEL = "qwen35-tiny";

/** Slot `slot` of every DeltaNet layer's delta state, in one copy and one map. */
async function readStates(runner: ModelRunner, slot: number): Promise<Float32Array[]> {
  const device = runner.gpu.device;
  const state = runner.state!;
  const bufs = state.delta.filter((b): b is GPUBuffer => b !== null);
  const bytes = bufs[0].size / state.slots;
  const staging = device.createBuffer({ size: bytes * bufs.length, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  bufs.forEach((b, l) => enc.copyBufferToBuffer(b, slot * bytes, staging, l * bytes, bytes));
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return bufs.map((_, l) => all.subarray(l * bytes / 4, (l + 1) * bytes / 4));
}

/** Largest |a - b| relative to the largest |b| (1 when b is all zeros). */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-30);
}

/** Runs `ids` in steps of `lengths` on slot `slot`; per step its logits and every layer's delta state. */
async function run(runner: ModelRunner, ids: number[], lengths: number[], slot: number): Promise<{ logits: Float32Array; states: Float32Array[] }[]> {
  const bs = runner.cache.options.blockSize;
  const table = Array.from({ length: Math.ceil(ids.length / bs) }, (_, i) => i);
  const out = [];
  let start = 0;
  for (const n of lengths) {
    const logits = await runner.logits(buildStepBatch([{ tokens: ids.slice(start, start + n), start, blockTable: table, logits: "all", stateSlot: slot }], bs));
    out.push({ logits, states: await readStates(runner, slot) });
    start += n;
  }
  return out;
}

test(`${MODEL}: the chunked delta rule equals the sequential scan (logits and state after every step)`, async (t) => {
  const golden = await loadGolden(MODEL);
  const ids = golden.cases.reduce((a, c) => (c.prompt_ids.length > a.length ? c.prompt_ids : a), [] as number[]);
  const gpu = await createGpu();
  try {
    const probe = await ModelRunner.load(modelDir(MODEL), { gpu, maxSeqs: 1, maxTokens: 8 });
    const lin = probe.spec.linearAttention!;
    probe.close();
    const chunk = deltaChunk(lin.keyHeadDim, lin.valueHeadDim, gpu.limits.maxComputeWorkgroupStorageSize);
    assert(ids.length > 4 * chunk, `prompt of ${ids.length} tokens is too short for chunks of ${chunk}`);
    // One shot; a carried-in state with steps that start mid-chunk and are no multiple of
    // the chunk; steps of exactly one chunk (the last one partial); two tokens (the smallest
    // chunked step) then the rest.
    const r = ids.length;
    const schedules = [
      [r],
      [3, chunk, chunk + 5, 5, r - 2 * chunk - 13],
      [...Array.from({ length: Math.floor(r / chunk) }, () => chunk), r % chunk].filter((n) => n > 0),
      [2, r - 2],
    ];
    for (const kernelFamily of KERNEL_FAMILIES) {
      await t.step(`${kernelFamily} family, chunks of ${chunk}`, async () => {
        const opts = { gpu, kernelFamily, kvDtype: "f32" as const, maxTokens: 128, maxLogitRows: 128, maxSeqs: 2, blockSize: 16, numBlocks: 16 };
        const scan = await ModelRunner.load(modelDir(MODEL), { ...opts, deltaRuleForm: "scan" });
        const chunked = await ModelRunner.load(modelDir(MODEL), { ...opts, deltaRuleForm: "chunked" });
        try {
          let differs = false;
          let worst = { logits: 0, state: 0 };
          for (const lengths of schedules) {
            const a = await run(scan, ids, lengths, 1);
            const b = await run(chunked, ids, lengths, 1);
            for (let s = 0; s < lengths.length; s++) {
              const dl = relDiff(b[s].logits, a[s].logits);
              assert(dl < 2e-5, `steps ${lengths}: step ${s} logits differ by ${dl} (relative)`);
              worst.logits = Math.max(worst.logits, dl);
              for (let l = 0; l < a[s].states.length; l++) {
                const ds = relDiff(b[s].states[l], a[s].states[l]);
                assert(ds < 2e-5, `steps ${lengths}: state of linear layer ${l} after step ${s} differs by ${ds} (relative)`);
                differs ||= ds > 0;
                worst.state = Math.max(worst.state, ds);
              }
            }
          }
          console.log(`${kernelFamily}: largest relative difference, logits ${worst.logits.toExponential(1)}, state ${worst.state.toExponential(1)}`);
          assert(differs, "the chunked form gave the scan's exact bits: did its kernel run?");
        } finally {
          scan.close();
          chunked.close();
        }
      });
    }
  } finally {
    gpu.device.destroy();
  }
});
