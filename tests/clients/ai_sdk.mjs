// Vercel's AI SDK (npm: ai, @ai-sdk/openai) through the proxy's Chat Completions endpoint: one case per run.
//
//   node ai_sdk.mjs <AI_SDK install prefix> <base URL> <API key> <case>
//
// The packages come from the prefix scripts/ai-sdk.sh installed (ESM ignores NODE_PATH, so they are
// resolved from its node_modules). The provider is createOpenAI(...).chat(model): the Chat Completions
// one, which checks every answer and chunk against its zod schemas. Prints one line of JSON on stdout:
// what the SDK made of the answer, with every error it reported, for tests/test_chat_clients.py.
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, baseURL, apiKey, which] = process.argv.slice(2);
const resolve = createRequire(join(prefix, "node_modules", "resolve-from-here.js")).resolve;
const load = async (name) => import(pathToFileURL(resolve(name)).href);
const { generateText, streamText, tool, jsonSchema, stepCountIs } = await load("ai");
const { createOpenAI } = await load("@ai-sdk/openai");

globalThis.AI_SDK_LOG_WARNINGS = false; // stdout is the JSON answer only
const provider = createOpenAI({ baseURL, apiKey });
const model = provider.chat("gpt-5.3-codex-high");
const common = { model, maxRetries: 0 };

// A tool the model calls; its result goes back in the next request of the same generateText/streamText.
const lookup = tool({
  description: "Look a word up",
  inputSchema: jsonSchema({ type: "object", properties: { a: { type: "number" } }, required: ["a"] }),
  execute: async ({ a }) => ({ found: a * 2 }),
});
const withTool = { ...common, tools: { lookup }, stopWhen: stepCountIs(2), system: "Use the tool." };

function step(s) {
  return {
    text: s.text,
    finishReason: s.finishReason,
    toolCalls: s.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
    toolResults: s.toolResults.map((r) => ({ id: r.toolCallId, output: r.output })),
  };
}

function usage(u) {
  return {
    inputTokens: u.inputTokens, outputTokens: u.outputTokens, totalTokens: u.totalTokens,
    cacheReadTokens: u.inputTokenDetails?.cacheReadTokens, reasoningTokens: u.outputTokenDetails?.reasoningTokens,
  };
}

function describe(error) {
  return { name: error?.name, message: String(error?.message ?? error).slice(0, 500) };
}

async function streamed(options) {
  const errors = [];
  const result = streamText({ ...options, onError: ({ error }) => errors.push(describe(error)) });
  const parts = [];
  const deltas = [];
  for await (const part of result.fullStream) {
    parts.push(part.type);
    if (part.type === "text-delta") deltas.push(part.text);
    if (part.type === "error") errors.push(describe(part.error));
  }
  return {
    deltas, parts, errors, text: await result.text, finishReason: await result.finishReason,
    usage: usage(await result.totalUsage), steps: (await result.steps).map(step),
    modelId: (await result.response).modelId,
  };
}

const cases = {
  async generate() {
    const r = await generateText({ ...common, system: "Be brief.", prompt: "say hello" });
    return { text: r.text, finishReason: r.finishReason, usage: usage(r.usage), modelId: r.response.modelId,
             id: r.response.id, steps: r.steps.map(step), errors: [] };
  },
  stream: () => streamed({ ...common, prompt: "count" }),
  async "generate-tool"() {
    const r = await generateText({ ...withTool, prompt: "look 1 up" });
    return { text: r.text, finishReason: r.finishReason, usage: usage(r.totalUsage), steps: r.steps.map(step),
             errors: [] };
  },
  "stream-tool": () => streamed({ ...withTool, prompt: "look 1 up" }),
};

let out;
try {
  out = await cases[which]();
} catch (error) {
  out = { errors: [describe(error)] }; // generateText throws what streamText reports as an error part
}
process.stdout.write(JSON.stringify(out) + "\n");
