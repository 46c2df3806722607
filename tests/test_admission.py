"""
Admission: each rule alone, and the walk through them, as values, without
sockets.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from twisted_stream.gateway._admission import (
    FORWARD,
    HEALTH,
    METRICS,
    PAGE,
    PREFLIGHT,
    Admission,
    Admitted,
    CrossOrigin,
    Draining,
    Head,
    MetricsPage,
    Route,
    Routing,
    StreamsInFlight,
    gatewayRules,
    healthChecks,
    originFormTarget,
    routeRules,
    wellFormedHead,
)
from twisted_stream.gateway._cors import CorsPolicy
from twisted_stream.gateway._streamlimits import StreamLimits
from twisted_stream.http._refusal import Refusal
from twisted_stream.ops._drain import DRAINING, Drain
from twisted_stream.proxy import FORWARDED_METHODS, StreamProxyResource

_NOTHING_YET = Admitted()


def _head(
    target: bytes = b"/v1/chat",
    method: bytes = b"POST",
    headers: Optional[dict[bytes, list[bytes]]] = None,
    **more: object,
) -> Head:
    return Head(method, target, b"HTTP/1.1", Headers({b"host": [b"gw"], **(headers or {})}), **more)  # type: ignore[arg-type]


def _proxy(**options: object) -> StreamProxyResource:
    return StreamProxyResource("http://up.example/v1/", reactor=Clock(), **options)  # type: ignore[arg-type]


_CORS = CorsPolicy(frozenset({b"https://app.example"}), FORWARDED_METHODS)


class RuleTests(SynchronousTestCase):
    """
    Each rule, given a head and what was admitted so far.
    """

    def test_wellFormedHead(self) -> None:
        self.assertIs(wellFormedHead(_head(), _NOTHING_YET), _NOTHING_YET)
        self.assertEqual(
            wellFormedHead(Head(b"GET", b"/", b"HTTP/1.1", Headers()), _NOTHING_YET),
            Refusal(400, "an HTTP/1.1 request must have a Host header"),
        )

    def test_headerLinesCheckedWhereNoChannelDid(self) -> None:
        """
        Header lines are checked here unless the channel checked each as it
        came.
        """
        bad = {b"x-thing": [b"a\x00b"]}
        refusal = wellFormedHead(_head(headers=bad), _NOTHING_YET)
        assert isinstance(refusal, Refusal)
        self.assertEqual(refusal.code, 400)
        self.assertIs(wellFormedHead(_head(headers=bad, linesChecked=True), _NOTHING_YET), _NOTHING_YET)

    def test_healthChecks(self) -> None:
        self.assertEqual(healthChecks(_head(b"/healthz"), _NOTHING_YET).answer, HEALTH)  # type: ignore[union-attr]
        self.assertEqual(healthChecks(_head(b"/readyz?x"), _NOTHING_YET).answer, HEALTH)  # type: ignore[union-attr]
        self.assertIs(healthChecks(_head(b"/healthzz"), _NOTHING_YET), _NOTHING_YET)

    def test_crossOrigin(self) -> None:
        """
        A preflight is answered here; a request from an allowed origin may
        read its answer; any other is left as it is.
        """
        rule = CrossOrigin(_CORS)
        preflight = _head(
            method=b"OPTIONS",
            headers={b"origin": [b"https://app.example"], b"access-control-request-method": [b"POST"]},
        )
        self.assertEqual(rule(preflight, _NOTHING_YET), Admitted(answer=PREFLIGHT))
        allowed = rule(_head(headers={b"origin": [b"https://app.example"]}), _NOTHING_YET)
        assert isinstance(allowed, Admitted)
        self.assertEqual(allowed.readableBy, (_CORS, b"https://app.example"))
        self.assertIs(rule(_head(headers={b"origin": [b"https://evil.example"]}), _NOTHING_YET), _NOTHING_YET)

    def test_draining(self) -> None:
        """
        While draining, a connection's first request is served as its last;
        any other is refused.
        """
        drain = Drain(Clock())
        rule = Draining(drain)
        self.assertIs(rule(_head(), _NOTHING_YET), _NOTHING_YET)
        drain.start(1)
        self.assertEqual(rule(_head(firstOnConnection=True), _NOTHING_YET), Admitted(lastOnConnection=True))
        self.assertIs(rule(_head(), _NOTHING_YET), DRAINING)

    def test_metricsPage(self) -> None:
        rule = MetricsPage(b"s3cret")
        self.assertIs(rule(_head(b"/v1/"), _NOTHING_YET), _NOTHING_YET)
        refusal = rule(_head(b"/metrics", b"GET"), _NOTHING_YET)
        assert isinstance(refusal, Refusal)
        self.assertEqual(refusal.code, 401)
        token = {b"authorization": [b"Bearer s3cret"]}
        self.assertEqual(rule(_head(b"/metrics", b"GET", token), _NOTHING_YET), Admitted(answer=METRICS))
        self.assertEqual(MetricsPage(None)(_head(b"/metrics"), _NOTHING_YET), Admitted(answer=METRICS))

    def test_originFormTarget(self) -> None:
        self.assertIs(originFormTarget(_head(b"/v1/a?b=c"), _NOTHING_YET), _NOTHING_YET)
        self.assertEqual(originFormTarget(_head(b"up:443", b"CONNECT"), _NOTHING_YET).code, 405)  # type: ignore[union-attr]
        for target in (b"http://other/", b"/a b", b"/a#frag", b"/a\x7f", b"*"):
            with self.subTest(target=target):
                self.assertEqual(originFormTarget(_head(target), _NOTHING_YET).code, 400)  # type: ignore[union-attr]

    def test_routing(self) -> None:
        """
        The longest matching prefix wins; the page answers C{/}; anything
        else is a 404 that names the path.
        """
        outer, inner = Route(b"/v1/", _proxy()), Route(b"/v1/inner", _proxy())
        rule = Routing.of([outer, inner], page=True)
        self.assertEqual(
            rule(_head(b"/v1/inner/x?q"), _NOTHING_YET), Admitted(answer=FORWARD, route=inner, rest=b"/x")
        )
        self.assertEqual(rule(_head(b"/v1/innerx"), _NOTHING_YET), Admitted(answer=FORWARD, route=outer, rest=b"innerx"))
        self.assertEqual(rule(_head(b"/"), _NOTHING_YET), Admitted(answer=PAGE))
        self.assertEqual(rule(_head(b"/v2/"), _NOTHING_YET), Refusal(404, "no route for /v2/"))
        self.assertEqual(Routing.of([outer], page=False)(_head(b"/"), _NOTHING_YET), Refusal(404, "no route for /"))

    def test_routeRules(self) -> None:
        """
        The route's own rules: its method, its path, its token, its body's
        size.
        """
        route = Route(b"/v1/", _proxy(maxBody=10, requireToken=b"t"))
        routed = Admitted(answer=FORWARD, route=route, rest=b"chat")
        token = {b"authorization": [b"Bearer t"]}
        self.assertIs(routeRules(_head(headers=token), routed), routed)
        for head, rest, code in [
            (_head(method=b"TRACE", headers=token), b"chat", 405),
            (_head(b"/v1/%2e%2e/x", headers=token), b"%2e%2e/x", 400),
            (_head(), b"chat", 401),
            (_head(headers=token, length=11), b"chat", 413),
        ]:
            with self.subTest(head=head):
                self.assertEqual(routeRules(head, Admitted(FORWARD, route, rest)).code, code)  # type: ignore[union-attr]

    def test_streamsInFlight(self) -> None:
        """
        Within the limits a stream is admitted as its client's; past them,
        503.
        """
        streams = StreamLimits(maxPerClient=1)
        rule = StreamsInFlight(streams)
        admitted = rule(_head(client="10.0.0.1"), _NOTHING_YET)
        self.assertEqual(admitted, Admitted(client="10.0.0.1"))
        streams.started("10.0.0.1")
        self.assertEqual(rule(_head(client="10.0.0.1"), _NOTHING_YET).code, 503)  # type: ignore[union-attr]


class AdmissionTests(SynchronousTestCase):
    """
    The walk through the gateway's rules.
    """

    def setUp(self) -> None:
        self.route = Route(b"/v1/", _proxy())
        self.drain = Drain(Clock())
        self.streams = StreamLimits(maxStreams=1)
        self.admission = Admission(
            gatewayRules(
                [self.route], page=True, cors=_CORS, metricsHere=True, drain=self.drain, streams=self.streams
            )
        )

    def test_forwarded(self) -> None:
        """
        A request for a route is admitted with its route, the rest of its
        path and its client, decided once.
        """
        self.assertEqual(
            self.admission.decide(_head(b"/v1/chat?stream=1", client="10.0.0.1")),
            Admitted(answer=FORWARD, route=self.route, rest=b"chat", client="10.0.0.1"),
        )

    def test_localAnswersEndTheWalk(self) -> None:
        """
        An answer the gateway gives itself ends the walk: no stream limit
        refuses a health check or the page.
        """
        self.streams.started("-")
        self.assertEqual(self.admission.decide(_head(b"/healthz", b"GET")), Admitted(answer=HEALTH))
        self.assertEqual(self.admission.decide(_head(b"/", b"GET")), Admitted(answer=PAGE))
        self.assertEqual(self.admission.decide(_head(b"/v1/chat")).code, 503)  # type: ignore[union-attr]

    def test_firstRefusalWins(self) -> None:
        """
        The first rule that refuses decides: a malformed head is refused
        before routing (never a 404 that echoes it).
        """
        self.assertEqual(self.admission.decide(_head(b"/nowhere\x1b[2J")).code, 400)  # type: ignore[union-attr]
        self.drain.start(1)
        self.assertIs(self.admission.decide(_head(b"/v1/chat")), DRAINING)
        self.assertEqual(self.admission.decide(_head(b"/healthz")), Admitted(answer=HEALTH))

    def test_refusalReadableByAllowedOrigin(self) -> None:
        """
        A refusal of a request from an allowed origin carries the CORS
        headers that let its page read why, whichever rule refused it.
        """
        refusal = self.admission.decide(_head(b"/v2/", headers={b"origin": [b"https://app.example"]}))
        assert isinstance(refusal, Refusal)
        self.assertEqual(refusal.code, 404)
        self.assertIn((b"Access-Control-Allow-Origin", b"https://app.example"), refusal.headers)
        self.drain.start(1)
        draining = self.admission.decide(_head(headers={b"origin": [b"https://app.example"]}))
        assert isinstance(draining, Refusal)
        self.assertIn((b"Access-Control-Allow-Origin", b"https://app.example"), draining.headers)

    def test_noDrainNoLimits(self) -> None:
        """
        Without a drain or limits (a resource in a plain Site), nothing is
        counted and nothing is refused for them.
        """
        admission = Admission(gatewayRules([self.route]))
        self.assertEqual(
            admission.decide(_head(b"/v1/x")), Admitted(answer=FORWARD, route=self.route, rest=b"x")
        )
        self.assertEqual(admission.decide(_head(b"/metrics")).code, 404)  # type: ignore[union-attr]
