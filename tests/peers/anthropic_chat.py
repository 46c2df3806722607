"""
A client on the official anthropic package: streams a message from
BASE_URL with MODEL and prints, per text delta as it arrives, the seconds
since the request and the text as JSON; then 'stop REASON', 'usage N' and
'done'. GATEWAY_TOKEN is sent as a bearer token.

    python anthropic_chat.py BASE_URL MODEL PROMPT
"""

import json
import os
import sys
import time

from anthropic import Anthropic

baseURL, model, prompt = sys.argv[1:4]
# A gateway that requires a bearer token gets it as auth_token (the SDK's
# own key travels as x-api-key, which the gateway does not check).
client = Anthropic(base_url=baseURL, auth_token=os.environ["GATEWAY_TOKEN"], api_key=None, max_retries=0)
started = time.monotonic()
with client.messages.stream(model=model, max_tokens=1024, messages=[{"role": "user", "content": prompt}]) as stream:
    for text in stream.text_stream:
        print(f"{time.monotonic() - started:.4f} {json.dumps(text)}", flush=True)
    final = stream.get_final_message()
print(f"stop {final.stop_reason}", flush=True)
print(f"usage {final.usage.output_tokens}", flush=True)
print("done", flush=True)
