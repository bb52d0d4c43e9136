// Every JavaScript SDK of docs/CLIENTS.md, configured exactly as that page says, against the
// proxy at argv[2]. Prints one JSON line per call: the text it got and the exchange id.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";

const base = process.argv[2];
const key = "sk-client-canary-node-4d1e";
const prompt = "name three primes";
const ID = "x-logorhythms-request-id";
const out = (client, text, requestId) => console.log(JSON.stringify({ client, text, requestId }));

// openai (TypeScript): base URL with /v1, as OPENAI_BASE_URL.
const oai = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
{
  const { data, response } = await oai.chat.completions
    .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: prompt }] })
    .withResponse();
  out("openai-node", data.choices[0].message.content, response.headers.get(ID));
}

// @anthropic-ai/sdk (TypeScript): base URL without /v1, as ANTHROPIC_BASE_URL; the SDK adds it.
const claude = new Anthropic({ baseURL: base, apiKey: key, maxRetries: 0 });
{
  const { data, response } = await claude.messages
    .create({ model: "claude-test-model", max_tokens: 64, messages: [{ role: "user", content: prompt }] })
    .withResponse();
  out("anthropic-node", data.content[0].text, response.headers.get(ID));
}

// Vercel AI SDK, OpenAI provider: base URL with /v1.
const vercelOpenAI = createOpenAI({ baseURL: `${base}/v1`, apiKey: key });
{
  const result = await generateText({ model: vercelOpenAI.chat("gpt-4o-mini"), prompt, maxRetries: 0 });
  out("ai-openai-chat", result.text, result.response.headers[ID]);
  const streamed = streamText({ model: vercelOpenAI.chat("gpt-4o-mini"), prompt, maxRetries: 0 });
  out("ai-openai-chat-stream", await streamed.text, (await streamed.response).headers[ID]);
}

// Vercel AI SDK, Anthropic provider: base URL WITH /v1 (unlike the Anthropic SDKs).
const vercelAnthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: key });
{
  const result = await generateText({ model: vercelAnthropic("claude-test-model"), prompt, maxRetries: 0 });
  out("ai-anthropic", result.text, result.response.headers[ID]);
}

// The mistake: createAnthropic without /v1 posts to /messages.
try {
  const wrong = createAnthropic({ baseURL: base, apiKey: key });
  await generateText({ model: wrong("claude-test-model"), prompt, maxRetries: 0 });
  out("ai-anthropic-without-v1", "unexpectedly answered", null);
} catch (error) {
  const body = JSON.parse(error.responseBody ?? "null");
  out("ai-anthropic-without-v1", JSON.stringify({ status: error.statusCode, body }), error.responseHeaders?.[ID] ?? null);
}
