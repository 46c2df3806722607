"""
A client on the official openai package: asks BASE_URL for embeddings of
the texts given, with MODEL, as the SDK asks by default (base64, decoded by
the SDK) and as floats with 256 dimensions, and prints each as a JSON line:
the encoding, the index, the length and the vector.

    python openai_embeddings.py BASE_URL MODEL TEXT...
"""

import json
import os
import sys

from openai import OpenAI

baseURL, model, *texts = sys.argv[1:]
client = OpenAI(base_url=baseURL, api_key=os.environ.get("OPENAI_API_KEY", "sk-unused"), max_retries=0)
for label, extra in (("default", {}), ("float256", {"encoding_format": "float", "dimensions": 256})):
    result = client.embeddings.create(model=model, input=texts, **extra)  # type: ignore[arg-type]
    for item in result.data:
        print(json.dumps({"as": label, "index": item.index, "length": len(item.embedding),
                          "vector": item.embedding, "tokens": result.usage.prompt_tokens}), flush=True)
