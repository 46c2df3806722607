"""
A client on the official openai package: streams a chat completion from
BASE_URL with MODEL and prints, per content delta as it arrives, the seconds
since the request and the delta as JSON; then 'usage N' and 'done'.

    python openai_chat.py BASE_URL MODEL PROMPT
"""

import json
import os
import sys
import time

from openai import OpenAI

baseURL, model, prompt = sys.argv[1:4]
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
started = time.monotonic()
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": prompt}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(f"{time.monotonic() - started:.4f} {json.dumps(chunk.choices[0].delta.content)}", flush=True)
    if chunk.usage is not None:
        print(f"usage {chunk.usage.completion_tokens}", flush=True)
print("done", flush=True)
