"""
A client on httpx-sse: POSTs a streamed chat completion to URL and prints,
per server-sent event as it arrives, the seconds since the request and its
data; then 'done'. With TOKEN set, it sends it as a bearer token.

    python httpx_sse_chat.py URL MODEL PROMPT
"""

import json
import os
import sys
import time

import httpx
from httpx_sse import connect_sse

url, model, prompt = sys.argv[1:4]
started = time.monotonic()
body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
with httpx.Client(timeout=10) as client:
    token = os.environ.get("TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with connect_sse(client, "POST", url, json=body, headers=headers) as events:
        for event in events.iter_sse():
            print(f"{time.monotonic() - started:.4f} {json.dumps(event.data)}", flush=True)
print("done", flush=True)
