"""
A client on the official google-genai package, using what the mock LLM
serves beyond generating: C{models.list}, C{models.get},
C{count_tokens}, C{embed_content}, automatic function calling with a
Python function, C{mock-reasoning}'s thought parts, and C{candidate_count}. Prints one
C{KEY VALUE} line for each, then 'done'. GATEWAY_TOKEN, if set, is sent as
a bearer token.

    python gemini_mocked.py BASE_URL
"""

import json
import os
import sys
from typing import Any

from google import genai
from google.genai import types

baseURL = sys.argv[1]
token = os.environ.get("GATEWAY_TOKEN")
headers = {"Authorization": f"Bearer {token}"} if token else None
# (Typed loosely: the script reads the SDK's answers as a user would.)
client: Any = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=baseURL, headers=headers))


def show(key: str, value: object) -> None:
    print(f"{key} {json.dumps(value, sort_keys=True)}", flush=True)


show("list", sorted(model.name for model in client.models.list()))
show("get", client.models.get(model="mock-passage").name)
show("count", client.models.count_tokens(model="mock-passage", contents="one two three").total_tokens)
embedded = client.models.embed_content(model="mock-embed", contents="hi")
show("embed", [len(embedded.embeddings[0].values), embedded.embeddings[0].values[:2]])
calls: list[dict[str, Any]] = []


def get_weather(city: str, days: int) -> dict[str, str]:
    """The weather in a city for some days."""
    calls.append({"city": city, "days": days})
    return {"sky": "sunny"}


answer = client.models.generate_content(model="mock-tools", contents="Weather in Paris?",
                                        config=types.GenerateContentConfig(tools=[get_weather]))
show("afc", [calls, answer.text])
thoughts: list[str] = []
text: list[str] = []
used: Any = None
config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
for chunk in client.models.generate_content_stream(model="mock-reasoning", contents="hi", config=config):
    for part in (chunk.candidates[0].content.parts if chunk.candidates and chunk.candidates[0].content else None) or ():
        (thoughts if part.thought else text).append(part.text or "")
    used = chunk.usage_metadata or used
show("thoughts", [len(thoughts), "".join(thoughts), "".join(text), used.thoughts_token_count if used else None])
several = client.models.generate_content(model="mock-echo", contents="a b",
                                         config=types.GenerateContentConfig(candidate_count=2))
show("candidates", [[candidate.content.parts[0].text for candidate in several.candidates],
                    several.usage_metadata.candidates_token_count])
print("done", flush=True)
