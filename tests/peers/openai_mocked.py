"""
A client on the official openai package, using what the mock LLM serves
beyond chat: structured outputs (C{chat.completions.parse},
C{responses.parse} (and C{responses.input_items.list}), C{chat.completions.stream} with a C{response_format},
a pydantic model with a nested one), C{models.retrieve}, the legacy
C{completions} streamed, an aliased C{gpt-4o-mini}, and reasoning in both
APIs. Prints one C{KEY VALUE} line for each, then 'done'.

    python openai_mocked.py BASE_URL
"""

import json
import os
import sys
from typing import Any

from openai import OpenAI
from pydantic import BaseModel


class Address(BaseModel):
    city: str
    zip: str


class Person(BaseModel):
    name: str
    age: int
    address: Address
    tags: list[str]


baseURL = sys.argv[1]
# (Typed loosely: the script reads the SDK's answers as a user would.)
client: Any = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
asked = [{"role": "user", "content": "Who is it?"}]


def show(key: str, value: object) -> None:
    print(f"{key} {json.dumps(value, sort_keys=True)}", flush=True)


parsed = client.chat.completions.parse(model="mock-passage", messages=asked, response_format=Person)
person = parsed.choices[0].message.parsed
assert isinstance(person, Person)
show("parse-chat", person.model_dump())
response = client.responses.parse(model="mock-passage", input="Who is it?", text_format=Person)
assert isinstance(response.output_parsed, Person)
show("parse-responses", response.output_parsed.model_dump())
items = client.responses.input_items.list(response.id, order="asc")
show("input-items", [[item.role, item.content[0].text] for item in items.data])
deltas = 0
with client.chat.completions.stream(model="mock-passage", messages=asked, response_format=Person) as stream:
    for event in stream:
        if event.type == "content.delta":
            deltas += 1
    final = stream.get_final_completion()
assert isinstance(final.choices[0].message.parsed, Person)
show("stream-parse", [deltas, final.choices[0].message.parsed.model_dump()])
show("retrieve", client.models.retrieve("mock-passage").id)
pieces = [c.choices[0].text for c in client.completions.create(model="mock-passage", prompt="Say it", max_tokens=50, stream=True) if c.choices]
show("completions", [len(pieces), "".join(pieces)])
aliased = client.chat.completions.create(model="gpt-4o-mini", messages=asked)
show("alias", [aliased.model, aliased.choices[0].message.content])
thinking: list[str] = []
text: list[str] = []
for chunk in client.chat.completions.create(model="mock-reasoning", messages=asked, stream=True):
    delta = chunk.choices[0].delta if chunk.choices else None
    if delta is not None and getattr(delta, "reasoning_content", None):
        thinking.append(delta.reasoning_content)
    if delta is not None and delta.content:
        text.append(delta.content)
show("reasoning-chat", [len(thinking), "".join(thinking), "".join(text)])
summary: list[str] = []
with client.responses.stream(model="mock-reasoning", input="Who is it?") as stream:
    for event in stream:
        if event.type == "response.reasoning_summary_text.delta":
            summary.append(event.delta)
    done = stream.get_final_response()
item = done.output[0]
show("reasoning-responses", [len(summary), item.type, item.summary[0].text, done.output_text, done.usage.output_tokens_details.reasoning_tokens])
print("done", flush=True)
