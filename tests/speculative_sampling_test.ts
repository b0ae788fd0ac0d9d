/**
 * Speculative sampling keeps the target's distribution: at temperature 1 on stories260K, the
 * first 3 tokens of many completions of a copying prompt with speculation and without
 * (disjoint fixed seeds) pass a chi-square test of homogeneity (p > 0.01). n-gram: the prompt
 * repeats a passage, so speculation arms at the first decode and the 2nd token is a verified
 * draft. Draft model: a perturbed copy of stories260K (its final norm's weights scaled
 * elementwise: another distribution q, with the same tokenizer) drafts d ~ q, verified with
 * min(1, p/q) and the residual max(p - q, 0).
 */
import { test } from "./helpers/test.ts";
import { createEngine, type EngineClient, type EngineStats, type SpeculativeConfig } from "../mod.ts";
import { modelDir } from "./helpers/reference.ts";
import * as sys from "./helpers/platform.ts";
import { assert } from "./helpers/assert.ts";

/** Completions per arm (n = 16 per request). */
const SAMPLES = 20_000;
const N = 16;
const COPY = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat";
const NGRAM: SpeculativeConfig = { method: "ngram", numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 1 };

/** ln Γ(x) (Lanczos, g = 7). */
function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** P(X > x) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df/2, x/2). */
export function chiSquareSurvival(x: number, df: number): number {
  const a = df / 2;
  const z = x / 2;
  if (z <= 0) return 1;
  const front = Math.exp(-z + a * Math.log(z) - logGamma(a));
  if (z < a + 1) {
    // Series for P(a, z).
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 1000 && term > sum * 1e-15; n++) sum += term *= z / (a + n);
    return 1 - front * sum;
  }
  // Continued fraction for Q(a, z) (Lentz).
  let b = z + 1 - a;
  let c = 1e300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return front * h;
}

/**
 * Chi-square test of homogeneity of two samples of categories: categories expected fewer
 * than 5 times in either sample are pooled into one. Returns the statistic, df and p.
 */
export function homogeneity(a: Map<string, number>, b: Map<string, number>): { chi: number; df: number; p: number } {
  const na = [...a.values()].reduce((x, y) => x + y, 0);
  const nb = [...b.values()].reduce((x, y) => x + y, 0);
  const cells: [number, number][] = [];
  const rest: [number, number] = [0, 0];
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const cell: [number, number] = [a.get(key) ?? 0, b.get(key) ?? 0];
    const total = cell[0] + cell[1];
    if (Math.min(total * na, total * nb) / (na + nb) >= 5) cells.push(cell);
    else rest[0] += cell[0], rest[1] += cell[1];
  }
  if (rest[0] + rest[1] > 0) cells.push(rest);
  let chi = 0;
  for (const [x, y] of cells) {
    const total = x + y;
    const ea = total * na / (na + nb);
    const eb = total * nb / (na + nb);
    chi += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
  }
  const df = cells.length - 1;
  return { chi, df, p: chiSquareSurvival(chi, df) };
}

test("chiSquareSurvival matches known quantiles", () => {
  // Upper 1% and 5% points of chi-square with 1, 10 and 100 degrees of freedom.
  for (const [x, df, p] of [[6.635, 1, 0.01], [3.841, 1, 0.05], [23.209, 10, 0.01], [18.307, 10, 0.05], [135.807, 100, 0.01]]) {
    assert(Math.abs(chiSquareSurvival(x, df) - p) < 2e-4, `chi2(${x}, ${df}) = ${chiSquareSurvival(x, df)}, want ${p}`);
  }
});

/**
 * Counts of the first 3 tokens of SAMPLES completions at temperature 1, seeds from `seed0`
 * (`maxTokens` 4: a draft model then drafts 2 tokens after the first, see below).
 */
async function firstTokens(engine: EngineClient, seed0: number, maxTokens = 3, prompt = COPY): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const requests = Array.from({ length: SAMPLES / N }, (_, r) =>
    engine.generate({ prompt, maxTokens, ignoreEos: true, temperature: 1, n: N, seed: seed0 + r * N }));
  for (const result of await Promise.all(requests)) {
    for (const c of result.choices) {
      const key = c.ids.slice(0, 3).join(",");
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * Asserts that `got` passes the homogeneity test against `want`, and that the test has power
 * at this size: moving 3% of `want`'s samples onto its most common sequence is told apart.
 */
function assertSameDistribution(got: Map<string, number>, want: Map<string, number>, label: string): { chi: number; df: number; p: number } {
  const result = homogeneity(got, want);
  const { chi, df, p } = result;
  assert(df >= 10, `only ${df + 1} categories`);
  assert(p > 0.01, `${label} vs plain: chi-square ${chi.toFixed(1)}, df ${df}, p ${p.toExponential(2)}`);
  const top = [...want.entries()].sort((x, y) => y[1] - x[1]);
  const skewed = new Map(want);
  let moved = 0;
  for (const [key, count] of top.slice(1)) {
    const m = Math.min(count, Math.ceil(SAMPLES * 0.03) - moved);
    if (m <= 0) break;
    skewed.set(key, count - m);
    moved += m;
  }
  skewed.set(top[0][0], top[0][1] + moved);
  assert(homogeneity(got, skewed).p < 0.01, "a 3% shift was not detected");
  return result;
}

test(`speculative sampling: ${SAMPLES} samples of the first 3 tokens at temperature 1 match plain sampling (chi-square p > 0.01)`, async () => {
  const opts = { model: modelDir("stories260K"), maxBatchTokens: 512, maxSeqs: 64 };
  const plain = await createEngine(opts);
  const spec = await createEngine({ ...opts, speculative: NGRAM });
  try {
    // Disjoint seeds: the seeded sampler would otherwise draw the very same tokens in both.
    const [want, got] = await Promise.all([firstTokens(plain, 1 << 20), firstTokens(spec, 0)]);
    const s = spec.stats();
    // Drafts were verified at temperature 1, some accepted and some rejected.
    assert(s.specAcceptedTokens > 0 && s.specAcceptedTokens < s.specDraftTokens, `drafts ${s.specDraftTokens}, accepted ${s.specAcceptedTokens}`);
    assertSameDistribution(got, want, "n-gram");
  } finally {
    await plain.close();
    await spec.close();
  }
});

/**
 * A copy of stories260K whose final RMSNorm weights are scaled elementwise by factors in
 * [0.3, 1.7] (fixed seed): the same tokenizer, another next-token distribution.
 */
async function perturbedStories(): Promise<string> {
  const src = modelDir("stories260K");
  const dir = await sys.makeTempDir({ prefix: "draft-q-" });
  for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    await sys.copyFile(`${src}/${f}`, `${dir}/${f}`);
  }
  const bytes = new Uint8Array(await sys.readFile(`${src}/model.safetensors`));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  const norm = header["model.norm.weight"];
  assert(norm?.dtype === "F32", "stories260K's final norm is not f32");
  let state = 12345;
  const rand = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let o = 8 + headerLen + norm.data_offsets[0]; o < 8 + headerLen + norm.data_offsets[1]; o += 4) {
    view.setFloat32(o, view.getFloat32(o, true) * (0.3 + 1.4 * rand()), true);
  }
  await sys.writeFile(`${dir}/model.safetensors`, bytes);
  return dir;
}

test(`speculative sampling, draft model with q != p: ${SAMPLES} samples of the first 3 tokens at temperature 1 match plain sampling (chi-square p > 0.01)`, async () => {
  const draftDir = await perturbedStories();
  // maxTokens 4: after the first token (sampled at the prefill) the draft model drafts 2, so
  // the 2nd and 3rd tokens come from verification rows (accepted drafts or residual samples).
  const opts = { model: modelDir("stories260K"), maxBatchTokens: 1024, maxSeqs: 128 };
  const plain = await createEngine(opts);
  const spec = await createEngine({ ...opts, speculative: { method: "draft", numSpeculativeTokens: 2, model: draftDir } });
  try {
    // Short (the draft model reads each completion's prompt itself: no prefix cache there), and
    // followed by many likely tokens: q and p differ (drafts are rejected ~35% of the time).
    const prompt = "She saw a";
    const [want, got] = await Promise.all([firstTokens(plain, 1 << 20, 3, prompt), firstTokens(spec, 0, 4, prompt)]);
    const s: EngineStats = spec.stats();
    // A good mix: drafts accepted and rejected at both positions.
    assert(s.specAcceptedTokens > 0.2 * s.specDraftTokens && s.specAcceptedTokens < 0.9 * s.specDraftTokens, `drafts ${s.specDraftTokens}, accepted ${s.specAcceptedTokens}`);
    assert(s.specAcceptedPerPosition[1] > 0, `accepted per position ${s.specAcceptedPerPosition}`);
    const r = assertSameDistribution(got, want, "draft model");
    console.log(`draft model: chi2 ${r.chi.toFixed(0)}, df ${r.df}, p ${r.p.toFixed(2)}; ${s.specDrafts} verifications, ${s.specDraftTokens} drafts, ${s.specAcceptedTokens} accepted (${s.specAcceptedPerPosition})`);
  } finally {
    await plain.close();
    await spec.close();
    await sys.remove(draftDir, { recursive: true });
  }
});
