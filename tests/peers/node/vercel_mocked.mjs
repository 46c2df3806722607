// The Vercel AI SDK with its default OpenAI provider (the Responses API)
// against BASE_URL: streamObject (text.format json_schema) from
// mock-passage prints 'partials N' (how many partial objects streamed) and
// 'object JSON' (the final object, checked against the schema by the SDK),
// generateObject (not streamed) 'generated JSON';
// streamText from mock-reasoning prints 'reasoning [DELTAS, TEXT,
// REASONING_TOKENS]' (its reasoning-delta parts, the reasoning, the
// usage's reasoning tokens); then 'done'.
//
//     node vercel_mocked.mjs BASE_URL
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, jsonSchema, streamObject, streamText } from "ai";

const [baseURL] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "sk-unused" });
const person = jsonSchema({
  type: "object",
  properties: {
    name: { type: "string" },
    age: { type: "integer", minimum: 18 },
    tags: { type: "array", items: { type: "string" } },
  },
  required: ["name", "age", "tags"],
  additionalProperties: false,
});
const result = streamObject({
  model: openai("mock-passage"),
  prompt: "Who is it?",
  schema: person,
});
let partials = 0;
for await (const partial of result.partialObjectStream) {
  partials += 1;
}
console.log(`partials ${partials}`);
console.log(`object ${JSON.stringify(await result.object)}`);
const generated = await generateObject({ model: openai("mock-passage"), prompt: "Who is it?", schema: person });
console.log(`generated ${JSON.stringify(generated.object)}`);
const reasoned = streamText({ model: openai("mock-reasoning"), prompt: "Who is it?" });
let deltas = 0;
for await (const part of reasoned.fullStream) {
  if (part.type === "reasoning-delta") deltas += 1;
}
const usage = await reasoned.usage;
console.log(`reasoning ${JSON.stringify([deltas, await reasoned.reasoningText, usage.outputTokenDetails.reasoningTokens])}`);
console.log("done");
