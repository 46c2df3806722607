"""
A client on the official openai package: asks BASE_URL's Responses API
with MODEL for a plain answer (stream=False, input as message items) and
prints it; then streams one (client.responses.stream), untimed, and a
second, printing, per text delta as it arrives, the seconds since the
request and the delta as JSON; then the final response's text, status and
output tokens, and 'done'. (The
first two: the SDK builds its response and event types at their first
use, which takes it a few tenths of a second, and would hold the first
deltas.)

    python openai_responses.py BASE_URL MODEL PROMPT
"""

import json
import os
import sys
import time

from openai import OpenAI

baseURL, model, prompt = sys.argv[1:4]
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
whole = client.responses.create(model=model, input=[{"role": "user", "content": [{"type": "input_text", "text": prompt}]}])
print(f"whole {json.dumps(whole.output_text)} {whole.status}", flush=True)
# Once untimed, for the same reason.
with client.responses.stream(model=model, input=prompt) as stream:
    stream.until_done()
started = time.monotonic()
with client.responses.stream(model=model, input=prompt, instructions="Answer briefly.") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(f"{time.monotonic() - started:.4f} {json.dumps(event.delta)}", flush=True)
    final = stream.get_final_response()
print(f"final {json.dumps(final.output_text)}", flush=True)
print(f"status {final.status}", flush=True)
print(f"usage {final.usage.output_tokens if final.usage else None}", flush=True)
print("done", flush=True)
