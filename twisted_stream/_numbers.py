# -*- test-case-name: tests.test_numbers -*-
"""
The one way this project reads a number a person gave (an option, a query
parameter, a header, a JSON field), and the one way it says what is wrong.

Text is read strictly: plain digits, with a decimal point where fractions
are allowed. Python's C{int} and C{float} would also take C{+5}, C{ 5},
C{1_000}, C{1e3}, non-ASCII digits, C{nan} and C{inf}, none of which a
person means.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

__all__ = ["decimalNumber", "inRange", "isWholeIn", "rangeProblem", "shown", "wholeNumber"]

_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def shown(text: str) -> str:
    """
    Quote a value someone gave, short and printable, for a reason.
    """
    return ascii(text if len(text) <= 40 else text[:40] + "...")


def _bounds(low: float, high: float, lowExcluded: bool) -> str:
    if math.isinf(high):
        return f"above {low:g}" if lowExcluded else f"of at least {low:g}"
    return f"from {low:g} to {high:g}"


def inRange(value: float, low: float, high: float, lowExcluded: bool = False) -> bool:
    """
    @return: Whether C{value} is a finite number within the bounds.
    """
    return math.isfinite(value) and (value > low if lowExcluded else value >= low) and value <= high


def isWholeIn(value: Any, low: int, high: float = math.inf) -> bool:
    """
    @return: Whether C{value}, as JSON gave it, is a whole number within the
        bounds (C{true} and C{false} are not numbers, though Python's
        C{bool} is an C{int}).
    """
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def rangeProblem(name: str, low: float, high: float, unit: str = "", lowExcluded: bool = False) -> str:
    """
    @return: The sentence that says what C{name} must be.
    """
    return f"{name} must be a number{unit} {_bounds(low, high, lowExcluded)}"


def wholeNumber(text: str, name: str, high: Optional[int] = None) -> int:
    """
    Read a whole number of at least 0.

    @param text: What was given.
    @param name: What it is, for the reason.
    @param high: The largest allowed, if any.
    @return: The number.
    @raise ValueError: With a one-line reason, for anything else.
    """
    if _WHOLE.fullmatch(text) and (high is None or int(text) <= high):
        return int(text)
    bounds = f"from 0 to {high}" if high is not None else "of at least 0"
    raise ValueError(f"{name} must be a whole number {bounds}, not {shown(text)}")


def decimalNumber(
    text: Any, name: str, low: float, high: float = math.inf, unit: str = "", lowExcluded: bool = False
) -> float:
    """
    Read a decimal number within bounds.

    @param text: What was given: text, or bytes (a header's value).
    @param name: What it is, for the reason.
    @param low: The smallest allowed (or the bound it must be above, with
        C{lowExcluded}).
    @param high: The largest allowed.
    @param unit: Said after "a number", such as C{" of seconds"}.
    @return: The number.
    @raise ValueError: With a one-line reason, for anything else (signs,
        exponents, C{nan} and C{inf} among them).
    """
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if _DECIMAL.fullmatch(text):
        value = float(text)
        if inRange(value, low, high, lowExcluded):
            return value
    raise ValueError(f"{rangeProblem(name, low, high, unit, lowExcluded)}, not {shown(text)}")
