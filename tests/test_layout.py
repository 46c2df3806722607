"""
The house's rules that a newcomer relies on, checked: each part of
C{twisted_stream} imports only the parts below it, and tests share helpers
only through L{tests.support}.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from tests.support.once import RUNNER_VARIABLE, onceAcrossRunners

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "twisted_stream"

# Each part, and the parts of the project it may import (besides the
# shared leaves, _compat and _numbers). Nothing imports upward: the wire,
# the exchange and the library resource never reach the gateway's edge,
# operations or the mock.
_SHARED = {"twisted_stream", "twisted_stream._compat", "twisted_stream._numbers"}
_MAY_IMPORT = {
    "http": set(),
    "upstream": {"http"},
    "resume": {"http"},
    "exchange": {"http", "upstream", "resume"},
    "ops": {"http"},
    "gateway": {"http", "upstream", "exchange", "resume", "ops"},
    "mock": {"http", "ops", "exchange"},
    "chunkwatch": {"http", "upstream", "tap"},
    "page": {"http"},
    "proxy": {"exchange"},
    "testing": {"mock"},
}


def _partOf(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> set[str]:
    """
    The project modules a file imports when it runs (not those imported
    only for type checking).
    """
    tree = ast.parse(path.read_text())
    typeOnly = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typeOnly:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("twisted_stream"):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("twisted_stream")}
    return found


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

    def test_partsImportOnlyDownward(self) -> None:
        """
        Each part imports only the parts below it (the shared leaves aside).
        """
        found = []
        for path in sorted(PACKAGE.rglob("*.py")):
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            part = _partOf(module)
            allowed = _MAY_IMPORT.get(part.removesuffix(".py"))
            if allowed is None:
                continue
            for imported in _imports(path) - _SHARED:
                other = _partOf(imported)
                if other != part and other not in allowed:
                    found.append(f"{module} imports {imported}")
        self.assertEqual(found, [], "\n".join(found))

    def test_theGraphCheckSeesAnUpwardImport(self) -> None:
        """
        The check reads imports as they are written, runtime ones only.
        """
        probe = Path(self.mktemp() + ".py")
        probe.write_text(
            "from typing import TYPE_CHECKING\n"
            "from twisted_stream.gateway import GatewaySite\n"
            "if TYPE_CHECKING:\n    from twisted_stream.mock import llm\n"
        )
        self.assertEqual(_imports(probe), {"twisted_stream.gateway"})


def _cases() -> type:
    class Case(SynchronousTestCase):
        def test_one(self) -> None:
            pass

        def test_two(self) -> None:
            pass

        def test_three(self) -> None:
            pass

        def helper(self) -> None:
            pass

    return Case


class OnceAcrossRunnersTests(SynchronousTestCase):
    """
    The tests that drive other processes run under one of scripts/test's
    two runners each (tests/support/once.py).
    """

    def skipped(self, runner: Optional[str]) -> dict[str, Optional[str]]:
        environ = {k: v for k, v in os.environ.items() if k != RUNNER_VARIABLE}
        if runner is not None:
            environ[RUNNER_VARIABLE] = runner
        self.patch(os, "environ", environ)
        case = onceAcrossRunners(_cases())
        return {name: getattr(getattr(case, name), "skip", None) for name in ("test_one", "test_two", "test_three")}

    def test_eachUnderExactlyOne(self) -> None:
        """
        Each test is skipped under exactly one runner, saying where it runs;
        run alone (no runner named), none is.
        """
        underPytest, underTrial = self.skipped("pytest"), self.skipped("trial")
        for name in underPytest:
            self.assertEqual((underPytest[name] is None) + (underTrial[name] is None), 1, name)
        reasons = {reason for reason in [*underPytest.values(), *underTrial.values()] if reason is not None}
        self.assertTrue(reasons <= {f"runs under {runner} in this scripts/test run (it drives other processes)" for runner in ("pytest", "trial")}, reasons)
        self.assertEqual(set(self.skipped(None).values()), {None})

    def test_sameEveryTime(self) -> None:
        """
        Where a test runs depends on its name only; what is not a test is
        left alone.
        """
        self.assertEqual(self.skipped("trial"), self.skipped("trial"))
        # (os.environ still names trial here.)
        self.assertFalse(hasattr(vars(onceAcrossRunners(_cases()))["helper"], "skip"), "only tests are marked")

    def test_scriptsTestNamesTheRunners(self) -> None:
        """
        scripts/test tells each runner which it is (else both would run
        everything).
        """
        script = (TESTS.parent / "scripts" / "test").read_text()
        self.assertIn(f"{RUNNER_VARIABLE}=trial trial tests", script)
        self.assertIn(f"{RUNNER_VARIABLE}=pytest python -m pytest", script)
