// The Vercel AI SDK's streamObject with its default OpenAI provider (the
// Responses API, with text.format json_schema) against BASE_URL's
// mock-passage: prints 'partials N' (how many partial objects streamed)
// and 'object JSON' (the final object, checked against the schema by the
// SDK), then 'done'.
//
//     node vercel_object.mjs BASE_URL
import { createOpenAI } from "@ai-sdk/openai";
import { jsonSchema, streamObject } from "ai";

const [baseURL] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "sk-unused" });
const result = streamObject({
  model: openai("mock-passage"),
  prompt: "Who is it?",
  schema: jsonSchema({
    type: "object",
    properties: {
      name: { type: "string" },
      age: { type: "integer", minimum: 18 },
      tags: { type: "array", items: { type: "string" } },
    },
    required: ["name", "age", "tags"],
    additionalProperties: false,
  }),
});
let partials = 0;
for await (const partial of result.partialObjectStream) {
  partials += 1;
}
console.log(`partials ${partials}`);
console.log(`object ${JSON.stringify(await result.object)}`);
console.log("done");
