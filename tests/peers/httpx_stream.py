"""
A client on httpx: streams GET URL and prints, per piece as it arrives, the
seconds since the request and the piece; then 'status N' and 'done'.
"""

import sys
import time

import httpx

started = time.monotonic()
with httpx.Client(timeout=10) as client:
    with client.stream("GET", sys.argv[1]) as response:
        print(f"status {response.status_code}", flush=True)
        for piece in response.iter_raw():
            print(f"{time.monotonic() - started:.3f} {piece!r}", flush=True)
print("done", flush=True)
