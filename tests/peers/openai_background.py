"""
A client on the official openai package, resuming a background response:
creates one (background=True, stream=True), reads its events up to the one
numbered CUT and leaves, then picks it up with
responses.retrieve(id, stream=True, starting_after=CUT) and reads to the
end; then retrieves it whole. Prints, as JSON: the id, the text before the
cut, the text after it, the retrieved response's status and text.

    python openai_background.py BASE_URL MODEL PROMPT CUT
"""

import json
import os
import sys
from typing import Any

from openai import OpenAI

baseURL, model, prompt, cut = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
before, after, numbers = [], [], []
responseId = None
stream = client.responses.create(model=model, input=prompt, background=True, stream=True)
for event in stream:
    numbers.append(event.sequence_number)
    if event.type == "response.created":
        responseId = event.response.id
    if event.type == "response.output_text.delta":
        before.append(event.delta)
    if event.sequence_number >= cut:
        break
stream.close()
assert responseId is not None
resumed: Any = client.responses.retrieve(responseId, stream=True, starting_after=cut)
for later in resumed:
    numbers.append(later.sequence_number)
    if later.type == "response.output_text.delta":
        after.append(later.delta)
final = client.responses.retrieve(responseId)
print(json.dumps({
    "id": responseId,
    "before": "".join(before),
    "after": "".join(after),
    "numbers": numbers,
    "status": final.status,
    "text": final.output_text,
}), flush=True)
