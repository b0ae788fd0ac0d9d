/**
 * n-gram speculation's GPU step (kernels/ngram_draft.wgsl) against the CPU rules, on random
 * histories, in both kernel families: drafts equal `ngramDraft` (many sequences per dispatch,
 * the newest token given by value or by reference to a sampler output record); accepting a
 * verification step's rows keeps the longest prefix equal to the draft plus the next sample,
 * on the GPU, and the next draft and append see the updated history; a history uploaded
 * partly from output records (`copyRecord`) drafts the same.
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
/** Records per slot in the fake sampler ring: a verification step's rows. */
const ROWS = MAX_DRAFT + 1;

for (const family of ["cpu", "gpu"] as KernelFamily[]) {
  test(`GPU n-gram step (${family} family): drafts equal the CPU drafter; acceptance on the GPU keeps the history`, async () => {
    const gpu = await createGpu();
    const device = gpu.device;
    const pipelines = new PipelineCache(device, await loadKernelSources(SPEC_KERNEL_FILES));
    const records = device.createBuffer({
      size: MAX_SEQS * ROWS * RECORD_WORDS * 4,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    const draftWords = MAX_SEQS * (1 + MAX_DRAFT);
    const countWords = MAX_SEQS * RECORD_WORDS;
    const read = device.createBuffer({ size: (draftWords + countWords + MAX_SEQS) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const rng = new Rng(family === "cpu" ? 23 : 32);
    let found = 0;
    let total = 0;
    let partial = 0;
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
        const recordIds = new Uint32Array(MAX_SEQS * ROWS * RECORD_WORDS);
        const setRecord = (record: number, id: number) => (recordIds[record * RECORD_WORDS + RECORD.id] = id);
        /** Runs a dispatch; returns each slot's draft, each request's accepted count, each slot's length. */
        const dispatch = async (requests: DraftRequest[], before?: (encoder: GPUCommandEncoder) => void) => {
          device.queue.writeBuffer(records, 0, recordIds);
          drafter.upload(requests);
          const encoder = device.createCommandEncoder();
          before?.(encoder);
          const pass = encoder.beginComputePass();
          drafter.encode(pass, requests.length);
          pass.end();
          encoder.copyBufferToBuffer(drafter.drafts, 0, read, 0, draftWords * 4);
          encoder.copyBufferToBuffer(drafter.accepted, 0, read, draftWords * 4, countWords * 4);
          encoder.copyBufferToBuffer(drafter.lengths, 0, read, (draftWords + countWords) * 4, MAX_SEQS * 4);
          device.queue.submit([encoder.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const words = new Uint32Array(read.getMappedRange().slice(0));
          read.unmap();
          return {
            draft: (slot: number) => GpuNgramDrafter.readDraft(words, slot, MAX_DRAFT),
            // (accepted, fed) per request, a record apart.
            accepted: requests.map((_, i) => [words[draftWords + i * RECORD_WORDS], words[draftWords + i * RECORD_WORDS + 1]]),
            length: (slot: number) => words[draftWords + countWords + slot],
          };
        };
        // Histories over small vocabularies (matches of every length occur), some repeating
        // a passage as copying text does; room left for two more steps.
        const histories = Array.from({ length: MAX_SEQS }, () => {
          const vocab = rng.int(2, 8);
          const len = rng.int(1, MAX_CONTEXT - ROWS - 2);
          const h = Array.from({ length: len }, () => rng.int(0, vocab - 1) * 997 + 3);
          if (len > 40 && rng.next() < 0.5) h.splice(len - 20, 20, ...h.slice(5, 25));
          return h;
        });
        const ks = histories.map(() => rng.int(0, MAX_DRAFT));

        // 1. Append: all but the newest token written from the CPU; the newest given by value
        //    (even slots) or by an output-record reference (odd slots). Slots out of order.
        //    Every third slot's history is uploaded as the runner does when a sequence starts
        //    speculating with tokens still on the GPU: its last tokens before the newest are
        //    copied from output records.
        const copies: [slot: number, record: number, position: number][] = [];
        const first: DraftRequest[] = histories.map((h, slot) => {
          const copied = slot % 3 === 2 ? Math.min(ROWS - 1, h.length - 1) : 0;
          const cpu = h.length - 1 - copied;
          drafter.write(slot, h.slice(0, cpu));
          for (let j = 0; j < copied; j++) {
            setRecord(slot * ROWS + 1 + j, h[cpu + j]);
            copies.push([slot, slot * ROWS + 1 + j, cpu + j]);
          }
          setRecord(slot * ROWS, h[h.length - 1]);
          const newest = slot % 2 ? (RECORD_REF | (slot * ROWS)) >>> 0 : h[h.length - 1];
          return { mode: "append", slot, length: h.length, newest, k: ks[slot] };
        });
        first.sort(() => rng.next() - 0.5);
        let got = await dispatch(first, (encoder) => {
          for (const [slot, record, position] of copies) drafter.copyRecord(encoder, records, record, slot, position);
        });
        const drafts = histories.map((h, slot) => ngramDraft(h, ks[slot], maxN, minN));
        histories.forEach((h, slot) => {
          assertEquals(got.draft(slot), drafts[slot], `round ${round} slot ${slot} len ${h.length} k ${ks[slot]} n ${maxN}..${minN}`);
          assertEquals(got.length(slot), h.length);
          total++;
          if (drafts[slot].length) found++;
        });
        assertEquals(got.accepted, first.map(() => [0, 0]));

        // 2. Accept: each slot's verification rows sample its draft token with probability
        //    0.7 per row (else another token); the GPU keeps the longest matching prefix plus
        //    the next row's sample, as the scheduler does on the CPU.
        const second: DraftRequest[] = histories.map((h, slot) => {
          const d = drafts[slot];
          for (let i = 0; i < ROWS; i++) {
            setRecord(slot * ROWS + i, i < d.length && rng.next() < 0.7 ? d[i] : h[rng.int(0, h.length - 1)] + (rng.next() < 0.5 ? 1 : 0));
          }
          ks[slot] = rng.int(1, MAX_DRAFT);
          // Mostly every draft token fed; sometimes fewer (the scheduler's k was smaller).
          const fed = rng.next() < 0.7 ? MAX_DRAFT : rng.int(0, MAX_DRAFT);
          return { mode: "accept", slot, fed, firstRecord: slot * ROWS, k: ks[slot] };
        });
        got = await dispatch(second);
        const want = second.map((r) => {
          if (r.mode !== "accept") throw new Error("unreachable");
          const d = drafts[r.slot].slice(0, r.fed);
          const sample = (i: number) => recordIds[(r.slot * ROWS + i) * RECORD_WORDS + RECORD.id];
          let a = 0;
          while (a < d.length && sample(a) === d[a]) a++;
          histories[r.slot].push(...d.slice(0, a), sample(a));
          if (a > 0 && a < d.length) partial++;
          return [a, d.length];
        });
        assertEquals(got.accepted, want, `round ${round}: accepted`);
        histories.forEach((h, slot) => {
          assertEquals(got.length(slot), h.length, `round ${round} slot ${slot}: length after acceptance`);
          assertEquals(got.draft(slot), ngramDraft(h, ks[slot], maxN, minN), `round ${round} slot ${slot}: draft after acceptance`);
        });

        // 3. Append again (a plain step's token by reference): the history kept on the GPU
        //    holds the accepted tokens.
        const third: DraftRequest[] = histories.map((h, slot) => {
          const d = ngramDraft(h, 1, maxN, minN);
          h.push(d.length && rng.next() < 0.8 ? d[0] : h[rng.int(0, h.length - 1)]);
          setRecord(slot * ROWS, h[h.length - 1]);
          return { mode: "append", slot, length: h.length, newest: (RECORD_REF | (slot * ROWS)) >>> 0, k: MAX_DRAFT };
        });
        got = await dispatch(third);
        histories.forEach((h, slot) => assertEquals(got.draft(slot), ngramDraft(h, MAX_DRAFT, maxN, minN), `round ${round} slot ${slot}: after append`));
        drafter.destroy();
      }
      // The random histories exercise every outcome.
      assert(found > total / 4 && found < total, `${found} of ${total} drafts found`);
      assert(partial > 0, "no partly accepted draft");
    } finally {
      records.destroy();
      read.destroy();
      device.destroy();
    }
  });
}
