"""
Wire shapes of the LLM APIs that C{chunkgen} imitates, one module per API:
how a request is read and checked, and how the answer, its streamed chunks
and its errors look. The pacing and serving are L{twisted_stream.mockllm}'s.
"""
