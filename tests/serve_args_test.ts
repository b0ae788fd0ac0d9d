/** serve.ts's deployment flags: drain delay within the shutdown deadline, timeouts, caps. */
import { test } from "./helpers/test.ts";
import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { parseServeArgs, UsageError } from "../src/server/args.ts";

const parse = (...argv: string[]) => parseServeArgs(argv, () => undefined)!;

test("serve args: drain delay, shutdown deadline, listener limits and the per-request bound", () => {
  const d = parse();
  assertEquals([d.shutdownTimeoutMs, d.drainDelayMs, d.headerTimeoutMs, d.maxConnections, d.maxRequestSeqs], [10_000, 0, undefined, undefined, undefined]);
  const o = parse("--drain-delay", "2.5", "--shutdown-timeout=30", "--header-timeout", "3", "--body-timeout", "20", "--idle-timeout", "1", "--max-connections", "100", "--max-request-seqs", "4");
  assertEquals([o.drainDelayMs, o.shutdownTimeoutMs, o.headerTimeoutMs, o.bodyTimeoutMs, o.idleTimeoutMs, o.maxConnections, o.maxRequestSeqs], [2500, 30_000, 3000, 20_000, 1000, 100, 4]);
  // The drain delay is part of the shutdown deadline, so it must be shorter.
  assertThrows(() => parse("--drain-delay", "10"), UsageError, "shorter than --shutdown-timeout");
  assertThrows(() => parse("--header-timeout", "0"), UsageError, "more than 0");
  assertThrows(() => parse("--body-timeout", "-1"), UsageError);
  assertThrows(() => parse("--max-connections", "0"), UsageError);
});

test("serve args: --write-timeout and --lenient-fields", () => {
  assertEquals([parse().writeTimeoutMs, parse().lenientFields], [undefined, undefined]);
  const o = parse("--write-timeout", "0.5", "--lenient-fields");
  assertEquals([o.writeTimeoutMs, o.lenientFields], [500, true]);
  assertThrows(() => parse("--write-timeout", "0"), UsageError, "more than 0");
  assertThrows(() => parse("--lenient-fields=yes"), UsageError);
});
