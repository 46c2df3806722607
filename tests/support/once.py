"""
Tests that drive other processes (twistd, Chromium, nginx, pip, the SDKs in
processes of their own) and whose outcome does not depend on the test
runner: C{scripts/test} runs pytest and trial side by side, and each of
these runs under one of them, not both (the suite is CPU-bound with both
runners; these are most of its time). Run alone, either runner runs them
all.
"""

from __future__ import annotations

import os
import zlib
from typing import TypeVar

__all__ = ["RUNNER_VARIABLE", "RUNNERS", "onceAcrossRunners"]

RUNNER_VARIABLE = "TWISTED_STREAM_RUNNER"
"""Set by C{scripts/test} to the runner each process is: C{pytest} or
C{trial}."""

RUNNERS = ("pytest", "trial")

_Case = TypeVar("_Case", bound=type)


def onceAcrossRunners(cls: _Case) -> _Case:
    """
    Mark each test of a class to run under one runner of C{scripts/test}'s
    two, the same one every time (by the test's name), and to be skipped,
    saying where it runs, under the other.

    @param cls: A test case class.
    @return: It.
    """
    runner = os.environ.get(RUNNER_VARIABLE)
    if runner not in RUNNERS:
        return cls
    for name, method in list(vars(cls).items()):
        if not name.startswith("test") or not callable(method):
            continue
        assigned = RUNNERS[zlib.crc32(f"{cls.__module__}.{cls.__qualname__}.{name}".encode()) % len(RUNNERS)]
        if assigned != runner:
            # trial's own mark, which it reads before setUp (so nothing is
            # started), under pytest too.
            method.skip = f"runs under {assigned} in this scripts/test run (it drives other processes)"
    return cls
