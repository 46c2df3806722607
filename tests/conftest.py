"""
pytest configuration: enforces the suite's one convention (see
C{tests/__init__.py}).
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from twisted.trial.unittest import SynchronousTestCase


@pytest.fixture(autouse=True, scope="session")
def _inTemporaryDirectory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """
    Run the tests in a temporary directory, as trial runs them in
    C{_trial_temp}: C{TestCase.mktemp} makes its paths relative to it.
    """
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("trial_temp"))
    yield
    os.chdir(here)


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
