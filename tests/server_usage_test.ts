/**
 * Usage accounting through serve.ts: `cached_tokens` counts prompt tokens served from the
 * prefix cache, so it never exceeds `prompt_tokens`, even when a grammar's forced opening
 * (tool_choice "required") lies in the cache beyond the prompt.
 */
import { test } from "./helpers/test.ts";
import { assert } from "./helpers/assert.ts";
import { post, testServer } from "./helpers/server.ts";
import { TOOLS } from "./helpers/structured.ts";

test("server usage: cached_tokens never exceeds prompt_tokens (tool_choice required, sent three times)", async () => {
  const s = await testServer("qwen2-tools-tiny");
  try {
    const tools = TOOLS.map((f) => ({ type: "function", function: f }));
    const body = {
      messages: [{ role: "user", content: "What is the weather in Oslo today?" }],
      tools,
      tool_choice: "required",
      max_tokens: 24,
      temperature: 0,
    };
    let cachedSeen = 0;
    for (let i = 0; i < 3; i++) {
      const r = await post(`${s.base}/v1/chat/completions`, body);
      assert(r.status === 200, JSON.stringify(r.json));
      const u = r.json.usage;
      const cached = u.prompt_tokens_details.cached_tokens;
      assert(cached <= u.prompt_tokens, `request ${i + 1}: cached ${cached} > prompt ${u.prompt_tokens}`);
      cachedSeen = Math.max(cachedSeen, cached);
    }
    // The repeats did hit the cache (the check above is not vacuous).
    assert(cachedSeen > 0, "no prefix-cache hit on repeats");
  } finally {
    await s.close();
  }
});
