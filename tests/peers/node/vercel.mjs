// The Vercel AI SDK's default OpenAI provider (which calls the Responses
// API) with BASE_URL as its baseURL: streams text from mock-echo (once
// untimed, as the SDK's first use is slow, then printing per text delta
// the seconds since the request and the delta as JSON, then 'finish
// REASON'), then offers a tool to mock-tools and prints its 'tool-call NAME
// INPUT-JSON' part and 'tools-finish REASON'; then 'done'.
//
//     node vercel.mjs BASE_URL PROMPT
import { createOpenAI } from "@ai-sdk/openai";
import { jsonSchema, streamText, tool } from "ai";

const [baseURL, prompt] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "sk-unused" });
await streamText({ model: openai("mock-echo"), prompt }).text;
const started = performance.now();
const text = streamText({ model: openai("mock-echo"), prompt });
for await (const delta of text.textStream) {
  console.log(`${((performance.now() - started) / 1000).toFixed(4)} ${JSON.stringify(delta)}`);
}
console.log(`finish ${await text.finishReason}`);
const withTools = streamText({
  model: openai("mock-tools"),
  prompt: "What is the weather in Paris?",
  tools: {
    get_weather: tool({
      description: "The weather in a city.",
      inputSchema: jsonSchema({
        type: "object",
        properties: { city: { type: "string" }, days: { type: "integer", minimum: 2 } },
        required: ["city", "days"],
        additionalProperties: false,
      }),
    }),
  },
});
for await (const part of withTools.fullStream) {
  if (part.type === "tool-call") {
    console.log(`tool-call ${part.toolName} ${JSON.stringify(part.input)}`);
  } else if (part.type === "error") {
    console.log(`error ${part.error}`);
  }
}
console.log(`tools-finish ${await withTools.finishReason}`);
console.log("done");
