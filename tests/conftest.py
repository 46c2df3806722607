"""
pytest configuration: enforces the suite's one convention (see
C{tests/__init__.py}).
"""

from __future__ import annotations

import pytest
from twisted.trial.unittest import SynchronousTestCase


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """
    Refuse any test that is not a method of a trial test case.
    """
    strays = [
        item.nodeid
        for item in items
        if not (isinstance(getattr(item, "cls", None), type) and issubclass(item.cls, SynchronousTestCase))  # type: ignore[attr-defined]
    ]
    if strays:
        raise pytest.UsageError(
            "every test must be a method of a twisted.trial test case (see tests/__init__.py);"
            " these are not: " + ", ".join(strays)
        )
