"""
An agent loop on the official openai package, as apps write it: offers two
tools, streams each turn with the SDK's own helper
(client.chat.completions.stream, which gathers the tool calls' deltas),
runs the tools the model calls, sends their results back, and stops at the
first answer without a call. Prints 'call NAME ARGUMENTS-JSON' for each
call (after json.loads: only valid JSON gets this far), then
'final TEXT-JSON' and 'turns N'.

    python openai_agent.py BASE_URL MODEL QUESTION
"""

import json
import os
import sys
from typing import Any

from openai import OpenAI

baseURL, model, question = sys.argv[1:4]
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)


def function(name: str, **properties: Any) -> Any:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


tools: Any = [function("get_weather", city={"type": "string"}), function("to_fahrenheit", celsius={"type": "number"})]
local: dict[str, Any] = {
    "get_weather": lambda city: {"city": city, "celsius": 18},
    "to_fahrenheit": lambda celsius: {"fahrenheit": celsius * 9 / 5 + 32},
}
messages: Any = [{"role": "system", "content": "You are a weather agent."}, {"role": "user", "content": question}]
for turn in range(1, 6):
    with client.chat.completions.stream(model=model, messages=messages, tools=tools) as stream:
        for _ in stream:
            pass
        message: Any = stream.get_final_completion().choices[0].message
    if not message.tool_calls:
        print(f"final {json.dumps(message.content)}", flush=True)
        print(f"turns {turn}", flush=True)
        break
    messages.append(message.model_dump(exclude_none=True, exclude={"parsed"}))
    for call in message.tool_calls:
        arguments = json.loads(call.function.arguments)
        print(f"call {call.function.name} {json.dumps(arguments, sort_keys=True)}", flush=True)
        result = local[call.function.name](**arguments)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
else:
    print("no final answer after 5 turns", flush=True)
    sys.exit(1)
