"""
A client on the official anthropic package, using what the mock LLM serves
beyond messages: C{messages.count_tokens}, C{models.retrieve}, and
C{mock-reasoning}'s thinking streamed. Prints one C{KEY VALUE} line for
each, then 'done'. GATEWAY_TOKEN, if set, is sent as a bearer token.

    python anthropic_mocked.py BASE_URL
"""

import json
import os
import sys
from typing import Any

from anthropic import Anthropic

baseURL = sys.argv[1]
token = os.environ.get("GATEWAY_TOKEN")
# (Typed loosely: the script reads the SDK's answers as a user would.)
client: Any = Anthropic(base_url=baseURL, auth_token=token, api_key=None if token else "unused", max_retries=0)
asked = [{"role": "user", "content": "one two three"}]


def show(key: str, value: object) -> None:
    print(f"{key} {json.dumps(value, sort_keys=True)}", flush=True)


show("count", client.messages.count_tokens(model="mock-passage", system="be brief", messages=asked).input_tokens)
show("retrieve", client.models.retrieve("mock-passage").id)
thinking: list[str] = []
with client.messages.stream(model="mock-reasoning", max_tokens=2048, messages=asked,
                            thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
    for event in stream:
        if event.type == "thinking":
            thinking.append(event.thinking)
    final = stream.get_final_message()
blocks = [block.type for block in final.content]
show("thinking", [len(thinking), blocks, final.content[0].thinking, bool(final.content[0].signature), final.content[1].text])
print("done", flush=True)
