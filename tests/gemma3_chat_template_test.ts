/**
 * Gemma-3's chat template, read from the checkpoint as the hub ships it (tokenizer_config.json's
 * `chat_template`; tests/fixtures/chat_templates/gemma3.jinja is google/gemma-3-1b-it's text):
 * the system prompt folds into the first user turn, the assistant is "model", roles must
 * alternate. The expected strings are what Python's jinja2 renders with transformers'
 * settings (trim_blocks, lstrip_blocks). A GGUF conversion carries the template along.
 */
import { test } from "./helpers/test.ts";
import * as sys from "./helpers/platform.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { withTempDir } from "./helpers/synthetic_checkpoint.ts";
import { MODELS_DIR, modelDir } from "./helpers/reference.ts";
import { type ChatMessage, ChatTemplate, ChatTemplateError } from "../src/server/chat_template.ts";
import { Tokenizer } from "../src/model/tokenizer.ts";
import { convertToGguf } from "../src/model/gguf/convert.ts";

const CASES: [ChatMessage[], boolean, string][] = [
  [[{ role: "user", content: "Tell me a story." }], true, "<s><start_of_turn>user\nTell me a story.<end_of_turn>\n<start_of_turn>model\n"],
  [
    [
      { role: "system", content: "You are terse." },
      { role: "user", content: "  Hi there \n" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: "Again?" },
    ],
    true,
    "<s><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nAgain?<end_of_turn>\n<start_of_turn>model\n",
  ],
  [
    [{ role: "system", content: "Sys." }, { role: "user", content: "Q" }, { role: "assistant", content: "A" }],
    false,
    "<s><start_of_turn>user\nSys.\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n",
  ],
];

test("gemma3 chat template: the checkpoint's template renders as transformers does, and survives GGUF conversion", async () => {
  await withTempDir(async (dir) => {
    const ckpt = `${dir}/gemma3`;
    await sys.mkdir(ckpt);
    for (const f of ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]) {
      await sys.copyFile(`${modelDir("gemma3-tiny")}/${f}`, `${ckpt}/${f}`);
    }
    const template = await sys.readTextFile(`${MODELS_DIR}../chat_templates/gemma3.jinja`);
    const config = JSON.parse(await sys.readTextFile(`${modelDir("gemma3-tiny")}/tokenizer_config.json`));
    await sys.writeTextFile(`${ckpt}/tokenizer_config.json`, JSON.stringify({ ...config, chat_template: template }));

    const gguf = `${dir}/gemma3.gguf`;
    await convertToGguf(ckpt, gguf);
    for (const source of [ckpt, gguf]) {
      const chat = ChatTemplate.of(await Tokenizer.load(source));
      assert(chat, `${source}: no chat template`);
      for (const [messages, generation, rendered] of CASES) assertEquals(chat.render(messages, generation), rendered);
      const e = assertThrows(() => chat.render([{ role: "user", content: "a" }, { role: "user", content: "b" }]), ChatTemplateError);
      assert(e.message.includes("alternate"), e.message);
    }
  });
});
