/**
 * `cli batch`'s input reader: lines as bytes with a bound, an oversized line reduced to its
 * size as it streams past (whatever the read chunks), CRLF and a last line without a newline,
 * and decoding with the server's rules (invalid UTF-8 is an error, never U+FFFD).
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assertEquals } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { countLines, decodeBatchLine, isBlankLine, type RawLine, readRawLines } from "../src/cli/batch_file.ts";

const enc = new TextEncoder();

async function lines(path: string, max: number): Promise<RawLine[]> {
  const out: RawLine[] = [];
  for await (const l of readRawLines(path, max)) out.push(l);
  return out;
}

test("batch file: bounded byte lines, oversized ones counted and dropped, CRLF, no final newline", async () => {
  await withTempDir(async (dir) => {
    // A 200 KB line spans several 64 KB read chunks; the bound is 100 bytes.
    const big = "x".repeat(200_000);
    await sys.writeFile(`${dir}/in.jsonl`, enc.encode(`short\r\n${big}\n\n  \nlast`));
    const got = await lines(`${dir}/in.jsonl`, 100);
    const text = (l: RawLine) => ("bytes" in l ? new TextDecoder().decode(l.bytes) : `<${l.oversizeBytes}>`);
    assertEquals(got.map(text), ["short", "<200000>", "", "  ", "last"]);
    assertEquals(got.map(isBlankLine), [false, false, true, true, false]);
    assertEquals(await countLines(`${dir}/in.jsonl`, 100), 3);
    // Exactly at the bound is a line; one byte more is not.
    await sys.writeFile(`${dir}/edge.jsonl`, enc.encode(`${"a".repeat(100)}\n${"b".repeat(101)}`));
    assertEquals((await lines(`${dir}/edge.jsonl`, 100)).map(text), ["a".repeat(100), "<101>"]);
  });
});

test("batch file: decoding answers oversized and non-UTF-8 lines as the server answers such bodies", () => {
  const ok = decodeBatchLine({ bytes: enc.encode('{"custom_id":"é","method":"POST","url":"/v1/completions","body":{}}') }, 100);
  assertEquals("url" in ok ? ok.customId : null, "é");
  const bad = decodeBatchLine({ bytes: new Uint8Array([...enc.encode('{"custom_id":"a'), 0xc3, ...enc.encode('"}')]) }, 100);
  assertEquals(["code" in bad && bad.code, bad.customId], ["invalid_encoding", null]);
  const big = decodeBatchLine({ oversizeBytes: 5000 }, 100);
  assertEquals("code" in big && big.code, "line_too_large");
});
