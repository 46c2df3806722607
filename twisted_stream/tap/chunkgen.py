# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chunkgen}: the chunk generator as a twistd plugin.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.web.server import Site

from twisted_stream._service import listeningService
from twisted_stream.generator import GeneratorRoot
from twisted_stream.options import GeneratorOptions

__all__ = ["Options", "makeService"]

Options = GeneratorOptions


def makeService(options: GeneratorOptions) -> IService:
    """
    Build the generator's service.

    @param options: The parsed command line.
    @return: A service that serves the generator on C{--listen}.
    """
    from twisted.internet import reactor

    site = Site(GeneratorRoot(options.spec(), reactor, options.pace()))
    site.displayTracebacks = False
    return listeningService(
        reactor, options["listen"], site, "chunkgen", [("stream", "generate"), ("mock LLM", "v1/")]
    )
