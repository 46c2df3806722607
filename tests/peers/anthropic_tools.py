"""
A client on the official anthropic package: offers a weather tool to
BASE_URL's MODEL, streams the answer, and prints from the SDK's final
message 'block TYPE NAME INPUT-JSON' and 'stop REASON'; then sends the
tool's result back and prints 'answer TEXT'; then forces the tool with
tool_choice on mock-echo, without streaming, and prints 'forced NAME
INPUT-JSON'. GATEWAY_TOKEN is sent as a bearer token.

    python anthropic_tools.py BASE_URL MODEL
"""

import json
import os
import sys
from typing import Any

from anthropic import Anthropic

baseURL, model = sys.argv[1:3]
client = Anthropic(base_url=baseURL, auth_token=os.environ["GATEWAY_TOKEN"], api_key=None, max_retries=0)
tools: Any = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]},
                           "days": {"type": "integer", "minimum": 2}},
            "required": ["city", "unit", "days"],
        },
    },
    {"name": "other", "input_schema": {"type": "object", "properties": {"n": {"type": "number"}}}},
]
messages: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
with client.messages.stream(model=model, max_tokens=1024, messages=messages, tools=tools) as stream:
    final = stream.get_final_message()
block: Any = final.content[0]
print(f"block {block.type} {block.name} {json.dumps(block.input, sort_keys=True)}", flush=True)
print(f"stop {final.stop_reason}", flush=True)
messages += [
    {"role": "assistant", "content": [block.model_dump()]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "18 degrees and sunny"}]},
]
answer: Any = client.messages.create(model=model, max_tokens=1024, messages=messages, tools=tools)
print(f"answer {answer.content[0].text}", flush=True)
forced: Any = client.messages.create(
    model="mock-echo", max_tokens=1024, messages=messages[:1], tools=tools, tool_choice={"type": "tool", "name": "other"}
)
print(f"forced {forced.content[0].name} {json.dumps(forced.content[0].input)}", flush=True)
