"""
A client on the official google-genai package: streams content from
BASE_URL (as its http_options base_url) with MODEL and prints, per text
chunk as it arrives, the seconds since the request and the text as JSON;
then 'usage N' (candidate tokens) and 'finish REASON'; then asks for the
same without streaming and prints 'whole TEXT', and 'done'.

    python gemini_chat.py BASE_URL MODEL PROMPT

(GOOGLE_GENAI_API_VERSION=beta: the SDK calls /v1beta, else /v1.)
"""

import json
import os
import sys
import time

from google import genai
from google.genai import types

baseURL, model, prompt = sys.argv[1:4]
# Through a gateway with --require-token: its token, as a bearer.
token = os.environ.get("GATEWAY_TOKEN")
headers = {"Authorization": f"Bearer {token}"} if token else None
client = genai.Client(api_key="unused", http_options=types.HttpOptions(base_url=baseURL, headers=headers))
whole = client.models.generate_content(model=model, contents=prompt)
print(f"whole {json.dumps(whole.text)}", flush=True)
started = time.monotonic()
last = None
for chunk in client.models.generate_content_stream(model=model, contents=prompt):
    if chunk.text:
        print(f"{time.monotonic() - started:.4f} {json.dumps(chunk.text)}", flush=True)
    last = chunk
assert last is not None and last.usage_metadata is not None and last.candidates
print(f"usage {last.usage_metadata.candidates_token_count}", flush=True)
print(f"finish {last.candidates[0].finish_reason}", flush=True)
print("done", flush=True)
