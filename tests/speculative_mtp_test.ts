/**
 * Speculative decoding with the checkpoint's MTP head (method "mtp") on qwen35-tiny plus a
 * head written at test time (tests/helpers/mtp_checkpoint.ts): the config surface; the head's
 * drafts equal a TypeScript reference computed from the target's stored hidden rows (read
 * back), at the first draft and after accepted tokens (catch-up, chained rows rewritten);
 * through the engine, greedy outputs identical to plain decoding (1 stream, 4 concurrent with
 * max_tokens cuts), drafts accepted with a rigged head, nothing held after the run; a
 * checkpoint without a head is refused with MtpHeadMissingError.
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type GenerateOptions } from "../mod.ts";
import { loadGolden, modelDir } from "./helpers/reference.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { addMtpHead, referenceDrafts, TINY, writeMtpCheckpoint } from "./helpers/mtp_checkpoint.ts";
import { writeQwen35MoeFromDense } from "./helpers/qwen35_moe_checkpoint.ts";
import { mtpHeadBytes, openMtpTensors } from "../src/model/mtp_source.ts";
import { stepScratchBytes } from "../src/runner/kv_budget.ts";
import { parseSpeculativeConfig } from "../src/engine/speculative_config.ts";
import { MtpDrafter } from "../src/engine/mtp_drafter.ts";
import { ModelRunner } from "../src/runner/model_runner.ts";
import { buildStepBatch } from "../src/runner/step_meta.ts";
import { Sequence } from "../src/scheduler/sequence.ts";
import { SpeculationState } from "../src/scheduler/speculation.ts";
import { LlmError, MtpHeadMissingError, SAMPLING_DEFAULTS } from "../src/types/api.ts";
import { parseServeArgs } from "../src/server/args.ts";

const MTP = { method: "mtp", numSpeculativeTokens: 3 } as const;

test("mtp config: vLLM's JSON without a model; other methods' fields refused", () => {
  assertEquals(parseSpeculativeConfig('{"method":"mtp","num_speculative_tokens":2}'), { method: "mtp", numSpeculativeTokens: 2 });
  const param = (json: string) => assertThrows(() => parseSpeculativeConfig(json), LlmError).param;
  assertEquals(param('{"method":"mtp","num_speculative_tokens":2,"model":"/m"}'), "speculative.model");
  assertEquals(param('{"method":"mtp","num_speculative_tokens":2,"prompt_lookup_max":2}'), "speculative.promptLookupMax");
  assertEquals(param('{"method":"mtp","num_speculative_tokens":0}'), "speculative.numSpeculativeTokens");
  assertEquals(param('{"method":"eagle","num_speculative_tokens":2}'), "speculative.method");
  const json = '{"method":"mtp","num_speculative_tokens":2}';
  assertEquals(parseServeArgs(["--speculative-config", json], () => undefined)!.tuning!.speculative, { method: "mtp", numSpeculativeTokens: 2 });
});

async function readRows(runner: ModelRunner, slots: number[]): Promise<Float32Array[]> {
  const device = runner.gpu.device;
  const store = runner.hiddenStore!;
  const read = device.createBuffer({ size: store.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(store, 0, read, 0, store.size);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const all = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  read.destroy();
  return slots.map((s) => all.slice(s * TINY.H, (s + 1) * TINY.H));
}

function argmax(l: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
  return best;
}

for (const kernelFamily of ["cpu", "gpu"] as const) {
  test(`mtp head (${kernelFamily} kernels): drafts equal a TypeScript reference from the target's stored hidden rows, first and after accepted tokens`, async () => {
    await withTempDir(async (dir) => {
      const tensors = await writeMtpCheckpoint(dir, "random");
      const bs = 16;
      const target = await ModelRunner.load(dir, { kernelFamily, weightDType: "f32", kvDtype: "f32", maxTokens: 64, maxSeqs: 2, maxLogitRows: 64, blockSize: bs, numBlocks: 8, hiddenStore: true });
      const drafter = await MtpDrafter.load(target, dir, 3, { weightDType: "f32" });
      try {
        const prompt = (await loadGolden("qwen35-tiny")).cases[1].prompt_ids;
        const P = prompt.length;
        const seq = new Sequence(0, prompt, { maxTokens: 40, sampling: { ...SAMPLING_DEFAULTS, temperature: 0 }, stopTokenIds: new Set() }, 0);
        seq.blockTable = [0, 1, 2];
        seq.slot = 0;
        seq.status = "running";
        seq.speculation = new SpeculationState(MTP);
        const V = TINY.V;
        const step = (tokens: number[], start: number) =>
          target.logits(buildStepBatch([{ tokens, start, blockTable: seq.blockTable, logits: "all", stateSlot: 0 }], bs));
        const slot = (p: number) => seq.blockTable[Math.floor(p / bs)] * bs + (p % bs);
        const embed = tensors.get("model.language_model.embed_tokens.weight")!.data;

        const logits = await step([...prompt], 0);
        seq.outputIds.push(argmax(logits.subarray((P - 1) * V, P * V)));
        seq.numComputed = P;
        await drafter.propose([seq]);
        const first = seq.speculation.draft(seq.knownTokens(), 3);
        const hidden = await readRows(target, Array.from({ length: P }, (_, p) => slot(p)));
        // The stored rows are the hidden states after the final norm: the (tied) LM head of
        // each is the target's logits row.
        for (let p = 0; p < P; p++) {
          let worst = 0;
          for (let v = 0; v < V; v++) {
            let s = 0;
            for (let i = 0; i < TINY.H; i++) s += embed[v * TINY.H + i] * hidden[p][i];
            worst = Math.max(worst, Math.abs(s - logits[p * V + v]));
          }
          assert(worst < 1e-3, `row ${p}: LM head of the stored row is ${worst} off the logits`);
        }
        const ref = referenceDrafts(tensors, seq.knownTokens(), hidden, 3);
        assertEquals(first, ref.drafts, "first drafts");

        // The target accepts the first draft and samples its own token after it; the head
        // catches up on those positions and rewrites its chained rows.
        const more = await step([seq.outputIds[0], first[0]], P);
        seq.outputIds.push(first[0], argmax(more.subarray(V, 2 * V)));
        seq.numComputed = P + 2;
        await drafter.propose([seq]);
        const second = seq.speculation.draft(seq.knownTokens(), 3);
        const hidden2 = await readRows(target, Array.from({ length: P + 2 }, (_, p) => slot(p)));
        const ref2 = referenceDrafts(tensors, seq.knownTokens(), hidden2, 3);
        assertEquals(second, ref2.drafts, "drafts after accepted tokens");
        assert(drafter.blocks.usedCount > 0);
        drafter.release(seq);
        assertEquals(drafter.blocks.usedCount, 0);
      } finally {
        drafter.close();
        target.close();
      }
    });
  });
}

async function sameOutputs(plain: EngineClient, spec: EngineClient, reqs: GenerateOptions[], label: string): Promise<void> {
  const want = await Promise.all(reqs.map((r) => plain.generate(r)));
  const got = await Promise.all(reqs.map((r) => spec.generate(r)));
  got.forEach((r, i) => {
    assertEquals(r.ids, want[i].ids, `${label} request ${i}`);
    assertEquals(r.finishReason, want[i].finishReason);
  });
}

async function idle(engine: EngineClient): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const s = engine.stats();
    if (s.running === 0 && s.waiting === 0 && s.kvBlocksUsed === 0 && s.specDraftKvBlocksUsed === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const kernelFamily of ["cpu", "gpu"] as const) {
  test(`mtp (${kernelFamily} kernels): greedy outputs equal plain decoding (1 stream, 4 concurrent with max_tokens cuts); a rigged head gets drafts accepted; nothing held after`, async () => {
    const cases = (await loadGolden("qwen35-tiny")).cases;
    await withTempDir(async (dir) => {
      for (const variant of ["random", "rigged"] as const) {
        const model = `${dir}/${variant}`;
        await writeMtpCheckpoint(model, variant);
        const opts = { model, maxBatchTokens: 64, maxSeqs: 4, kernelFamily };
        const plain = await createEngine(opts);
        const spec = await createEngine({ ...opts, speculative: MTP });
        try {
          await sameOutputs(plain, spec, [{ prompt: cases[0].prompt_ids, maxTokens: 24, ignoreEos: true }], `${variant} 1 stream`);
          const reqs: GenerateOptions[] = cases.slice(0, 4).map((c, i) => ({ prompt: c.prompt_ids, maxTokens: [5, 17, 24, 2][i], ignoreEos: true }));
          await sameOutputs(plain, spec, reqs, `${variant} 4 streams`);
          const s = spec.stats();
          assert(s.specDrafts > 0 && s.specDraftTokens > 0, `${variant}: no verification`);
          // Rejections restore the target's recurrent state and replay the accepted tokens.
          assert(s.specAcceptedTokens < s.specDraftTokens && s.specReplayTokens > 0, `${variant}: ${s.specAcceptedTokens}/${s.specDraftTokens} accepted, ${s.specReplayTokens} replayed`);
          if (variant === "rigged") assert(s.specAcceptedTokens > 0, `rigged head: ${s.specAcceptedTokens}/${s.specDraftTokens} accepted`);
          await idle(spec);
          const end = spec.stats();
          assertEquals([end.kvBlocksUsed, end.specDraftKvBlocksUsed, end.stateSlotsUsed, end.kvBytesUsed], [0, 0, 0, 0], variant);
          assert(end.specDraftKvBlocksTotal > 0);
        } finally {
          await plain.close();
          await spec.close();
        }
      }
    });
  });
}

test("mtp: kvBytesTotal counts the hidden-row stores and the head's KV layer; nothing used when idle", async () => {
  await withTempDir(async (dir) => {
    const model = `${dir}/random`;
    await writeMtpCheckpoint(model, "random");
    const opts = { model, maxBatchTokens: 64, maxSeqs: 4, kernelFamily: "cpu" as const, numBlocks: 24, blockSize: 8 };
    // n-gram speculation has the same KV blocks, state slots and snapshots, and no MTP buffers.
    const ngram = await createEngine({ ...opts, speculative: { method: "ngram", numSpeculativeTokens: 3, promptLookupMax: 4, promptLookupMin: 2 } });
    const mtp = await createEngine({ ...opts, speculative: MTP });
    try {
      const { H, nkv, hd } = TINY;
      // Two f32 stores of a row per KV slot (24 blocks of 8), and the head's one-layer KV cache
      // of as many blocks (K and V, f16 or f32 as the adapter allows).
      const stores = 2 * 24 * 8 * H * 4;
      const headKv = mtp.stats().kvBytesTotal - ngram.stats().kvBytesTotal - stores;
      const layer = 24 * 8 * nkv * hd * 2;
      assert(headKv === layer * 2 || headKv === layer * 4, `head KV ${headKv} bytes, want ${layer * 2} or ${layer * 4}`);
      await mtp.generate({ prompt: "Hello there", maxTokens: 4, ignoreEos: true });
      await idle(mtp);
      assertEquals([mtp.stats().kvBytesUsed, mtp.stats().kvBlocksTotal], [0, 24]);
    } finally {
      await ngram.close();
      await mtp.close();
    }
  });
});

test("mtp: with gpuMemoryBytes the KV budget leaves room for the head's weights (estimated from its tensor list: exact here, also quantized)", async () => {
  await withTempDir(async (dir) => {
    await writeMtpCheckpoint(dir, "random");
    const gpuMemoryBytes = 64 << 20;
    for (const quantization of ["none", "q8_0"] as const) {
      const opts = { kernelFamily: "cpu" as const, quantization, maxTokens: 64, maxSeqs: 4, blockSize: 8, gpuMemoryBytes };
      const target = await ModelRunner.load(dir, { ...opts, hiddenStore: true });
      const head = await ModelRunner.loadMtp(target, dir, { quantization });
      try {
        const headBytes = head.memory!.weightBytes;
        assertEquals(await mtpHeadBytes(dir, target.spec, { quantization }), headBytes, quantization);
        const scratch = stepScratchBytes(target.spec, { maxTokens: 64, maxLogitRows: 4 });
        assertEquals(target.memory!.kvBudget, { bytes: gpuMemoryBytes - target.memory!.weightBytes - headBytes - scratch, source: "gpu_memory_bytes" }, quantization);
      } finally {
        head.close();
        target.close();
      }
    }
  });
});

test("mtp: a checkpoint without an MTP head is refused with MtpHeadMissingError", async () => {
  const e = await createEngine({ model: modelDir("qwen35-tiny"), speculative: MTP }).catch((x) => x);
  assert(e instanceof LlmError, String(e));
  assertEquals([e.name, e.code, e.param], ["MtpHeadMissingError", "invalid_request", "speculative.method"]);
  assert(/mtp/.test(e.message), e.message);
});

test("mtp head loader: the hub layout and a causal-LM export give the same head as a one-layer model; GGUF refused", async () => {
  await withTempDir(async (dir) => {
    await writeMtpCheckpoint(`${dir}/hub`, "random");
    await writeMtpCheckpoint(`${dir}/lm`, "random", 5, "causal_lm");
    const [hub, lm] = [await openMtpTensors(`${dir}/hub`), await openMtpTensors(`${dir}/lm`)];
    try {
      const names = hub.names().sort();
      assertEquals(names, lm.names().sort());
      assert(names.includes("model.layers.0.self_attn.q_proj.weight") && names.includes("model.norm.weight") && names.includes("mtp.fc.weight"), names.join());
      assert(!names.some((n) => n.startsWith("mtp.layers.") || n.startsWith("model.layers.1")), names.join());
      for (const n of names) assertEquals(await hub.read(hub.get(n)), await lm.read(lm.get(n)), n);
    } finally {
      hub.close();
      lm.close();
    }
  });
  const e = await assertRejects(() => openMtpTensors("/nowhere/model.gguf"), MtpHeadMissingError);
  assertEquals(e.param, "speculative.method");
});

test("mtp on Qwen3.5-MoE (cpu kernels): a head layer with routed and shared experts; greedy outputs equal plain decoding; nothing held after", async () => {
  const cases = (await loadGolden("qwen35-tiny")).cases;
  await withTempDir(async (dir) => {
    await writeQwen35MoeFromDense(dir, { experts: 4, topK: 2, layout: "fused" });
    await addMtpHead(dir, 3);
    const opts = { model: dir, maxBatchTokens: 64, maxSeqs: 4, kernelFamily: "cpu" as const };
    const plain = await createEngine(opts);
    const spec = await createEngine({ ...opts, speculative: MTP });
    try {
      const reqs: GenerateOptions[] = cases.slice(0, 3).map((c, i) => ({ prompt: c.prompt_ids, maxTokens: [20, 9, 14][i], ignoreEos: true }));
      await sameOutputs(plain, spec, reqs, "moe");
      assert(spec.stats().specDraftTokens > 0, "no drafts");
      await idle(spec);
      const end = spec.stats();
      assertEquals([end.kvBlocksUsed, end.specDraftKvBlocksUsed, end.stateSlotsUsed], [0, 0, 0]);
    } finally {
      await plain.close();
      await spec.close();
    }
  });
});

test("mtp (cpu kernels): under preemption (16 blocks of 8 for 4 streams) and with seeded sampling, outputs equal plain decoding; nothing held after", async () => {
  const cases = (await loadGolden("qwen35-tiny")).cases;
  await withTempDir(async (dir) => {
    await writeMtpCheckpoint(dir, "rigged");
    const opts = { model: dir, maxBatchTokens: 64, maxSeqs: 4, kernelFamily: "cpu" as const, blockSize: 8, numBlocks: 16 };
    const plain = await createEngine(opts);
    const spec = await createEngine({ ...opts, speculative: MTP });
    try {
      const reqs: GenerateOptions[] = cases.slice(0, 4).map((c) => ({ prompt: c.prompt_ids, maxTokens: 24, ignoreEos: true }));
      await sameOutputs(plain, spec, reqs, "preempted");
      assert(spec.stats().preemptions > 0, "no preemption: the test does not cover it");
      await sameOutputs(plain, spec, reqs.map((r, i) => ({ ...r, temperature: 1, seed: 40 + i })), "sampled");
      const s = spec.stats();
      assert(s.specAcceptedTokens > 0, `${s.specAcceptedTokens}/${s.specDraftTokens} accepted`);
      await idle(spec);
      const end = spec.stats();
      assertEquals([end.kvBlocksUsed, end.specDraftKvBlocksUsed, end.stateSlotsUsed], [0, 0, 0]);
    } finally {
      await plain.close();
      await spec.close();
    }
  });
});
