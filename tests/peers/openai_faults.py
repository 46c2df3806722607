"""
A client on the official openai package (no retries, a 1-second timeout):
streams a chat completion from BASE_URL once per fault named, each asked
for with the X-Mock-Fault header, and prints per fault what the SDK raised:
'FAULT NAME STATUS retry-after=VALUE' for an error status, else
'FAULT NAME after N deltas[: why]', or 'FAULT none' if it raised nothing.

    python openai_faults.py BASE_URL FAULT...
"""

import sys

from openai import APIStatusError, OpenAI

baseURL, *faults = sys.argv[1:]
client = OpenAI(base_url=baseURL, api_key="sk-unused", max_retries=0, timeout=1.0)
for fault in faults:
    deltas = 0
    try:
        stream = client.chat.completions.create(
            model="mock-echo",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
            extra_headers={"X-Mock-Fault": fault},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas += 1
        print(f"{fault} none", flush=True)
    except APIStatusError as e:
        print(f"{fault} {type(e).__name__} {e.status_code} retry-after={e.response.headers.get('retry-after')}", flush=True)
    except Exception as e:  # what the SDK raises is what is printed
        why = str(e).splitlines()[0] if str(e) else ""
        print(f"{fault} {type(e).__name__} after {deltas} deltas" + (f": {why}" if why else ""), flush=True)
