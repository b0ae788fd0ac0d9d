/**
 * Three serve.ts replicas behind HAProxy on loopback, under a streaming load from the openai
 * client: a rolling restart (SIGTERM, drain, exit 0, back) loses no request, and a SIGKILL
 * fails only requests that were in flight on the killed replica. The scenario is
 * bench/rolling_restart.ts; its figures go to bench/results/ from there.
 */
import { test } from "./helpers/test.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { inspect } from "./helpers/platform.ts";
import { modelDir } from "./helpers/reference.ts";
import { runRollingRestart } from "../bench/rolling_restart.ts";

test("rolling restart behind HAProxy: zero failed requests; a SIGKILL fails only the killed replica's in-flight requests", async () => {
  const r = await runRollingRestart({ model: modelDir("stories260K"), concurrency: 3, maxTokens: 12, warmupS: 2, afterKillS: 2 });
  const show = inspect(r);
  assertEquals(r.restarts.map((x) => x.exitCode), [0, 0, 0], show);
  assert(r.phases.before.sent > 0 && r.phases.restart.sent > 0 && r.phases.kill.sent > 0, `load did not run in every phase: ${show}`);
  assertEquals(r.phases.before.failed, 0, show);
  assertEquals(r.phases.restart.failed, 0, show);
  // Only requests already in flight on the killed replica may fail: none started after the kill,
  // and no more than the client had open.
  assertEquals(r.kill.failedStartedAfterKill, 0, show);
  assert(r.kill.failed <= r.config.concurrency, show);
  assert(r.phases.kill.succeeded > 0, show);
});
