"""
The C{chunkproxy} twistd plugin. It only names the module that does the work,
so that twistd's scan of every plugin stays cheap.
"""

from twisted.application.service import ServiceMaker

chunkproxy = ServiceMaker(
    "chunkproxy",
    "twisted_stream.tap.chunkproxy",
    "Forward a streaming HTTP response chunk by chunk, the moment each arrives.",
    "chunkproxy",
)
