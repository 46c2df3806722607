"""
What the tests share, by kind: L{tests.support.processes} (real twistd
servers and other programs), L{tests.support.sockets} (HTTP on loopback: a
strict client, hand-made clients and upstreams), L{tests.support.fakes}
(logic without connections), L{tests.support.tls} (certificates made for a
test) and L{tests.support.llm} (the mock LLM's answers read back, and the
base of the real-client tests). Every name is re-exported here.
"""

from tests.support.fakes import (
    BreaksOff,
    BytesBody,
    FakeAgent,
    StreamingRequest,
    loopsStoppedAtCleanup,
    render,
)
from tests.support.llm import (
    PROMPT,
    RATE,
    TOKEN,
    ChatUpstream,
    ThroughProxy,
    chatRequest,
    samples,
    sseEvents,
    typedEvents,
)
from tests.support.once import onceAcrossRunners
from tests.support.processes import (
    CHROMEDRIVER,
    CHROMIUM,
    LOOPBACK_LISTEN,
    NODE_PEERS,
    PEERS,
    LineProcess,
    Server,
    browser,
    curl,
    freePort,
    nodeExecutable,
    reactor,
    readText,
    startServer,
    startTwistd,
    stopped,
    twistdCommand,
    until,
)
from tests.support.sockets import (
    Exchange,
    RawClient,
    RawConnection,
    RawUpstream,
    StrictClient,
    Upstream,
    answerWith,
    fetch,
    h2Frame,
    portOf,
    rawClients,
)
from tests.support.tls import FileContext, makeCertificates

__all__ = [
    "onceAcrossRunners",
    "CHROMEDRIVER",
    "CHROMIUM",
    "LOOPBACK_LISTEN",
    "NODE_PEERS",
    "PEERS",
    "PROMPT",
    "RATE",
    "TOKEN",
    "BreaksOff",
    "BytesBody",
    "ChatUpstream",
    "Exchange",
    "FakeAgent",
    "LineProcess",
    "RawClient",
    "RawConnection",
    "RawUpstream",
    "Server",
    "StreamingRequest",
    "StrictClient",
    "ThroughProxy",
    "Upstream",
    "answerWith",
    "browser",
    "chatRequest",
    "curl",
    "fetch",
    "freePort",
    "h2Frame",
    "loopsStoppedAtCleanup",
    "FileContext",
    "makeCertificates",
    "nodeExecutable",
    "portOf",
    "rawClients",
    "reactor",
    "readText",
    "render",
    "samples",
    "sseEvents",
    "startServer",
    "startTwistd",
    "stopped",
    "twistdCommand",
    "typedEvents",
    "until",
]
