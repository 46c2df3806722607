"""
twisted-stream: forward streaming HTTP responses in real time, on Twisted.

  - L{twisted_stream.generator}: C{chunkgen}, a stream of numbered chunks on a
    timer, standing in for an LLM.
  - L{twisted_stream.proxy}: C{chunkproxy}'s resource, which forwards each
    chunk the moment it arrives, with backpressure and cancellation.
  - L{twisted_stream.page}: the page that shows chunks arriving live.
"""

__version__ = "0.1.0"
