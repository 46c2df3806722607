"""
Fakes for logic tests: requests rendered without a connection, an agent
that answers what the test says, a body in memory.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Optional, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from tests.support.processes import reactor  # noqa: F401 (used below)


class BreaksOff(Resource):
    """
    Sends two lines 100 ms apart, then drops the connection mid-body.
    """

    isLeaf = True

    def render_GET(self, request: Request) -> int:
        request.write(b"line 1\n")

        def second() -> None:
            request.write(b"line 2\n")
            reactor.callLater(0.1, request.loseConnection)

        reactor.callLater(0.1, second)
        return NOT_DONE_YET


class StreamingRequest(DummyRequest):
    """
    A L{DummyRequest} that takes a push producer the way a real request
    does (L{DummyRequest} drives every producer as a pull producer), and
    notes a closed connection.
    """

    def __init__(self, postpath: list[bytes], method: bytes = b"GET", uri: bytes = b"/", body: bytes = b"") -> None:
        super().__init__(postpath)
        self.content = BytesIO(body)
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.producer: Optional[IPushProducer] = None
        self.connectionClosed = False
        self.secure = False
        self.sentLength = 0
        self.client = IPv4Address("TCP", "192.168.1.1", 50000)

    def write(self, data: bytes) -> None:
        self.sentLength += len(data)
        super().write(data)

    def isSecure(self) -> bool:
        return self.secure

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert streaming, "only push producers are expected here"
        assert self.producer is None, "a producer is registered already"
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self.connectionClosed = True


def render(resource: IResource, request: StreamingRequest) -> Any:
    """
    Render a fake request, as a real one would be.

    @param resource: What to render.
    @param request: The fake.
    @return: What C{render} returned.
    """
    return resource.render(cast(Request, request))


@implementer(IAgent)
class FakeAgent:
    """
    An agent whose requests get the Deferreds the test gives, one each in
    turn (the last one again once they run out), and that notes what it was
    asked.
    """

    def __init__(self, *results: Deferred[IResponse]) -> None:
        self.results = list(results)
        self.requests: list[tuple[bytes, bytes]] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Optional[Headers] = None,
        bodyProducer: Optional[IBodyProducer] = None,
    ) -> Deferred[IResponse]:
        self.requests.append((method, uri))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


@implementer(IResponse)
class FakeResponse:
    """
    A response's head, as an agent hands it over, with a body nobody
    sends: whether its reader stopped it (closing its connection) is noted.
    """

    version = (b"HTTP", 1, 1)
    phrase = b"Phrase"
    length = UNKNOWN_LENGTH
    request = None
    previousResponse = None

    def __init__(self, code: int = 200, headers: Optional[dict[bytes, bytes]] = None) -> None:
        self.code = code
        self.headers = Headers({name: [value] for name, value in (headers or {}).items()})
        self.stopped = False

    def deliverBody(self, protocol: Any) -> None:
        response = self

        @implementer(IPushProducer)
        class Transport:
            def stopProducing(self) -> None:
                response.stopped = True

            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

        protocol.makeConnection(Transport())

    def setPreviousResponse(self, response: IResponse) -> None:
        pass


@implementer(IBodyProducer)
class BytesBody:
    """
    A request body in memory, written when asked for, at once (as the
    gateway's is), in pieces of C{piece} bytes.
    """

    def __init__(self, data: bytes, known: bool = True, piece: int = 3) -> None:
        """
        @param known: Whether its length is given (else it is sent chunked).
        """
        self._data = data
        self._piece = piece
        self.length = len(data) if known else UNKNOWN_LENGTH

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        for i in range(0, len(self._data), self._piece):
            consumer.write(self._data[i : i + self._piece])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def loopsStoppedAtCleanup(case: SynchronousTestCase) -> list[LoopingCall]:
    """
    @return: A list for a test's L{LoopingCall}s (a hand-made upstream's
        senders): those still running when the test ends are stopped.
    """
    loops: list[LoopingCall] = []

    def stop() -> None:
        for loop in loops:
            if loop.running:
                loop.stop()

    case.addCleanup(stop)
    return loops
