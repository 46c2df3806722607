"""
Tests for L{twisted_stream.page}: the page served by the real proxy, in a
real headless Chromium.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, Callable, Optional, cast

from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.threads import deferToThread
from twisted.protocols import portforward
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import BreaksOff, Server, Upstream, browser, onceAcrossRunners, reactor, startTwistd
from twisted_stream.mock.llm import PASSAGE, tokens
from twisted_stream.page import pageHTML


class PageHTMLTests(SynchronousTestCase):
    def test_selfContained(self) -> None:
        """
        The page loads nothing from elsewhere: the machine may be offline.
        """
        html = pageHTML().decode("utf-8")
        self.assertNotIn("http://", html)
        self.assertNotIn("https://", html)
        self.assertNotIn(" src=", html)
        self.assertIn('fetch("stream?"', html)




_STATE = """
return {
  count: document.querySelectorAll(arguments[0]).length,
  state: document.getElementById("status").dataset.state,
  status: document.getElementById("status").textContent,
};
"""

_ROWS = "#chunks tr"
_TOKENS = "#answer span.token"


@onceAcrossRunners
class PageInChromiumTests(TestCase):
    """
    The page, served by the real proxy in front of the real generator, in
    Chromium. WebDriver's client blocks, so it runs in a thread while the
    reactor serves.
    """

    timeout = 90

    def drive(
        self, url: str, setUp: str, *arguments: object, counting: str, collect: str,
        during: Optional[Callable[[Any, int], None]] = None,
    ) -> dict[str, Any]:
        """
        Open the page, set it up, click Start, and watch what appears until
        the status says it is over.

        @param setUp: JavaScript that fills in the form, given C{arguments}.
        @param counting: A CSS selector of what appears (rows or tokens).
        @param collect: JavaScript returning an object of what to report at
            the end.
        @param during: Called with the driver and the count at each poll.
        @return: C{polls} as C{(seconds since the click, how many had
            appeared)}, the final C{state} and C{status}, and what C{collect}
            returned.
        """
        profile = self.mktemp()
        os.makedirs(profile)
        driver = browser(profile)
        try:
            driver.get(url)
            driver.execute_script(setUp, *arguments)
            driver.find_element("id", "start").click()
            clicked = time.monotonic()
            polls: list[tuple[float, int]] = []
            seen = driver.execute_script(_STATE, counting)
            while seen["state"] in ("idle", "streaming") and time.monotonic() - clicked < 30:
                polls.append((time.monotonic() - clicked, seen["count"]))
                if during is not None:
                    during(driver, seen["count"])
                seen = driver.execute_script(_STATE, counting)
            collected = driver.execute_script(collect)
            driver.save_screenshot(os.path.abspath(self.mktemp() + ".png"))
            return dict(polls=polls, state=seen["state"], status=seen["status"], **collected)
        finally:
            driver.quit()

    def driveStream(self, url: str, count: int, interval: float) -> dict[str, Any]:
        """
        Stream chunks; each row's C{data-t} (milliseconds after the click it
        arrived) comes back as C{times}.
        """
        return self.drive(
            url,
            "document.getElementById('count').value = arguments[0];"
            "document.getElementById('interval').value = arguments[1];",
            str(count),
            str(interval),
            counting=_ROWS,
            collect=f"return {{times: Array.from(document.querySelectorAll('{_ROWS}'), r => parseFloat(r.dataset.t))}};",
        )

    def driveChat(
        self, url: str, model: str, during: Optional[Callable[[Any, int], None]] = None
    ) -> dict[str, Any]:
        """
        Switch to chat and send the prompt; each token's C{data-t} comes back
        as C{times}, with the C{answer} text and the C{summary} line.
        """
        return self.drive(
            url,
            "const mode = document.getElementById('mode'); mode.value = 'chat';"
            "mode.dispatchEvent(new Event('change'));"
            "document.getElementById('model').value = arguments[0];",
            model,
            counting=_TOKENS,
            collect=f"return {{times: Array.from(document.querySelectorAll('{_TOKENS}'), t => parseFloat(t.dataset.t)),"
            " answer: document.getElementById('answer').textContent,"
            " summary: document.getElementById('summary').textContent};",
            during=during,
        )

    @inlineCallbacks
    def test_chatTokenByToken(self) -> Any:
        """
        In chat mode the page sends a chat completion through the proxy and
        renders the tokens as they arrive, showing the time to first token
        and the tokens per second.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.3", "--tokens-per-second", "25")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", generator.url + "generate")
        seen = yield deferToThread(self.driveChat, proxy.url, "mock-passage")
        self.assertEqual(seen["state"], "done", seen["status"])
        self.assertEqual(seen["answer"], PASSAGE)
        times = seen["times"]
        self.assertEqual(len(times), len(tokens(PASSAGE)))
        self.assertTrue(250 <= times[0] < 1500, times[0])
        self.assertGreater(times[-1] - times[0], (len(times) - 1) / 25 * 1000 * 0.8)
        between = {count for _, count in seen["polls"] if 0 < count < len(times)}
        self.assertGreater(len(between), 10, seen["polls"][-5:])
        found = re.fullmatch(r"time to first token (\d+) ms · ([\d.]+) tokens/s · (\d+) tokens", seen["summary"])
        assert found is not None, seen["summary"]
        # The page rounds with toFixed (376.5 is 377), Python to even (376).
        self.assertLessEqual(abs(int(found.group(1)) - times[0]), 1)
        self.assertTrue(20 <= float(found.group(2)) <= 30, seen["summary"])
        self.assertEqual(int(found.group(3)), len(times))

    @inlineCallbacks
    def test_chatResumesAfterGoingOffline(self) -> Any:
        """
        On a resumable route, mid-answer, the browser goes offline (CDP's
        network emulation) and its connections drop (cut by a relay in
        between: Chromium's emulation alone lets a response already
        streaming go on), and a second later it is back online: the page
        resumes the answer where it was, no token lost or repeated, and
        says after how long.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.1", "--tokens-per-second", "12")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--resumable", "30"
        )
        relay = _Relay(proxy.port)
        listening = reactor.listenTCP(0, relay, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        offline: list[float] = []
        conditions = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}

        def network(driver: Any, count: int) -> None:
            if count >= 10 and not offline:
                driver.execute_cdp_cmd("Network.enable", {})
                driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, **conditions})
                reactor.callFromThread(relay.cutAll)
                offline.append(time.monotonic())
            elif len(offline) == 1 and time.monotonic() - offline[0] > 1.0:
                driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, **conditions})
                offline.append(time.monotonic())

        url = f"http://127.0.0.1:{listening.getHost().port}/"
        seen = yield deferToThread(self.driveChat, url, "mock-passage", network)
        self.assertEqual(len(offline), 2, "the page should have gone offline and back")
        self.assertEqual(seen["state"], "done", seen["status"])
        self.assertEqual(seen["answer"], PASSAGE)
        self.assertEqual(len(seen["times"]), len(tokens(PASSAGE)))
        resumed = re.search(r" · resumed after (\d+) ms$", seen["summary"])
        assert resumed is not None, seen["summary"]
        # It waited for the network to come back (a second), not much more.
        self.assertTrue(800 <= int(resumed.group(1)) <= 5000, seen["summary"])
        self.assertIn("GET /_streams/", proxy.output)

    def followInSecondTab(self, url: str) -> dict[str, Any]:
        """
        Start a chat; once 5 tokens are there, open the page's "follow" link
        in a second tab and watch it until its answer is over; then read
        the first tab.

        @return: C{second} and C{first}: each tab's C{state}, C{answer} and
            C{summary}; C{polls}: the second tab's token count at each poll.
        """
        profile = self.mktemp()
        os.makedirs(profile)
        driver = browser(profile)
        read = (
            "return {count: document.querySelectorAll('#answer span.token').length,"
            " state: document.getElementById('status').dataset.state,"
            " answer: document.getElementById('answer').textContent,"
            " summary: document.getElementById('summary').textContent,"
            " follow: document.getElementById('follow').hidden ? null : document.getElementById('follow').href};"
        )
        try:
            driver.get(url)
            driver.execute_script(
                "const mode = document.getElementById('mode'); mode.value = 'chat';"
                "mode.dispatchEvent(new Event('change'));"
                "document.getElementById('model').value = 'mock-passage';"
            )
            driver.find_element("id", "start").click()
            began = time.monotonic()
            seen = driver.execute_script(read)
            while (seen["count"] < 5 or not seen["follow"]) and time.monotonic() - began < 20:
                seen = driver.execute_script(read)
            first = driver.current_window_handle
            driver.switch_to.new_window("tab")
            driver.get(seen["follow"])
            polls: list[int] = []
            second = driver.execute_script(read)
            while second["state"] in ("idle", "streaming") and time.monotonic() - began < 40:
                polls.append(second["count"])
                second = driver.execute_script(read)
            driver.switch_to.window(first)
            return dict(second=second, first=driver.execute_script(read), polls=polls, follow=seen["follow"])
        finally:
            driver.quit()

    @inlineCallbacks
    def test_secondTabFollowsLive(self) -> Any:
        """
        On a resumable route the page offers to follow the answer in
        another tab; opened mid-answer, that tab shows all of it so far,
        then each token as it comes (live: its count climbs through many
        values), and both tabs end with the whole answer.
        """
        generator: Server = yield startTwistd(self, "chunkgen", "--ttft", "0.1", "--tokens-per-second", "12")
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", generator.url + "generate", "--resumable", "30"
        )
        seen = yield deferToThread(self.followInSecondTab, proxy.url)
        self.assertRegex(seen["follow"], r"\?follow=[A-Za-z0-9_-]{22}$")
        for tab in ("first", "second"):
            self.assertEqual(seen[tab]["state"], "done", seen[tab])
            self.assertEqual(seen[tab]["answer"], PASSAGE)
        between = {count for count in seen["polls"] if 5 < count < len(tokens(PASSAGE))}
        self.assertGreater(len(between), 10, seen["polls"][-5:])
        self.assertIn("GET /_streams/", proxy.output)

    @inlineCallbacks
    def test_chunksAppearOneByOne(self) -> Any:
        """
        After a click on Start, the rows appear one by one as the chunks
        arrive, not all at the end: the first within 1 s, the tenth not
        before 0.8 s; then the status says done.
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", generator.url + "generate")
        seen = yield deferToThread(self.driveStream, proxy.url, 20, 0.1)
        self.assertEqual(seen["state"], "done", seen["status"])
        times = seen["times"]
        self.assertEqual(len(times), 20)
        self.assertLess(times[0], 1000)
        self.assertGreaterEqual(times[9], 800)
        # Watched from outside while it streamed: the count of rows went up
        # through the values in between, not from none to all at once.
        between = {rows for _, rows in seen["polls"] if 0 < rows < 20}
        self.assertGreater(len(between), 10, seen["polls"][-5:])

    @inlineCallbacks
    def test_truncatedStreamIsAnError(self) -> Any:
        """
        A stream that breaks off is shown as an error (truncated), never as
        done.
        """
        upstream = Upstream(self, BreaksOff())
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", upstream.url)
        seen = yield deferToThread(self.driveStream, proxy.url, 2, 0.1)
        self.assertEqual(seen["state"], "error")
        self.assertIn("error (truncated)", seen["status"])
        self.assertEqual(len(seen["times"]), 2)

    @inlineCallbacks
    def test_upstreamDownIsAnError(self) -> Any:
        """
        A 502 from the proxy is shown with its status and reason.
        """
        proxy: Server = yield startTwistd(
            self, "chunkproxy", "--upstream", "http://no-such-host.invalid/"
        )
        seen = yield deferToThread(self.driveStream, proxy.url, 2, 0.1)
        self.assertEqual(seen["state"], "error")
        self.assertEqual(
            seen["status"], "error: HTTP 502 upstream host name could not be resolved"
        )

    def measure(self, url: str) -> dict[str, Any]:
        """
        Stream a few chunks, then measure the page's layout in both modes.
        """
        profile = self.mktemp()
        os.makedirs(profile)
        driver = browser(profile)
        try:
            driver.get(url)
            driver.execute_script("document.getElementById('count').value = '3';"
                                  "document.getElementById('interval').value = '0.01';")
            driver.find_element("id", "start").click()
            began = time.monotonic()
            while driver.execute_script(_STATE, _ROWS)["state"] != "done" and time.monotonic() - began < 10:
                time.sleep(0.05)
            stream = driver.execute_script(_LAYOUT)
            driver.execute_script(
                "const m = document.getElementById('mode'); m.value = 'chat'; m.dispatchEvent(new Event('change'));"
            )
            chat = driver.execute_script(_LAYOUT)
            driver.save_screenshot(os.path.abspath(self.mktemp() + ".png"))
            return dict(stream=stream, chat=chat)
        finally:
            driver.quit()

    @inlineCallbacks
    def test_layout(self) -> Any:
        """
        In both modes the controls stand on one line, their bottoms level;
        no select is narrower than its chosen option's text (clipped); and
        each column's cells line up with its heading (numbers on the right
        edge, text on the left).
        """
        generator: Server = yield startTwistd(self, "chunkgen")
        proxy: Server = yield startTwistd(self, "chunkproxy", "--upstream", generator.url + "generate")
        seen = yield deferToThread(self.measure, proxy.url)
        for mode in ("stream", "chat"):
            layout = seen[mode]
            self.assertEqual(len(set(layout["bottoms"])), 1, (mode, layout["bottoms"]))
            for text, room in layout["selects"]:
                self.assertGreaterEqual(room, text, (mode, layout["selects"]))
        misaligned = [(i, head, cell) for i, head, cell in seen["stream"]["columns"] if abs(head - cell) > 1]
        self.assertEqual(misaligned, [])
        self.assertEqual(len(seen["stream"]["columns"]), 6)


_LAYOUT = """
const visible = (e) => e.offsetParent !== null;
const controls = Array.from(document.querySelectorAll("#controls select, #controls input, #controls textarea,"
                                                      + " #controls button")).filter(visible);
const canvas = document.createElement("canvas").getContext("2d");
const selects = controls.filter((e) => e.tagName === "SELECT").map((s) => {
  const style = getComputedStyle(s);
  canvas.font = style.font;
  const text = canvas.measureText(s.options[s.selectedIndex].text).width;
  // Room for the text: the width less its padding and the arrow (about 20 px).
  const room = s.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20;
  return [Math.ceil(text), Math.floor(room)];
});
const heads = Array.from(document.querySelectorAll("thead th"));
const row = document.querySelector("#chunks tr");
const columns = row ? heads.map((th, i) => {
  const cell = row.cells[i];
  const right = th.classList.contains("num");
  const a = th.getBoundingClientRect(), b = cell.getBoundingClientRect();
  const edge = (r, el) => right ? r.right - parseFloat(getComputedStyle(el).paddingRight) : r.left;
  return [i, Math.round(edge(a, th)), Math.round(edge(b, cell))];
}) : [];
return {bottoms: controls.map((e) => Math.round(e.getBoundingClientRect().bottom)), selects, columns};
"""


class _Relay(portforward.ProxyFactory):
    """
    A TCP relay to the gateway whose connections can all be cut at once
    (both sides), as a network that drops them.
    """

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.connections: list[portforward.ProxyServer] = []
        relay = self

        class Server(portforward.ProxyServer):
            def connectionMade(self) -> None:
                relay.connections.append(self)
                super().connectionMade()

        self.protocol = Server

    def cutAll(self) -> None:
        for connection in self.connections:
            for side in (connection, connection.peer):
                if side is not None and side.transport is not None:
                    cast(ITCPTransport, side.transport).abortConnection()
        self.connections = []
