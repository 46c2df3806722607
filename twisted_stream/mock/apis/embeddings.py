# -*- test-case-name: tests.test_mockllm -*-
"""
OpenAI's Embeddings API: C{POST /v1/embeddings}, for retrieval pipelines
tested end to end without a key.

Each text's vector is derived from a hash of its UTF-8 bytes alone
(SHAKE-256, read as unsigned 32-bit integers, mapped to [-1, 1], scaled
to unit length): the same text gets the same vector on any machine, any
day; different texts get unrelated ones. Any model name is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any, Sequence

from twisted_stream._numbers import isWholeIn
from twisted_stream.mock.apis import RequestError, jsonObject
from twisted_stream.mock.apis.openai import encode

__all__ = ["DEFAULT_DIMENSIONS", "EmbeddingsRequest", "MAX_DIMENSIONS", "MAX_INPUTS", "answer", "parseEmbeddingsRequest", "vector"]

DEFAULT_DIMENSIONS = 1536
"""A vector's length unless the request asks for another (as
C{text-embedding-3-small}'s)."""

MAX_DIMENSIONS = 3072
"""The longest vector asked for (as C{text-embedding-3-large}'s)."""

MAX_INPUTS = 2048
"""The most texts one request embeds (OpenAI's bound)."""


@dataclass(frozen=True)
class EmbeddingsRequest:
    """
    A checked embeddings request.

    @ivar model: The model named (any).
    @ivar texts: The texts to embed, in order.
    @ivar dimensions: The vectors' length.
    @ivar base64: Whether vectors are sent as base64 little-endian float32
        (the openai SDK asks for this by default), not JSON numbers.
    """

    model: str
    texts: Sequence[str]
    dimensions: int
    base64: bool


def parseEmbeddingsRequest(body: bytes) -> EmbeddingsRequest:
    """
    Read and check an embeddings request: C{model}; C{input}, a string or a
    list of strings (token arrays are embedded by their JSON text);
    C{dimensions}; C{encoding_format}, C{float} or C{base64}.

    @raise RequestError: For invalid JSON, a missing or empty C{input}, or
        a field of the wrong type or out of range.
    """
    request = jsonObject(body)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("Missing required parameter: 'model'.", "model")
    given = request.get("input")
    items = [given] if isinstance(given, str) else given
    if not isinstance(items, list) or not items or len(items) > MAX_INPUTS:
        raise RequestError(
            f"'input' must be a non-empty string or a list of 1 to {MAX_INPUTS} non-empty strings.", "input"
        )
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            item = encode(item).decode("ascii")
        if not isinstance(item, str) or not item:
            raise RequestError(f"'input[{i}]' must be a non-empty string.", "input")
        texts.append(item)
    dimensions = request.get("dimensions", DEFAULT_DIMENSIONS)
    if not isWholeIn(dimensions, 1, MAX_DIMENSIONS):
        raise RequestError(f"'dimensions' must be a whole number from 1 to {MAX_DIMENSIONS}.", "dimensions")
    encoding = request.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return EmbeddingsRequest(model, texts, dimensions, encoding == "base64")


def vector(text: str, dimensions: int) -> list[float]:
    """
    @return: C{text}'s unit vector of C{dimensions} numbers.
    """
    raw = hashlib.shake_256(text.encode("utf-8")).digest(4 * dimensions)
    values = [n / 2147483647.5 - 1.0 for n in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(math.fsum(v * v for v in values))
    return [v / norm for v in values]


def answer(request: EmbeddingsRequest) -> bytes:
    """
    @return: The API's answer: a list of C{embedding} objects, in the
        request's order, and the usage (a token per word).
    """
    data = []
    for index, text in enumerate(request.texts):
        numbers = vector(text, request.dimensions)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{len(numbers)}f", *numbers)).decode("ascii") if request.base64 else numbers
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    used = sum(max(1, len(text.split())) for text in request.texts)
    return encode(
        {"object": "list", "data": data, "model": request.model, "usage": {"prompt_tokens": used, "total_tokens": used}}
    )
