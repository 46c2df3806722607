"""
The C{chunkgen} twistd plugin. It only names the module that does the work,
so that twistd's scan of every plugin stays cheap.
"""

from twisted.application.service import ServiceMaker

chunkgen = ServiceMaker(
    "chunkgen",
    "twisted_stream.tap.chunkgen",
    "Stream numbered chunks over HTTP on a timer (a stand-in for an LLM).",
    "chunkgen",
)
