"""
The house's rules that a newcomer relies on, checked: tests share helpers
only through L{tests.support}.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

TESTS = Path(__file__).resolve().parent


class LayoutTests(SynchronousTestCase):
    def test_noTestModuleImportsAnother(self) -> None:
        """
        No test module imports from another test module: what tests share
        lives in tests/support (13 modules imported each other's helpers,
        private ones among them).
        """
        found = [
            f"{path.name}: {line.strip()}"
            for path in sorted(TESTS.glob("test_*.py"))
            for line in path.read_text().splitlines()
            if re.match(r"\s*(from tests\.test_\w+ import|import tests\.test_)", line)
        ]
        self.assertEqual(found, [])
