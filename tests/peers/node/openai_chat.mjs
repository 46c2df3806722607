// The openai package for Node with BASE_URL as its baseURL: streams a chat
// completion from MODEL, printing per content delta the seconds since the
// request and the delta as JSON; then 'usage N'; then streams the same
// through the Responses API and prints 'responses TEXT-JSON'; then 'done'.
//
//     node openai_chat.mjs BASE_URL MODEL PROMPT
import OpenAI from "openai";

const [baseURL, model, prompt] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "sk-unused", maxRetries: 0 });
const started = performance.now();
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: prompt }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  const content = chunk.choices[0]?.delta?.content;
  if (content) {
    console.log(`${((performance.now() - started) / 1000).toFixed(4)} ${JSON.stringify(content)}`);
  }
  if (chunk.usage) {
    console.log(`usage ${chunk.usage.completion_tokens}`);
  }
}
let text = "";
for await (const event of await client.responses.create({ model, input: prompt, stream: true })) {
  if (event.type === "response.output_text.delta") {
    text += event.delta;
  }
}
console.log(`responses ${JSON.stringify(text)}`);
console.log("done");
