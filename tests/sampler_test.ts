/**
 * The GPU sampler (kernels/sample.wgsl) against CPU expectations on hand-made logits:
 * greedy ties, the sampled distribution, top-k/top-p/min-p support, seeding, penalties and
 * logprobs with alternatives.
 */
import { test } from "./helpers/test.ts";
import { createGpu, type Gpu } from "../src/gpu/device.ts";
import { loadKernelSources, PipelineCache } from "../src/kernels/registry.ts";
import { GpuSampler } from "../src/runner/sampler.ts";
import { buildStepBatch, metaSlotWords, packStepMeta, type StepCapacity } from "../src/runner/step_meta.ts";
import { SAMPLING_DEFAULTS, type SamplingParams, type TokenLogprob } from "../src/types/api.ts";
import type { SamplingRowExtras } from "../src/kernels/layout.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

/** One row's sampling parameters and row fields, flat (unset fields take their defaults). */
type RowParams = Partial<SamplingParams & SamplingRowExtras>;

interface Harness {
  gpu: Gpu;
  sampler: GpuSampler;
  sample(logits: number[][], rows: RowParams[]): Promise<Required<TokenLogprob>[]>;
  close(): void;
}

/** `edit` rewrites the kernel sources (to try a deliberately broken kernel). */
async function harness(vocab: number, maxRows: number, maxTop = 4, edit?: (sources: Map<string, string>) => void): Promise<Harness> {
  const gpu = await createGpu();
  const device = gpu.device;
  const sources = await loadKernelSources(["sample"]);
  edit?.(sources);
  const pipelines = new PipelineCache(device, sources);
  const sampler = new GpuSampler(device, pipelines, { vocab, maxSeqs: maxRows, maxTopLogprobs: maxTop, outRecords: maxRows });
  // The step metadata a real step writes: one sequence whose every token is a logit row.
  const cap: StepCapacity = { maxTokens: maxRows, maxSeqs: 1, maxLogitRows: maxRows, maxBlocksPerSeq: maxRows };
  const slotBytes = metaSlotWords(cap) * 4;
  const meta = device.createBuffer({ size: slotBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const logitsBuf = device.createBuffer({ size: maxRows * vocab * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const read = device.createBuffer({ size: maxRows * sampler.recordWords * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  sampler.bind(meta, slotBytes, logitsBuf);
  return {
    gpu,
    sampler,
    async sample(logits, rows) {
      const R = rows.length;
      const batch = buildStepBatch([{ tokens: new Array(R).fill(0), start: 0, blockTable: Array.from({ length: R }, (_, i) => i), logits: "all" }], 1);
      const sampled = rows.map((r) => {
        const { outputIndex = 0, seqSlot = 0, qRow, draftToken, ...sampling } = r;
        return { sampling: { ...SAMPLING_DEFAULTS, ...sampling }, outputIndex, seqSlot, qRow, draftToken };
      });
      device.queue.writeBuffer(meta, 0, packStepMeta(batch, cap, { rows: sampled, recordBase: 0 }));
      device.queue.writeBuffer(logitsBuf, 0, new Float32Array(logits.flat()));
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      sampler.encode(pass, 0, R);
      pass.end();
      encoder.copyBufferToBuffer(sampler.records, 0, read, 0, R * sampler.recordWords * 4);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ, 0, R * sampler.recordWords * 4);
      const out = new Uint32Array(read.getMappedRange(0, R * sampler.recordWords * 4).slice(0));
      read.unmap();
      const records = sampler.view(out);
      return rows.map((r, i) => {
        const t = records.at(i, r.topLogprobs ?? 0);
        return { ...t, top: t.top ?? [] };
      });
    },
    close() {
      sampler.destroy();
      for (const b of [meta, logitsBuf, read]) b.destroy();
      device.destroy();
    },
  };
}

function softmax(xs: number[], t = 1): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp((x - m) / t));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

/** Draws `n` samples of one logit row, each with its own output index (one row each). */
async function draw(h: Harness, row: number[], n: number, params: RowParams): Promise<number[]> {
  const counts = new Array(row.length).fill(0);
  const batch = 64;
  for (let done = 0; done < n; done += batch) {
    const rows = Array.from({ length: batch }, (_, i) => ({ ...params, outputIndex: done + i, seqSlot: i }));
    for (const s of await h.sample(rows.map(() => row), rows)) counts[s.id]++;
  }
  return counts;
}

const ROW = [1.0, 2.5, 0.3, 2.0, -1.0, 1.8, 0.0, 2.4];

test("sampler: greedy is argmax with the lowest index on ties", async () => {
  const h = await harness(300, 4);
  try {
    const a = Array.from({ length: 300 }, (_, i) => Math.sin(i));
    const b = a.map(() => 0);
    b[7] = 5;
    b[250] = 5;
    const c = a.map((v) => -v);
    const out = await h.sample([a, b, c], [{}, {}, {}]);
    const argmax = (xs: number[]) => xs.indexOf(Math.max(...xs));
    assertEquals(out.map((s) => s.id), [argmax(a), 7, argmax(c)]);
  } finally {
    h.close();
  }
});

test("sampler: temperature sampling follows softmax(logits / T)", async () => {
  const h = await harness(ROW.length, 64);
  try {
    for (const t of [1, 0.5]) {
      const n = 64 * 64;
      const counts = await draw(h, ROW, n, { temperature: t, seed: 7 });
      const p = softmax(ROW, t);
      // Chi-square with 7 degrees of freedom: 24.3 is the 0.1% tail.
      const chi = counts.reduce((acc, c, i) => acc + (c - n * p[i]) ** 2 / (n * p[i]), 0);
      assert(chi < 24.3, `T=${t}: chi-square ${chi.toFixed(1)} for ${counts} vs ${p.map((x) => (x * n).toFixed(0))}`);
    }
  } finally {
    h.close();
  }
});

test("sampler: top-k, top-p and min-p keep exactly their support", async () => {
  const h = await harness(ROW.length, 64);
  try {
    const order = [...ROW.keys()].sort((a, b) => ROW[b] - ROW[a]); // 1, 7, 3, 5, 0, 2, 6, 4
    const support = (counts: number[]) => counts.flatMap((c, i) => (c > 0 ? [i] : [])).sort();
    assertEquals(support(await draw(h, ROW, 1024, { temperature: 1, topK: 3 })), order.slice(0, 3).sort());
    // top-p: the smallest set of most likely tokens whose mass reaches p.
    const p = softmax(ROW);
    let mass = 0;
    const nucleus: number[] = [];
    for (const i of order) {
      nucleus.push(i);
      mass += p[i];
      if (mass >= 0.8) break;
    }
    assertEquals(support(await draw(h, ROW, 1024, { temperature: 1, topP: 0.8 })), nucleus.sort());
    // min-p 0.5: tokens at least half as likely as the best.
    const kept = ROW.flatMap((v, i) => (Math.exp(v - 2.5) >= 0.5 ? [i] : []));
    assertEquals(support(await draw(h, ROW, 1024, { temperature: 1, minP: 0.5 })), kept.sort());
    // top-k 1 is greedy whatever the temperature.
    assertEquals(support(await draw(h, ROW, 256, { temperature: 2, topK: 1 })), [1]);
  } finally {
    h.close();
  }
});

test("sampler: a seed gives the same token for the same output index in any row", async () => {
  const h = await harness(1000, 16);
  try {
    const row = Array.from({ length: 1000 }, (_, i) => Math.cos(i * 0.37) * 2);
    const params = Array.from({ length: 16 }, (_, i) => ({ temperature: 1, seed: 42, outputIndex: i, seqSlot: i }));
    const first = (await h.sample(params.map(() => row), params)).map((s) => s.id);
    const reversed = [...params].reverse();
    const second = (await h.sample(reversed.map(() => row), reversed)).map((s) => s.id).reverse();
    assertEquals(second, first);
    const other = (await h.sample(params.map(() => row), params.map((p) => ({ ...p, seed: 43 })))).map((s) => s.id);
    assert(JSON.stringify(other) !== JSON.stringify(first), "the seed changed nothing");
    assert(new Set(first).size > 4, `samples do not vary with the output index: ${first}`);
  } finally {
    h.close();
  }
});

test("sampler: repetition, presence and frequency penalties", async () => {
  const h = await harness(8, 4);
  try {
    const row = [0, 3, 0, 2.8, 0, -1, 0, 0];
    // Repetition over the prompt: token 1 is in the prompt, 3 > 2.8 / 1.2 no longer wins.
    h.sampler.admit(0, [1, 5], []);
    assertEquals((await h.sample([row], [{ repetitionPenalty: 1.2 }]))[0].id, 3);
    // Negative logits are multiplied: token 5 (-1) in the prompt gets -1.2, still not picked.
    // Presence/frequency count outputs only: the prompt token 1 is not penalised...
    h.sampler.admit(1, [1], []);
    assertEquals((await h.sample([row], [{ presencePenalty: 1, seqSlot: 1 }]))[0].id, 1);
    // ...but once 1 has been sampled (the kernel counts it), presence moves the choice.
    assertEquals((await h.sample([row], [{ presencePenalty: 1, seqSlot: 1 }]))[0].id, 3);
    // Frequency scales with the count, presence does not (counts of a resumed sequence).
    h.sampler.admit(2, [], [1, 1, 1, 3]);
    assertEquals((await h.sample([row], [{ frequencyPenalty: 0.15, seqSlot: 2 }]))[0].id, 3);
    h.sampler.admit(2, [], [1, 1, 1, 3]);
    assertEquals((await h.sample([row], [{ presencePenalty: 0.15, seqSlot: 2 }]))[0].id, 1);
    // Penalties at their neutral values change nothing.
    h.sampler.admit(3, [1], [1, 1]);
    assertEquals((await h.sample([row], [{ seqSlot: 3, repetitionPenalty: 1 }]))[0].id, 1);
  } finally {
    h.close();
  }
});

test("sampler: logprobs are the raw log-softmax, with the best alternatives in order", async () => {
  const h = await harness(500, 2, 5);
  try {
    const row = Array.from({ length: 500 }, (_, i) => Math.sin(i * 1.3) * 3);
    row[123] = row[321] = 4; // a tie: the lower index comes first
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    const [g, s] = await h.sample([row, row], [
      { logprobs: true, topLogprobs: 5 },
      { logprobs: true, topLogprobs: 2, temperature: 1, seed: 3 },
    ]);
    assertEquals(g.id, 123);
    assert(Math.abs(g.logprob - (4 - lse)) < 1e-4, `${g.logprob} vs ${4 - lse}`);
    const expected = [...row.keys()].sort((a, b) => row[b] - row[a] || a - b).slice(0, 5);
    assertEquals(g.top.map((t) => t.id), expected);
    g.top.forEach((t) => assert(Math.abs(t.logprob - (row[t.id] - lse)) < 1e-4));
    assertEquals(s.top.length, 2);
    assert(Math.abs(s.logprob - (row[s.id] - lse)) < 1e-4);
  } finally {
    h.close();
  }
});

// Rejection sampling with a draft distribution q (speculative decoding, method "draft").
const P_LOGITS = [1.0, 2.5, 0.3, 2.0, -1.0, 1.8, 0.0, 2.4];
// q puts more mass than p on some tokens (rejections there) and less on others.
const Q = [0.30, 0.05, 0.20, 0.05, 0.10, 0.05, 0.20, 0.05];
/** Upper 1% point of chi-square with 7 degrees of freedom. */
const CHI2_7_1PCT = 18.475;
const VERIFY_ROWS = 2048;
const VERIFY_SAMPLES = 10 * VERIFY_ROWS;

/**
 * Verifies VERIFY_SAMPLES drafts d ~ q (drawn here) against q in probs row 0, each with its own
 * output index: the counts of the tokens made, and how many drafts were kept.
 */
async function verifyDrafts(h: Harness, seed: number, params: RowParams = { temperature: 1 }): Promise<{ counts: number[]; kept: number }> {
  const device = h.gpu.device;
  const probs = device.createBuffer({ size: Q.length * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(probs, 0, new Float32Array(Q));
  h.sampler.useProbs(probs, Q.length);
  let state = seed;
  const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const drawQ = () => {
    let u = rand();
    for (let i = 0; i < Q.length; i++) if ((u -= Q[i]) < 0) return i;
    return Q.length - 1;
  };
  const counts = new Array(Q.length).fill(0);
  let kept = 0;
  for (let done = 0; done < VERIFY_SAMPLES; done += VERIFY_ROWS) {
    const rows = Array.from({ length: VERIFY_ROWS }, (_, i) => ({ ...params, seed, outputIndex: done + i, seqSlot: i, qRow: 0, draftToken: drawQ() }));
    const out = await h.sample(rows.map(() => P_LOGITS), rows);
    out.forEach((t, i) => {
      counts[t.id]++;
      if (t.id === rows[i].draftToken) kept++;
    });
  }
  probs.destroy();
  return { counts, kept };
}

const chiSquare = (counts: number[], p: number[], n: number) => counts.reduce((acc, c, i) => acc + (c - n * p[i]) ** 2 / (n * p[i]), 0);

test("sampler: drafts d ~ q verified against q (accept with min(1, p/q), else resample max(p - q, 0)) give p; resampling p instead is told apart", async () => {
  const p = softmax(P_LOGITS);
  const n = VERIFY_SAMPLES;
  const h = await harness(Q.length, VERIFY_ROWS);
  try {
    const { counts, kept } = await verifyDrafts(h, 7);
    const chi = chiSquare(counts, p, n);
    assert(chi < CHI2_7_1PCT, `chi-square ${chi.toFixed(1)} for ${counts} vs ${p.map((x) => (x * n).toFixed(0))}`);
    // Drafts are kept with probability sum min(p, q) (4 standard deviations).
    const accept = p.reduce((a, x, i) => a + Math.min(x, Q[i]), 0);
    assert(Math.abs(kept - n * accept) < 4 * Math.sqrt(n * accept * (1 - accept)), `kept ${kept}, expected ${(n * accept).toFixed(0)}`);
    // The target's p after its own processing (T = 0.8, top-4): drafts outside its support
    // are always rejected, and the output follows the processed p.
    const top4 = [...P_LOGITS].sort((a, b) => b - a)[3];
    const e = P_LOGITS.map((x) => x >= top4 ? Math.exp(x / 0.8) : 0);
    const z = e.reduce((a, b) => a + b, 0);
    const pk = e.map((x) => x / z);
    const filtered = await verifyDrafts(h, 9, { temperature: 0.8, topK: 4 });
    assert(filtered.counts.every((c, i) => pk[i] > 0 || c === 0), `outside the top-4: ${filtered.counts}`);
    const kept4 = pk.map((x, i) => [x, filtered.counts[i]]).filter(([x]) => x > 0);
    // Chi-square with 3 degrees of freedom: 11.345 is the 1% tail.
    const chi4 = kept4.reduce((acc, [x, c]) => acc + (c - n * x) ** 2 / (n * x), 0);
    assert(chi4 < 11.345, `top-4: chi-square ${chi4.toFixed(1)} for ${filtered.counts} vs ${pk.map((x) => (x * n).toFixed(0))}`);
  } finally {
    h.close();
  }
  // The broken rule (on rejection, sample p itself) fails the same test.
  const residual = "let res = pi - q_at(qb, i);";
  const broken = await harness(Q.length, VERIFY_ROWS, 4, (sources) => {
    const text = sources.get("sample")!;
    assert(text.includes(residual), "the residual line moved: update this test");
    sources.set("sample", text.replace(residual, "let res = pi;"));
  });
  try {
    const { counts } = await verifyDrafts(broken, 7);
    const chi = chiSquare(counts, p, n);
    assert(chi > CHI2_7_1PCT, `the broken rule passed: chi-square ${chi.toFixed(1)}`);
  } finally {
    broken.close();
  }
});

test("sampler: a draft row (qRow, no draft token) writes its processed distribution q: softmax(logits / T) over the top-k, 0 elsewhere", async () => {
  const h = await harness(ROW.length, 4);
  const device = h.gpu.device;
  const V = ROW.length;
  const probs = device.createBuffer({ size: 3 * V * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  const read = device.createBuffer({ size: 3 * V * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.queue.writeBuffer(probs, 0, new Float32Array(3 * V).fill(-1));
    h.sampler.useProbs(probs, V);
    // Row 2 of the buffer (row 1 is left alone: -1), then a greedy row (writes nothing).
    const out = await h.sample([ROW, ROW], [{ temperature: 0.7, topK: 5, seed: 3, qRow: 2 }, { temperature: 0, qRow: 0 }]);
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(probs, 0, read, 0, 3 * V * 4);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const q = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    const top = [...ROW].sort((a, b) => b - a)[4];
    const kept = ROW.map((x) => x >= top);
    const e = ROW.map((x, i) => kept[i] ? Math.exp(x / 0.7) : 0);
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((x, i) => assert(Math.abs(q[2 * V + i] - x / z) < 1e-5, `q[${i}] = ${q[2 * V + i]}, want ${x / z}`));
    assert(q.subarray(0, 2 * V).every((x) => x === -1), `rows 0 and 1 changed: ${q.subarray(0, 2 * V)}`);
    assert(kept[out[0].id], `the draft token ${out[0].id} is outside the top-k`);
  } finally {
    probs.destroy();
    read.destroy();
    h.close();
  }
});
