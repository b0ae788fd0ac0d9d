/**
 * The live dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * it renders, and its numbers move while a load runs. The screenshot is kept at
 * tests/output/dashboard.png.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { chromium } from "playwright-core";
import { assert, assertEquals } from "./helpers/assert.ts";
import { testServer } from "./helpers/server.ts";

// Page functions run in the browser, where `document` exists.
declare const document: any;

const CHROMIUM = sys.env("CHROMIUM_PATH") ?? "/usr/bin/chromium";

test({
  name: "dashboard: renders in headless Chromium and its numbers move under load",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const s = await testServer("stories260K", { maxBatchTokens: 64 });
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${s.base}/`);
      await page.waitForFunction(() => Number(document.getElementById("updates")?.textContent) >= 1, undefined, { timeout: 20000 });
      const read = () =>
        page.evaluate(() => {
          const t = (id: string) => document.getElementById(id)!.textContent!;
          return { steps: Number(t("steps")), decode: Number(t("decode-tokens")), total: Number(t("kv-blocks-total")), status: t("status") };
        });
      const before = await read();
      assertEquals(before.status, "live");
      assert(before.total > 0, `KV blocks total ${before.total}`);

      // A load: 12 concurrent requests; the page must show steps and tokens moving while it runs.
      const load = Promise.all(Array.from({ length: 12 }, (_, i) =>
        fetch(`${s.base}/v1/completions`, {
          method: "POST",
          body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 150 + i * 10, ignore_eos: true, temperature: 0 }),
        }).then((r) => r.json())
      ));
      await page.waitForFunction(
        (b) => Number(document.getElementById("steps")!.textContent) > b && Number(document.getElementById("running")!.textContent) > 0,
        before.steps,
        { timeout: 30000 },
      );
      const during = await read();
      await sys.mkdir(new URL("./output/", import.meta.url), { recursive: true });
      await page.screenshot({ path: new URL("./output/dashboard.png", import.meta.url).pathname, fullPage: true });
      await load;
      await page.waitForFunction((d) => Number(document.getElementById("decode-tokens")!.textContent) > d, during.decode, { timeout: 20000 });
      const after = await read();
      assert(during.steps > before.steps && after.decode > during.decode, JSON.stringify({ before, during, after }));
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await s.close();
    }
  },
});

test({
  name: "dashboard: shows speculative decoding's acceptance rate from the engine's counters",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const speculative = { method: "ngram" as const, numSpeculativeTokens: 4, promptLookupMax: 4, promptLookupMin: 2 };
    const s = await testServer("stories260K", { maxSeqs: 4, tuning: { speculative } });
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
    try {
      // The copying prompt: 128 tokens, as the model does not copy it but repeats itself
      // later, where drafts are made and some accepted.
      const prompt = "The cat sat on the mat. The cat sat on the mat. The cat sat on the mat. The cat";
      const r = await fetch(`${s.base}/v1/completions`, {
        method: "POST",
        body: JSON.stringify({ prompt, max_tokens: 128, ignore_eos: true, temperature: 0 }),
      });
      assertEquals(r.status, 200);
      await r.json();
      const stats = await (await fetch(`${s.base}/dashboard/stats`)).json();
      assert(stats.specDraftTokens > 0 && stats.specAcceptedTokens > 0, JSON.stringify(stats));
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`${s.base}/`);
      await page.waitForFunction(() => Number(document.getElementById("updates")?.textContent) >= 1, undefined, { timeout: 20000 });
      const shown = await page.evaluate(() => ({
        rate: document.getElementById("spec-acceptance")!.textContent,
        drafted: document.getElementById("spec-draft-tokens")!.textContent,
        perStep: document.getElementById("spec-tokens-per-step")!.textContent,
      }));
      assertEquals(shown.rate, `${(100 * stats.specAcceptedTokens / stats.specDraftTokens).toFixed(1)}%`);
      assertEquals(shown.drafted, String(stats.specDraftTokens));
      assertEquals(shown.perStep, ((stats.specAcceptedTokens + stats.specDrafts) / stats.specDrafts).toFixed(2));
      assertEquals(errors, []);
    } finally {
      await browser.close();
      await s.close();
    }
  },
});
