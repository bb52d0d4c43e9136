// Reads one JSON string per line on stdin, prints its o200k_base token count per line.
// o200k_base is the tokenizer of OpenAI's GPT-4o, GPT-4.1, o-series and GPT-5 models;
// js-tiktoken ships its ranks, so this runs offline: npm install --prefix DIR js-tiktoken
import { createRequire } from "node:module";
import * as readline from "node:readline";

const require = createRequire(process.env.TIKTOKEN_PREFIX + "/node_modules/");
const { Tiktoken } = require("js-tiktoken/lite");
const o200k = require("js-tiktoken/ranks/o200k_base");
const enc = new Tiktoken(o200k.default ?? o200k);
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  console.log(enc.encode(JSON.parse(line)).length);
}
