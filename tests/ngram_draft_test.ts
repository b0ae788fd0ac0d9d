/**
 * The GPU n-gram drafter (kernels/ngram_draft.wgsl) against the CPU drafter (`ngramDraft`)
 * on random histories, in both kernel families: many sequences per dispatch, the newest
 * token given by value or by reference to a sampler output record, and the appended token
 * kept in the GPU history for the next dispatch.
 */
import { test } from "./helpers/test.ts";
import { createGpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { RECORD, RECORD_REF, recordWords } from "../src/kernels/layout.ts";
import { SPEC_KERNEL_FILES } from "../src/kernels/spec_descriptors.ts";
import { type DraftRequest, GpuNgramDrafter } from "../src/runner/ngram_drafter.ts";
import { ngramDraft } from "../src/scheduler/speculation.ts";
import type { KernelFamily } from "../src/types/api.ts";
import { Rng } from "../bench/rng.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const MAX_SEQS = 12;
const MAX_CONTEXT = 160;
const MAX_DRAFT = 6;
const RECORD_WORDS = recordWords(0);

for (const family of ["cpu", "gpu"] as KernelFamily[]) {
  test(`GPU n-gram drafts equal the CPU drafter on random histories (${family} family)`, async () => {
    const gpu = await createGpu();
    const device = gpu.device;
    const pipelines = new PipelineCache(device, await loadKernelSources(SPEC_KERNEL_FILES));
    const records = device.createBuffer({ size: MAX_SEQS * RECORD_WORDS * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const read = device.createBuffer({ size: MAX_SEQS * (1 + MAX_DRAFT) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const rng = new Rng(family === "cpu" ? 23 : 32);
    let found = 0;
    let total = 0;
    try {
      for (let round = 0; round < 6; round++) {
        const maxN = rng.int(1, 5);
        const minN = rng.int(1, maxN);
        const drafter = new GpuNgramDrafter(device, pipelines, {
          family,
          maxSeqs: MAX_SEQS,
          maxContext: MAX_CONTEXT,
          maxDraft: MAX_DRAFT,
          promptLookupMax: maxN,
          promptLookupMin: minN,
          recordWords: RECORD_WORDS,
        });
        drafter.bind(records);
        // Histories over small vocabularies (matches of every length occur), some repeating
        // a passage as copying text does; lengths from 1 to MAX_CONTEXT - 1.
        const histories = Array.from({ length: MAX_SEQS }, () => {
          const vocab = rng.int(2, 8);
          const len = rng.int(1, MAX_CONTEXT - 1);
          const h = Array.from({ length: len }, () => rng.int(0, vocab - 1) * 997 + 3);
          if (len > 40 && rng.next() < 0.5) h.splice(len - 20, 20, ...h.slice(5, 25));
          return h;
        });
        const dispatch = async (requests: DraftRequest[]) => {
          drafter.upload(requests);
          const encoder = device.createCommandEncoder();
          const pass = encoder.beginComputePass();
          drafter.encode(pass, requests.length);
          pass.end();
          encoder.copyBufferToBuffer(drafter.drafts, 0, read, 0, read.size);
          device.queue.submit([encoder.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const words = new Uint32Array(read.getMappedRange().slice(0));
          read.unmap();
          return GpuNgramDrafter.readDrafts(words, requests.length, MAX_DRAFT);
        };
        // First dispatch: all but the newest token written from the CPU; the newest given by
        // value (even slots) or by an output-record reference (odd slots).
        const recordWords = new Uint32Array(MAX_SEQS * RECORD_WORDS);
        const requests: DraftRequest[] = histories.map((h, slot) => {
          drafter.write(slot, h.slice(0, -1));
          const newest = h[h.length - 1];
          recordWords[slot * RECORD_WORDS + RECORD.id] = newest;
          return { slot, length: h.length, newest: slot % 2 ? (RECORD_REF | slot) >>> 0 : newest, k: rng.int(0, MAX_DRAFT) };
        });
        device.queue.writeBuffer(records, 0, recordWords);
        // Slots in a shuffled order: a request's slot is not its index.
        requests.sort(() => rng.next() - 0.5);
        let got = await dispatch(requests);
        requests.forEach((r, i) => {
          const want = ngramDraft(histories[r.slot], r.k, maxN, minN);
          assertEquals(got[i], want, `round ${round} slot ${r.slot} len ${r.length} k ${r.k} n ${maxN}..${minN}`);
          total++;
          if (want.length) found++;
        });
        // Second dispatch: one more token per sequence (by record reference); the GPU history
        // must hold the first dispatch's newest token.
        const next: DraftRequest[] = [];
        histories.forEach((h, slot) => {
          if (h.length >= MAX_CONTEXT - 1) return;
          // Mostly the token a copy would predict, so drafts are found.
          const d = ngramDraft(h, 1, maxN, minN);
          h.push(d.length && rng.next() < 0.8 ? d[0] : h[rng.int(0, h.length - 1)]);
          recordWords[slot * RECORD_WORDS + RECORD.id] = h[h.length - 1];
          next.push({ slot, length: h.length, newest: (RECORD_REF | slot) >>> 0, k: MAX_DRAFT });
        });
        device.queue.writeBuffer(records, 0, recordWords);
        got = await dispatch(next);
        next.forEach((r, i) => assertEquals(got[i], ngramDraft(histories[r.slot], r.k, maxN, minN), `round ${round} slot ${r.slot} (appended)`));
        drafter.destroy();
      }
      // The random histories exercise both outcomes.
      assert(found > total / 4 && found < total, `${found} of ${total} drafts found`);
    } finally {
      records.destroy();
      read.destroy();
      device.destroy();
    }
  });
}
