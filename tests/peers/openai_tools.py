"""
A client on the official openai package: offers a weather tool to
BASE_URL's MODEL, streams the answer, accumulates the tool call from its
deltas as an agent does, and prints 'pieces N', 'call NAME ARGUMENTS-JSON'
(after json.loads, so only valid JSON gets this far) and 'finish REASON';
then sends the tool's result back and prints 'answer TEXT'; then forces
the tool with tool_choice on mock-echo, without streaming, and prints
'forced NAME ARGUMENTS-JSON'.

Then the same with the Responses API: 'rcall TYPE NAME ARGUMENTS-JSON
SAME' (SAME: whether the streamed pieces join into the final item's
arguments) and 'ranswer TEXT'.

    python openai_tools.py BASE_URL MODEL
"""

import json
import os
import sys
from typing import Any

from openai import OpenAI

baseURL, model = sys.argv[1:3]
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
tools: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1},
                    "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "verbose": {"type": "boolean"},
                },
                "required": ["city", "unit", "days", "where", "tags"],
            },
        },
    },
    {"type": "function", "function": {"name": "other", "parameters": {"type": "object", "properties": {}}}},
]
messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
name, arguments, callId, pieces, finish = "", "", "", 0, None
stream: Any = client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True)
for chunk in stream:
    choice = chunk.choices[0] if chunk.choices else None
    if choice is None:
        continue
    for call in choice.delta.tool_calls or ():
        callId = call.id or callId
        if call.function is not None:
            name += call.function.name or ""
            if call.function.arguments:
                arguments += call.function.arguments
                pieces += 1
    finish = choice.finish_reason or finish
print(f"pieces {pieces}", flush=True)
print(f"call {name} {json.dumps(json.loads(arguments), sort_keys=True)}", flush=True)
print(f"finish {finish}", flush=True)
messages += [
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": callId, "type": "function", "function": {"name": name, "arguments": arguments}}]},
    {"role": "tool", "tool_call_id": callId, "content": "18 degrees and sunny"},
]
answer = client.chat.completions.create(model=model, messages=messages, tools=tools)
print(f"answer {answer.choices[0].message.content}", flush=True)
forced: Any = client.chat.completions.create(
    model="mock-echo", messages=messages[:1], tools=tools,
    tool_choice={"type": "function", "function": {"name": "other"}},
)
call = forced.choices[0].message.tool_calls[0]
print(f"forced {call.function.name} {call.function.arguments}", flush=True)
# The Responses API: function tools are flat, results are input items.
rtools: Any = [{"type": "function", **tool["function"]} for tool in tools]
rarguments, completed = "", None
rstream: Any = client.responses.create(model=model, input="What is the weather in Paris?", tools=rtools, stream=True)
for event in rstream:
    if event.type == "response.function_call_arguments.delta":
        rarguments += event.delta
    elif event.type == "response.completed":
        completed = event.response
assert completed is not None
item: Any = completed.output[0]
print(f"rcall {item.type} {item.name} {json.dumps(json.loads(rarguments), sort_keys=True)} {rarguments == item.arguments}", flush=True)
rinput: Any = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"type": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments},
    {"type": "function_call_output", "call_id": item.call_id, "output": "18 degrees and sunny"},
]
ranswer: Any = client.responses.create(model=model, input=rinput, tools=rtools)
print(f"ranswer {ranswer.output_text}", flush=True)
