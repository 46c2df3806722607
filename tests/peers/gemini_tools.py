"""
A client on the official google-genai package: offers a weather function
to BASE_URL's MODEL (once as the SDK's own Schema, once as JSON Schema),
streams the answer and prints 'call NAME ARGS-JSON' from the chunk that
carries the function call; then sends the function's response back and
prints 'answer TEXT'. GATEWAY_TOKEN is sent as a bearer token.

    python gemini_tools.py BASE_URL MODEL
"""

import json
import os
import sys
from typing import Any

from google import genai
from google.genai import types

baseURL, model = sys.argv[1:3]
token = os.environ.get("GATEWAY_TOKEN")
headers = {"Authorization": f"Bearer {token}"} if token else None
client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=baseURL, headers=headers))
declarations = [
    types.FunctionDeclaration(
        name="get_weather",
        parameters=types.Schema(
            type=types.Type.OBJECT,
            properties={"city": types.Schema(type=types.Type.STRING), "days": types.Schema(type=types.Type.INTEGER)},
            required=["city", "days"],
        ),
    ),
    types.FunctionDeclaration(name="other", parameters_json_schema={"type": "object", "properties": {}}),
]
config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=declarations)])
call: Any = None
for chunk in client.models.generate_content_stream(model=model, contents="Weather in Paris?", config=config):
    for part in (chunk.candidates[0].content.parts if chunk.candidates and chunk.candidates[0].content else None) or ():
        if part.function_call is not None:
            call = part.function_call
assert call is not None
print(f"call {call.name} {json.dumps(call.args, sort_keys=True)}", flush=True)
contents: Any = [
    types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
    types.Content(role="model", parts=[types.Part(function_call=call)]),
    types.Content(role="user", parts=[types.Part.from_function_response(name=call.name, response={"result": "sunny"})]),
]
answer = client.models.generate_content(model=model, contents=contents, config=config)
print(f"answer {answer.text}", flush=True)
