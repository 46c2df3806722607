"""
Test doubles for code that calls LLM APIs: the mock LLM of C{chunkgen},
served in the test's own reactor on a free port of 127.0.0.1 (no
subprocess), scripted per test. Point any SDK at it (L{MockLLMServer}'s
C{openaiBaseURL}, C{anthropicBaseURL}, C{geminiBaseURL}), tell it what to
answer (L{MockLLMServer.script}), and read back what the SDK sent
(L{MockLLMServer.requests}).

With pytest (and pytest-twisted), load this module as a plugin, in
C{conftest.py}::

    pytest_plugins = ["twisted_stream.testing"]

and take the C{mock_llm} fixture: a L{MockLLMServer}, stopped after the
test. A test that calls a blocking SDK runs it in a thread, so that the
reactor goes on serving the mock meanwhile (docs/testing.md has a complete
example).

With trial: C{server = yield mockLLMFor(self)} starts one that is stopped
when the test ends.
"""

from __future__ import annotations

import sys
from typing import Any, AsyncIterator

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_stream.mock._script import ScriptError
from twisted_stream.mock._served import TEST_PACE, MockLLMServer, startMockLLM
from twisted_stream.mock._state import Pace

__all__ = ["TEST_PACE", "MockLLMServer", "Pace", "ScriptError", "mockLLMFor", "startMockLLM"]


def mockLLMFor(testCase: SynchronousTestCase, pace: Pace = TEST_PACE) -> Deferred[MockLLMServer]:
    """
    Start a mock LLM for one trial test: stopped (its connections closed)
    when the test ends.

    @param testCase: The test.
    @param pace: How fast it answers.
    @return: Fires with the server, listening.
    """

    def started(server: MockLLMServer) -> MockLLMServer:
        testCase.addCleanup(server.stop)
        return server

    return startMockLLM(pace=pace).addCallback(started)


# The pytest fixture, where pytest-twisted runs this test session: this
# module is then loaded as a pytest plugin (pytest_plugins), after
# pytest-twisted. Under trial, or imported anywhere else, there is none.
if "pytest_twisted" in sys.modules:
    _pytestTwisted: Any = sys.modules["pytest_twisted"]

    @_pytestTwisted.async_yield_fixture
    async def mock_llm() -> AsyncIterator[MockLLMServer]:
        """
        A mock LLM on a free port of 127.0.0.1, in the test's reactor,
        stopped after the test.
        """
        server = await startMockLLM()
        yield server
        await server.stop()
