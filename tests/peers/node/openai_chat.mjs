// The openai package for Node with BASE_URL as its baseURL: streams a chat
// completion from MODEL, printing per content delta the seconds since the
// request and the delta as JSON; then 'usage N'; then streams the same
// through the Responses API and prints 'responses TEXT-JSON'; then offers a
// tool to mock-tools, accumulates the streamed call and prints 'tool NAME
// ARGUMENTS' (after JSON.parse) and 'tool-finish REASON'; then the same
// tool through the Responses API: 'rtool NAME ARGUMENTS'; then 'done'.
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
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
let name = "";
let args = "";
let finish = null;
const calls = await client.chat.completions.create({
  model: "mock-tools", messages: [{ role: "user", content: "Weather?" }], tools, stream: true,
});
for await (const chunk of calls) {
  for (const call of chunk.choices[0]?.delta?.tool_calls ?? []) {
    name += call.function?.name ?? "";
    args += call.function?.arguments ?? "";
  }
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
console.log(`tool ${name} ${JSON.stringify(JSON.parse(args))}`);
console.log(`tool-finish ${finish}`);
let rargs = "";
let item = null;
const rtools = [{ type: "function", name: "get_weather", parameters: tools[0].function.parameters }];
for await (const event of await client.responses.create({
  model: "mock-tools", input: "Weather?", tools: rtools, stream: true,
})) {
  if (event.type === "response.function_call_arguments.delta") {
    rargs += event.delta;
  } else if (event.type === "response.output_item.done") {
    item = event.item;
  }
}
console.log(`rtool ${item.name} ${JSON.stringify(JSON.parse(rargs))} ${rargs === item.arguments}`);
console.log("done");
